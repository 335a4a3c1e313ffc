"""What a browser test checks on a phone (390 × 844), for any page: reuse it for a new page
(``assert_fits_phone(page)`` after opening it in a ``visitor(..., viewport=PHONE)``).

- nothing scrolls sideways (the page, or a card or ``main`` past its box) — browser_pages'
  OVERFLOW_JS;
- every visible button, button-like link, select and text field in the header and ``main`` is at
  least 44 px high (a thumb), and every field's text is at least 16 px (iOS Safari zooms into a
  smaller one and the page then scrolls sideways);
- the menu folds behind its "Menu" button: ``open_menu(page)`` opens it (Log out, the language
  and the nav links are inside).
"""

from __future__ import annotations

import os

from playwright.sync_api import Page, expect

from tests.browser_pages import OVERFLOW_JS

MIN_TARGET = 44
MIN_FIELD_TEXT = 16

# Visible tap targets smaller than MIN_TARGET, and fields whose text is under MIN_FIELD_TEXT.
TARGETS_JS = """
([minTarget, minText]) => {
  const problems = [];
  const visible = (el) => { const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== "hidden"; };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + ((el.textContent || el.name || "").trim() ? ` "${(el.textContent || el.name).trim().slice(0, 30)}"` : "");
  const targets = "button, .button, select, input:not([type=hidden], [type=checkbox], [type=radio]), textarea, label.choice";
  for (const el of document.querySelectorAll(`header :is(${targets}), main :is(${targets})`)) {
    if (!visible(el)) continue;
    const height = el.getBoundingClientRect().height;
    if (height < minTarget - 0.5) problems.push(`${name(el)} is ${Math.round(height)} px high`);
    if (el.matches("select, input, textarea")) {
      const size = parseFloat(getComputedStyle(el).fontSize);
      if (size < minText) problems.push(`${name(el)} has ${size} px text`);
    }
  }
  return problems;
}
"""


def assert_fits_phone(page: Page, *, screenshot: str = "") -> None:
    """The page as it is now fits a phone: no sideways scroll, thumb-sized targets, 16 px fields.

    With ``screenshot`` and LEADFUNNEL_SCREENSHOTS set to a folder, also saves a full-page PNG
    there under that name, to look at by eye (never committed)."""
    sizes = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert sizes[0] <= sizes[1], f"{page.url}: the page is {sizes[0]} px wide in {sizes[1]} px"
    assert page.evaluate(OVERFLOW_JS) == [], page.url
    assert page.evaluate(TARGETS_JS, [MIN_TARGET, MIN_FIELD_TEXT]) == [], page.url
    save_screenshot(page, screenshot)


def save_screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("LEADFUNNEL_SCREENSHOTS", "")
    if name and folder:
        os.makedirs(folder, exist_ok=True)
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


def open_menu(page: Page) -> None:
    """Open the header's menu on a phone (on a desk it is always open and has no button)."""
    button = page.locator("label.menu-button")
    if button.is_visible():
        if not page.locator("#menu-toggle").is_checked():
            button.click()
    expect(page.locator("#menu nav")).to_be_visible()


def in_viewport_and_big_enough(page: Page, selector: str) -> None:
    """The element is on screen (scrolled to if need be), at least 44 px high."""
    element = page.locator(selector)
    element.scroll_into_view_if_needed()
    expect(element).to_be_in_viewport()
    box = element.bounding_box()
    assert box is not None and box["height"] >= MIN_TARGET - 0.5, (selector, box)
    assert box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"], (selector, box)
