"""Links and scripts in the HTML part of an email: refused when a template is saved, and taken
out of what a template renders (a contact's value can become a link's address).

Only web, mail and phone links are kept: a ``javascript:``, ``data:`` or ``vbscript:`` address
runs code or shows a forged page in the mail clients and webmails that follow it.
"""

from __future__ import annotations

import re
from html import escape
from html.parser import HTMLParser

SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
# Attributes a browser or mail client loads or follows as an address.
URL_ATTRIBUTES = frozenset(
    {"href", "src", "action", "formaction", "background", "poster", "cite", "data", "xlink:href",
     "lowsrc", "dynsrc", "longdesc", "ping", "srcset", "usemap"}
)  # fmt: skip
SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):", re.IGNORECASE)
# Browsers drop these anywhere in an address ("java\tscript:" is javascript:) and ignore
# leading control characters and spaces.
IGNORED_IN_URL = re.compile(r"[\t\n\r]")
LEADING_IGNORED = "".join(chr(code) for code in range(33))


def unsafe_address(value: str) -> bool:
    """True for an address whose scheme is not http, https, mailto or tel. Relative addresses
    and template variables (``{{ unsubscribe_url }}``) have no scheme and pass."""
    cleaned = IGNORED_IN_URL.sub("", value).lstrip(LEADING_IGNORED)
    match = SCHEME.match(cleaned)
    return bool(match) and match.group(1).lower() not in SAFE_SCHEMES


def _unsafe_attribute(name: str, value: str | None) -> bool:
    if name.startswith("on"):  # onclick, onerror…: script
        return True
    if name not in URL_ATTRIBUTES or value is None:
        return False
    if name == "srcset":
        return any(unsafe_address(part.strip()) for part in value.split(","))
    return unsafe_address(value)


class _Finder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.found.append("<script>")
        for name, value in attrs:
            if _unsafe_attribute(name, value):
                self.found.append(f"{name}={value}" if name.startswith("on") else value or "")

    handle_startendtag = handle_starttag


def unsafe_parts(source: str) -> list[str]:
    """The scripts, event handlers and non-web addresses in ``source`` (an HTML template)."""
    finder = _Finder()
    finder.feed(source)
    finder.close()
    return finder.found


class _Cleaner(HTMLParser):
    """Writes the document back as it came, less scripts, event handlers and unsafe addresses
    (an unsafe address becomes ``#``)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.out: list[str] = []
        self.in_script = 0

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], end: str) -> None:
        if tag == "script":
            self.in_script += end == ">"
            return
        if not any(_unsafe_attribute(name, value) for name, value in attrs):
            self.out.append(self.get_starttag_text() or "")
            return
        kept = []
        for name, value in attrs:
            if name.startswith("on"):
                continue
            if _unsafe_attribute(name, value):
                value = "#"
            kept.append(name if value is None else f'{name}="{escape(value)}"')
        self.out.append(f"<{' '.join([tag, *kept])}{end}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, ">")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag(tag, attrs, " />")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_script = max(0, self.in_script - 1)
            return
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self.in_script:
            self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        self.out.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self.out.append(f"&#{name};")

    def handle_comment(self, data: str) -> None:
        self.out.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self.out.append(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        self.out.append(f"<?{data}>")

    def unknown_decl(self, data: str) -> None:
        self.out.append(f"<![{data}]>")


# What may start something unsafe. Nearly every email has none of it and skips the parser
# (0.6 ms for 1.3 kB); a false alarm only costs that parse.
SAFE_START = r"(?:https?://|mailto:|tel:|#|/[^/])"
SUSPECT = re.compile(
    r"<script|\bon[a-z]+\s*=|(?:"
    + "|".join(re.escape(name) for name in sorted(URL_ATTRIBUTES))
    + rf")\s*=\s*(?:\"(?!{SAFE_START})|'(?!{SAFE_START})|(?![\"']|{SAFE_START}))",
    re.IGNORECASE,
)


def without_unsafe_parts(html: str) -> str:
    """``html`` less its scripts, event handlers and non-web addresses; unchanged (the same
    string) when it has none, which is nearly always."""
    if not SUSPECT.search(html) or not unsafe_parts(html):
        return html
    cleaner = _Cleaner()
    cleaner.feed(html)
    cleaner.close()
    return "".join(cleaner.out)
