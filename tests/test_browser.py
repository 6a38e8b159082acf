"""A real browser reads the feed gateway (spec/feeds.md §7): Debian's chromium, headless.

``tidings serve-feeds`` runs as a real process on a real home; chromium loads
the index, a feed's page, an entry's page and the Atom feed (which it shows
through the gateway's XSLT stylesheet) and dumps the DOM it built. The checks
are on what a person sees: headings, text, links; and that markup an author
wrote stayed text: no script ran, no element of theirs exists.

Skipped, saying so, only when no chromium is installed (``apt-get install
chromium``; ``.ci/run`` installs it where apt is available).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tidings.content import About, Attachment, LinkShare, Post, Replace, Retract, encode
from tidings.node.home import Home

from .test_cli import ok, tidings
from .test_status_cli import serving_feeds

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: "
                       "apt-get install chromium); the browser test needs a real browser"),
]
#: A post that tries to run script, in every way markup could: it must show as text.
HOSTILE = ("<script>document.title='pwned'</script><img src=x "
           "onerror=\"document.title='pwned'\"><a href=\"javascript:alert(1)\">click</a>")


class Dom(HTMLParser):
    """The elements and text of a DOM that chromium dumped."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.texts: dict[str, list[str]] = {}
        self._open: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag not in ("meta", "link", "br", "img", "input", "hr"):
            self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            while self._open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        for tag in set(self._open):
            self.texts.setdefault(tag, []).append(data)

    def text(self, tag: str = "body") -> str:
        return " ".join(" ".join(self.texts.get(tag, [])).split())

    def hrefs(self) -> list[str]:
        return [str(attrs["href"]) for tag, attrs in self.elements if tag == "a"]

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.elements if tag == name]


def dump_dom(url: str, profile: Path) -> Dom:
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-extensions", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}",
         "--dump-dom", url],
        capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return Dom(done.stdout)


def no_author_markup(dom: Dom) -> None:
    """Nothing an author wrote became an element, a script or a dangerous link."""
    assert not dom.tags("script") and not dom.tags("img") and not dom.tags("iframe")
    assert "pwned" not in dom.text("title")
    for href in dom.hrefs():
        assert re.match(r"(https?://|\.\.?/)", href), href


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "h"
    ok(tidings(path, "init"))
    book = Home(path).open_logbook()
    try:
        book.publish(encode(About("Ada Lovelace", "Notes on the Analytical Engine.")), "about")
        book.publish(encode(Post("A note without a title\nIts second line.\n" + HOSTILE)),
                     "blog")
        book.publish(encode(Post("Show notes: the engine weaves algebra.",
                                 title="Episode 1: Looms", tags=("podcast",),
                                 attachments=(Attachment("https://example.org/ep1.mp3",
                                                         "audio/mpeg", 24_117_248, "Episode 1 "
                                                         "(MP3)"),))), "blog")
        book.publish(encode(LinkShare("https://example.org/sketch", "The Sketch",
                                      "Menabrea's paper")), "blog")
        book.publish(encode(Post("Bernoulli numbers, wrongly", title="Note G")), "blog")
        book.publish(encode(Replace(4, Post("Bernoulli numbers, computed",
                                            title="Note G (corrected)"))), "blog")
        book.publish(encode(Retract(3)), "blog")
        feed = str(book.feed("blog"))
    finally:
        book.store.close()
    return path, feed


def test_a_person_reads_the_gateway_in_a_browser(home: tuple[Path, str], tmp_path: Path
                                                 ) -> None:
    path, feed = home
    profile = tmp_path / "profile"
    with serving_feeds(path) as (base, proc, log_path):
        index = dump_dom(base, profile)
        no_author_markup(index)
        assert index.text("h1") == "Feeds"
        assert "Ada Lovelace · blog" in index.text("h2")
        assert "Notes on the Analytical Engine." in index.text()
        assert {f"./feeds/{feed}", f"./feeds/{feed}.atom", f"./feeds/{feed}.json"} <= set(
            index.hrefs())

        page = dump_dom(f"{base}feeds/{feed}", profile)
        no_author_markup(page)
        assert page.text("h1") == "Ada Lovelace"
        headings = page.text("h2")
        assert "Note G (corrected)" in headings and "Episode 1: Looms" in headings
        body = page.text()
        assert "Bernoulli numbers, computed" in body and "wrongly" not in body
        assert "Retracted by its author" in body and "Menabrea" not in body
        assert "A note without a title Its second line." in body
        assert body.count("A note without a title") == 1  # headed by its time, not its line
        assert HOSTILE in " ".join(page.texts.get("div", []))  # the author's markup, as text
        assert "https://example.org/ep1.mp3" in page.hrefs()
        assert f"../feeds/{feed}/1" in page.hrefs()

        entry = dump_dom(f"{base}feeds/{feed}/4", profile)
        no_author_markup(entry)
        assert entry.text("h1") == "Note G (corrected)"
        assert "Bernoulli numbers, computed" in entry.text() and "edited" in entry.text()

        gone = dump_dom(f"{base}feeds/{feed}/3", profile)
        assert gone.text("h1") == "Entry 3 was retracted"

        atom = dump_dom(f"{base}feeds/{feed}.atom", profile)  # through the XSLT
        no_author_markup(atom)
        assert atom.tags("html") and atom.text("h1") == "Ada Lovelace"
        assert "This is a web feed" in atom.text()
        titles = atom.text("h2")
        assert "Note G (corrected)" in titles and "A note without a title" in titles
        assert "Retracted entry" in titles
        assert "Its second line." in atom.text() and HOSTILE in atom.text("div")
        assert f"../feeds/{feed}/4" in atom.hrefs()  # each entry's page
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert "Traceback" not in log_path.read_text()
