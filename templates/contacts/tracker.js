/* LeadFunnel tracking snippet: no dependencies, no cookies. Keeps a random visitor id in this
   site's localStorage, reports each page view, and lets LeadFunnel forms carry the id so a
   visitor's earlier pages join their contact when they leave an email. */
(function () {
  "use strict";
  var endpoint = "{{ endpoint|escapejs }}";
  var key = "leadfunnel_visitor";
  function newId() {
    var bytes = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  var id;
  try {
    id = window.localStorage.getItem(key);
    if (!id) { id = newId(); window.localStorage.setItem(key, id); }
  } catch (e) { id = newId(); }  // storage blocked: still count the page, without a memory
  function utm() {
    var found = {};
    new URLSearchParams(window.location.search).forEach(function (value, name) {
      if (name.indexOf("utm_") === 0) { found[name] = value.slice(0, 200); }
    });
    return found;
  }
  var body = JSON.stringify({
    visitor_id: id, url: window.location.href.slice(0, 1000), title: document.title.slice(0, 300),
    referrer: document.referrer.slice(0, 1000), utm: utm()
  });
  // text/plain keeps it a "simple" cross-site request: no preflight, works with sendBeacon.
  var payload = new Blob([body], { type: "text/plain" });
  if (!(navigator.sendBeacon && navigator.sendBeacon(endpoint, payload))) {
    fetch(endpoint, { method: "POST", body: body, mode: "cors", keepalive: true,
                      headers: { "Content-Type": "text/plain" } });
  }
  function tagForms() {
    var fields = document.querySelectorAll("form input[name=visitor_id]");
    for (var i = 0; i < fields.length; i++) { fields[i].value = id; }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", tagForms); }
  else { tagForms(); }
})();
