"""A page as a person sees it: Debian's headless Chromium opens a file with the network disabled.

``open_page`` returns the DOM after the page's scripts ran, every console message the page produced
(errors included: Chromium logs them all at one level), and writes a screenshot. Chromium is installed by
``.ci/run`` (Debian's ``chromium`` package); without it the tests that need it are skipped, saying so.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

# No request leaves the machine: every name fails to resolve and every proxied request goes nowhere.
OFFLINE = ("--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass(frozen=True)
class Page:
    dom: str
    console: list[str]


def open_page(path: Path, screenshot: Path | None = None, *, width: int = 1400, height: int = 2400) -> Page:
    browser = chromium()
    assert browser is not None, "chromium is not installed (apt-get install chromium)"
    base = [
        browser,
        "--headless",
        "--no-sandbox",  # runs as root in CI
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        "--virtual-time-budget=10000",  # let the page's scripts finish before the DOM is read
        *OFFLINE,
    ]
    url = path.resolve().as_uri()
    dumped = subprocess.run(
        [*base, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    if screenshot is not None:
        subprocess.run(
            [*base, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True
        )
    return Page(dumped.stdout, console)


class ElementCounter(HTMLParser):
    """Counts elements with class ``target`` below the element with id ``within``, per the nearest
    enclosing element whose class starts with ``group`` (e.g. plotly's "trace bars", "trace scatter")."""

    # HTML's void elements have no end tag; a serialised DOM closes every SVG element (<path ...></path>).
    VOID = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
    )

    def __init__(self, within: str, target: str, group: str) -> None:
        super().__init__()
        self.within, self.target, self.group = within, target, group
        self.stack: list[tuple[bool, str]] = []  # (inside `within`, the group class in force)
        self.counts: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        inside, group = self.stack[-1] if self.stack else (False, "")
        inside = inside or values.get("id") == self.within
        classes = values.get("class") or ""
        if classes.startswith(self.group):
            group = classes
        if inside and self.target in classes.split():
            kind = group.split()[1] if len(group.split()) > 1 else group
            self.counts[kind] = self.counts.get(kind, 0) + 1
        if tag not in self.VOID:
            self.stack.append((inside, group))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()


def count_elements(dom: str, *, within: str, target: str, group: str) -> dict[str, int]:
    counter = ElementCounter(within, target, group)
    counter.feed(dom)
    return counter.counts
