"""What the browser walks share: a logged-in page per person that fails on any alert, and the
horizontal overflow check.

pytest-django's ``live_server`` empties the database after every test that uses it, so a test
seeds what it walks and walks as much as it can in one go: the server and the browser are
shared by the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from playwright.sync_api import Browser, Page

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}

# Overflow of the page, and of any element past its box without being a scroll region a
# keyboard can reach (tabindex="0", with a role and a name to announce it).
OVERFLOW_JS = """
() => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) {
    problems.push(`the page scrolls sideways: ${root.scrollWidth}px in ${root.clientWidth}px`);
  }
  const describe = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\\s+/).join(".") : "");
  for (const el of document.querySelectorAll("body *")) {
    if (el.scrollWidth <= el.clientWidth + 1 || el.clientWidth === 0) continue;
    const style = getComputedStyle(el);
    if (["auto", "scroll"].includes(style.overflowX)) {
      const reachable = el.tabIndex >= 0 && el.getAttribute("role") === "region"
        && (el.getAttribute("aria-label") || el.getAttribute("aria-labelledby"));
      if (!reachable) {
        problems.push(`${describe(el)} scrolls sideways (${el.scrollWidth}px in ${el.clientWidth}px) but a keyboard cannot reach it`);
      }
    } else if (style.overflowX === "visible" && el.matches(".card, main, .module")) {
      problems.push(`content overflows ${describe(el)} (${el.scrollWidth}px in ${el.clientWidth}px)`);
    }
  }
  return problems;
}
"""


# Counts htmx requests in flight, so a walk waits for the panels a page loads after itself
# (networkidle would wait 500 ms more on every page).
PENDING_JS = """
window.__pending = 0;
document.addEventListener("htmx:beforeRequest", () => { window.__pending += 1; });
document.addEventListener("htmx:afterRequest", () => { window.__pending -= 1; });
"""
SETTLED_JS = "() => document.readyState === 'complete' && window.__pending === 0"
# htmx settles 20 ms after a swap; an image's onerror fires after it is inserted.
A_MOMENT_JS = "() => new Promise(done => requestAnimationFrame(() => setTimeout(done, 30)))"


@dataclass
class Visitor:
    """One person's browser tab; every alert, confirm or prompt is recorded and dismissed."""

    page: Page
    base_url: str
    dialogs: list[str] = field(default_factory=list)

    def open(self, path: str) -> Page:
        return self.open_url(self.base_url + path)

    def open_url(self, path: str) -> Page:
        response = self.page.goto(path)
        assert response is not None and response.status < 400, (path, response and response.status)
        self.settle()
        assert not self.dialogs, f"{path}: a dialog opened: {self.dialogs}"
        return self.page

    def settle(self) -> None:
        """Wait until the page and the htmx requests it made are done, and a moment more."""
        self.page.wait_for_function(SETTLED_JS)
        self.page.evaluate(A_MOMENT_JS)

    def overflow(self) -> list[str]:
        return self.page.evaluate(OVERFLOW_JS)


@contextmanager
def visitor(
    browser: Browser, base_url: str, username: str, *, viewport: dict[str, int] = DESKTOP
) -> Iterator[Visitor]:
    context = browser.new_context(locale="fr-FR", viewport=viewport)
    context.add_init_script(PENDING_JS)
    page = context.new_page()
    page.set_default_timeout(15_000)
    person = Visitor(page=page, base_url=base_url)

    def trap(dialog) -> None:  # type: ignore[no-untyped-def]
        person.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", trap)
    try:
        if username:
            # Logged in as the login form would (a session cookie), without its round trips.
            client = Client()
            client.force_login(User.objects.get(username=username))
            cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
            context.add_cookies(
                [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base_url}]
            )
        yield person
        assert not person.dialogs, f"a dialog opened: {person.dialogs}"
    finally:
        context.close()
