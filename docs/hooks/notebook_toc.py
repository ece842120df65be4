"""mkdocs hook: a notebook page's table of contents links to the headings the page really has.

mkdocs-jupyter renders a notebook's headings with nbconvert (ids from the heading's whole text)
but builds the sidebar from a Markdown copy of the notebook, where a code span in a heading is
dropped: ``## `check`: what is wrong with the data`` is ``#check-what-is-wrong-with-the-data`` on
the page and ``#what-is-wrong-with-the-data``, titled ": what is wrong with the data", in the
sidebar. This points each sidebar entry whose anchor the page lacks at the one heading whose id
ends with it, titled with that heading's text. Anything it cannot match is left for the link
check (``links.py``) to report.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from html import escape
from html.parser import HTMLParser
from typing import Any

HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


class _Headings(HTMLParser):
    """Each heading's id and text (without its ``¶`` anchor link)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: dict[str, str] = {}
        self._open: tuple[str, str] | None = None  # (tag, id) of the heading being read
        self._skip = 0  # inside the heading's anchor link
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in HEADINGS and found.get("id"):
            self._open, self._parts = (tag, str(found["id"])), []
        elif self._open and tag == "a" and "anchor-link" in (found.get("class") or ""):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag == "a" and self._skip:
            self._skip -= 1
        elif self._open and tag == self._open[0]:
            self.text[self._open[1]] = " ".join("".join(self._parts).split())
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open and not self._skip:
            self._parts.append(data)


def headings(page_html: str) -> dict[str, str]:
    """Heading id -> heading text, for every heading with an id."""
    parser = _Headings()
    parser.feed(page_html)
    parser.close()
    return parser.text


def _walk(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        yield item
        yield from _walk(item.children)


def align_toc(toc: Iterable[Any], page_html: str) -> int:
    """Re-point the entries of ``toc`` (mkdocs ``AnchorLink``s) whose id ``page_html`` lacks;
    the number re-pointed."""
    found = headings(page_html)
    fixed = 0
    for item in _walk(toc):
        if item.id in found:
            continue
        matches = [i for i in found if i.endswith(f"-{item.id}")]
        if len(matches) == 1:
            item.id, item.title = matches[0], escape(found[matches[0]])
            fixed += 1
    return fixed


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        align_toc(page.toc, html)
    return html
