"""mkdocs hook: after the build, every internal link of the built site must lead somewhere.

mkdocs validates the links it writes from Markdown, but not those inside raw HTML, included
snippets or notebooks rendered by mkdocs-jupyter (a notebook's table of contents links to
headings by anchors that the rendered page may not have). This reads the built HTML instead:
every ``href`` and ``src`` that is not an outside address (``https:``, ``mailto:``, ...) must
name a file of the site, and its ``#fragment``, where it has one, an ``id`` (or ``<a name>``)
in that file. Any broken link fails the build (``make docs``, and the test suite's build) with
one line per link: page, link, what is missing.
"""

from __future__ import annotations

import logging
from functools import cache
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

log = logging.getLogger("mkdocs.hooks.links")

LINK_ATTRIBUTES = {"href", "src"}


class _Page(HTMLParser):
    """The anchors (``id``, ``<a name>``) and the links (``href``, ``src``) of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (name == "name" and tag == "a"):
                self.anchors.add(value)
            elif name in LINK_ATTRIBUTES:
                self.links.append(value)


@cache
def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    page.close()
    return page


def _target(site: Path, page: Path, path: str) -> Path | None:
    """The site file that ``path`` (a link's path part, relative or site-absolute) names."""
    base = site if path.startswith("/") else page.parent
    target = base / unquote(path).lstrip("/")
    try:
        target.resolve().relative_to(site.resolve())
    except ValueError:
        return None  # above the site's root: not part of the site
    if path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None


def check_link(site: Path, page: Path, link: str) -> str | None:
    """Why ``link`` on ``page`` is broken, or None when it leads somewhere."""
    parts = urlsplit(link)
    if parts.scheme or parts.netloc:
        return None  # outside the site (https:, mailto:, data:, //host/...)
    target = page
    if parts.path:
        found = _target(site, page, parts.path)
        if found is None:
            return "no such file"
        target = found
    fragment = unquote(parts.fragment)
    if not fragment or target.suffix != ".html":
        return None  # "#" is the top of the page
    if fragment not in _parse(target).anchors:
        return f"no id {fragment!r} in {target.relative_to(site).as_posix()}"
    return None


def broken_links(site_dir: str | Path) -> list[str]:
    """One line per broken internal link of the built site: ``page: link (why)``."""
    site = Path(site_dir)
    _parse.cache_clear()
    problems = []
    for page in sorted(site.rglob("*.html")):
        for link in dict.fromkeys(_parse(page).links):
            why = check_link(site, page, link)
            if why is not None:
                where = PurePosixPath(page.relative_to(site).as_posix())
                problems.append(f"{where}: {link} ({why})")
    _parse.cache_clear()
    return problems


def on_post_build(config: Any, **kwargs: Any) -> None:
    """Fail the build when any internal link of the built site is broken."""
    from mkdocs.exceptions import PluginError

    problems = broken_links(config["site_dir"])
    for line in problems:
        log.error("broken link: %s", line)
    if problems:
        raise PluginError(f"{len(problems)} broken internal links in the built site (see above)")
