"""`scrape_web`: fetch a web page and return its readable text.

HTML becomes plain text with the standard library's tolerant `html.parser`: scripts, styles and page
chrome (navigation, header, footer) are dropped; headings, paragraphs, list items and table rows
become lines; whitespace is collapsed. No browser runs, so pages built by JavaScript come back thin.
"""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser
from typing import Any

from django.conf import settings

from integrations.tools.builtin.common import capped_request, clip, header_charset
from integrations.tools.registry import Tool, ToolContext, ToolExecutionError

DEFAULT_SCRAPE_MAX_BYTES = 2 * 1024 * 1024
DEFAULT_MAX_CHARS = 20_000
MAX_CHARS = 100_000
MIN_CHARS = 100
MAX_URL_LENGTH = 2048
MAX_TITLE_CHARS = 300
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$"

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain"})

# Whose text never belongs in the readable content.
SKIPPED_ELEMENTS = frozenset(
    {"script", "style", "noscript", "template", "svg", "math", "nav", "header", "footer", "iframe", "object"}
)
# Elements that start a new line of text; table cells do not, so that a row reads as one line.
BLOCK_ELEMENTS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details", "dialog", "div"),
        *("dl", "dt", "fieldset", "figcaption", "figure", "form", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "html"),
        *("li", "main", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot", "thead"),
        *("tr", "ul"),
    }
)
VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
)
HEADINGS = {f"h{level}": "#" * level for level in range(1, 7)}
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)


