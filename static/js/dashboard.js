// Draws the dashboard's charts with the vendored Chart.js, each from the JSON its panel
// carries; the same numbers are in the table beside every chart.
(function () {
  "use strict";
  var PALETTE = ["#2457c5", "#ef6820", "#12b76a", "#7a5af8", "#f79009", "#98a2b3"];

  function draw(root) {
    if (!root.querySelectorAll || !window.Chart) {
      return;
    }
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (window.Chart.getChart(canvas)) {
        return;
      }
      var spec = JSON.parse(document.getElementById(canvas.dataset.chart).textContent);
      spec.datasets.forEach(function (dataset, index) {
        var color = PALETTE[index % PALETTE.length];
        dataset.backgroundColor = dataset.backgroundColor || color;
        dataset.borderColor = dataset.borderColor || color;
      });
      new window.Chart(canvas, {
        type: spec.type,
        data: { labels: spec.labels, datasets: spec.datasets },
        options: {
          locale: document.documentElement.lang || "fr",
          animation: false,
          maintainAspectRatio: false,
          indexAxis: spec.horizontal ? "y" : "x",
          plugins: { legend: { display: spec.datasets.length > 1 || spec.type === "doughnut" } },
          scales: spec.type === "doughnut" ? {} : { y: { beginAtZero: true } },
        },
      });
      canvas.dataset.rendered = "true";
    });
  }

  htmx.onLoad(draw);
})();