class ReadableTextParser(HTMLParser):
    """Collects the title and the readable text of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title_parts: list[str] = []
        self.lines: list[str] = []
        self.text_chars = 0  # length of the text so far, counting line breaks
        self._current: list[str] = []
        self._prefix = ""
        # Open elements that hide their content; a stack, since broken HTML leaves some unclosed.
        self._skipping: list[str] = []
        self._in_title = False
        self._title_done = False
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self._title_done and not self._skipping:
            self._in_title = True
            return
        if self._skipping or tag in SKIPPED_ELEMENTS:
            if tag not in VOID_ELEMENTS:
                self._skipping.append(tag)
            return
        if tag in BLOCK_ELEMENTS:
            self._break()
        if tag in HEADINGS:
            self._prefix = HEADINGS[tag] + " "
        elif tag == "li":
            self._prefix = "- "
        elif tag == "pre":
            self._pre_depth += 1
        elif tag in ("td", "th"):
            self._current.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/> and friends: a self-closed element opens nothing, so it must not enter the skip stack.
        if not self._skipping and tag in BLOCK_ELEMENTS:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self._title_done = True
            return
        if self._skipping:
            if tag in self._skipping:
                # Close the innermost open element of that name and whatever was left unclosed inside it.
                index = len(self._skipping) - 1 - self._skipping[::-1].index(tag)
                del self._skipping[index:]
            return
        if tag == "pre" and self._pre_depth:
            self._pre_depth -= 1
        if tag in BLOCK_ELEMENTS:
            self._break()
        if tag in HEADINGS or tag == "li":
            # An empty heading or item must not lend its marker to the next line.
            self._prefix = ""

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)
            return
        if self._skipping:
            return
        if self._pre_depth:
            # Preformatted text (code, poems) keeps its line breaks.
            first, *rest = data.split("\n")
            self._current.append(first)
            for line in rest:
                self._break()
                self._current.append(line)
            return
        self._current.append(data)

    def _break(self) -> None:
        text = " ".join("".join(self._current).split())
        if text:
            self.lines.append(self._prefix + text)
            self.text_chars += len(self.lines[-1]) + 1
            self._prefix = ""
        self._current = []

    def result(self) -> tuple[str, str]:
        """(title, text) once the whole document has been fed."""
        self.close()
        self._break()
        title = " ".join("".join(self.title_parts).split())
        return title[:MAX_TITLE_CHARS], "\n".join(self.lines)


_FEED_CHARS = 64 * 1024


def html_to_text(html: str, max_chars: int | None = None) -> tuple[str, str]:
    """The (title, readable text) of an HTML document; parsing may stop early once `max_chars` of text are found."""
    parser = ReadableTextParser()
    # Fed in slices so that a long page is not parsed (pure Python, ~0.3 s per MB) past the text that is kept.
    for start in range(0, len(html), _FEED_CHARS):
        parser.feed(html[start : start + _FEED_CHARS])
        if max_chars is not None and parser.text_chars > max_chars:
            break
    return parser.result()


def _normalise_plain_text(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    # Collapse runs of blank lines into one, so paragraphs stay apart without wasting the character budget.
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    return "\n".join(kept).strip()


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def decode_document(content: bytes, content_type: str, *, is_html: bool) -> str:
    """Decode a page with the charset from its Content-Type, else its <meta charset>, else UTF-8."""
    candidates = [header_charset(content_type)]
    if is_html:
        match = _META_CHARSET.search(content[:4096])
        candidates.append(match.group(1).decode("ascii") if match else None)
    for charset in candidates:
        if not charset:
            continue
        try:
            codecs.lookup(charset)
        except LookupError:
            continue
        return content.decode(charset, errors="replace")
    return content.decode("utf-8", errors="replace")


def _looks_like_html(content: bytes) -> bool:
    head = content[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def scrape_max_bytes() -> int:
    """How much of a page scrape_web downloads at most (TOOL_SCRAPE_MAX_BYTES)."""
    return int(getattr(settings, "TOOL_SCRAPE_MAX_BYTES", DEFAULT_SCRAPE_MAX_BYTES))


def _execute(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    max_chars = arguments.get("max_chars", DEFAULT_MAX_CHARS)
    response = capped_request(
        "GET",
        arguments["url"].strip(),
        max_bytes=scrape_max_bytes(),
        failure="The page could not be fetched",
        headers={"Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1"},
    )
    if not 200 <= response.status_code < 300:
        raise ToolExecutionError(f"The page answered HTTP {response.status_code}.")
    content_type = response.headers.get("Content-Type", "")
    media_type = _media_type(content_type)
    if media_type in HTML_TYPES or (not media_type and _looks_like_html(response.content)):
        title, text = html_to_text(decode_document(response.content, content_type, is_html=True), max_chars)
    elif media_type in TEXT_TYPES:
        title, text = "", _normalise_plain_text(decode_document(response.content, content_type, is_html=False))
    else:
        shown = media_type[:100] or "unknown"
        raise ToolExecutionError(
            f"The page is not HTML or plain text (content type {shown}); scrape_web only reads web pages."
        )
    text, cut = clip(text, max_chars)
    return {"url": response.url, "title": title, "text": text, "truncated": cut or response.truncated}


SCRAPE_WEB = Tool(
    name="scrape_web",
    display_name="Read Web Page",
    description=(
        "Fetch a web page (http or https) and return its title and readable text, without scripts, styles, "
        "navigation, headers or footers. Headings are marked with '#', list items with '-'. Use it to read a page "
        "found with search_web or given by the user. HTML and plain text only."
    ),
    category="web",
    icon="Globe",
    parameters={
        "type": "object",
        "properties": {
            "url": {
                "type": "string",
                "pattern": URL_PATTERN,
                "maxLength": MAX_URL_LENGTH,
                "description": "The page's full URL, starting with http:// or https://.",
            },
            "max_chars": {
                "type": "integer",
                "minimum": MIN_CHARS,
                "maximum": MAX_CHARS,
                "default": DEFAULT_MAX_CHARS,
                "description": (
                    f"At most this many characters of text (default {DEFAULT_MAX_CHARS}); very long text is also "
                    "cut to fit one tool result (about 28 KB)."
                ),
            },
        },
        "required": ["url"],
        "additionalProperties": False,
    },
    execute=_execute,
    keywords=("scrape", "fetch", "read", "webpage", "page", "website", "url", "link", "article", "browse", "extract"),
)
