"""One view of a feed on every node (spec/05 §2, spec/06, spec/10 §8), with real processes.

* The relay scenario: an author gives an honest relay a log whose entry 1000
  carries a zeroed signature (and 1001-1003 validly signed after it). The relay
  keeps 1..999 and closes on the author; readers, and a second relay peered
  with the first, end with the same 1..999, refuse nobody, and keep getting
  another author's feed through the relay.
* A fork met in live replication: one key used in two homes. The two nodes find
  where the histories split and both hold the proof within seconds; `status`
  shows it.
* The alternating-signature fork: one history signed only at odd seqs, the
  other only at even seqs. The two relays holding them prove the fork, and
  every node that holds either branch gets the proof.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import trio

from tests.adversary import Adversary
from tests.nodes import NodeProcess, feed_of, running, wait_for
from tests.test_cli import ok, tidings
from tidings import FeedId, ForkProof, Identity, Logbook, MemoryStore, SqliteStore
from tidings.core.entry import FLAG_SIGNED, Entry, encode_body, payload_hash, sign_entry
from tidings.core.lipmaa import link_target
from tidings.node.home import Home
from tidings.wire.messages import Entries, Note

#: Every test here starts real processes (see tests/conftest.py).
pytestmark = pytest.mark.system

#: Every wait here is a bound on a loaded machine, not a timing assertion.
WAIT = 60


def stored_seqs(home: Path, feed: FeedId) -> list[int]:
    store = SqliteStore(home / "store.sqlite3")
    try:
        return [row.seq for row in store.entries(feed)]
    finally:
        store.close()


def forked_at(home: Path, feed: FeedId) -> int | None:
    store = SqliteStore(home / "store.sqlite3")
    try:
        return store.forked_at(feed)
    finally:
        store.close()


def status(node: NodeProcess) -> dict[str, object]:
    result = ok(tidings(node.home, "status", "--json"))
    return json.loads(result.out)  # type: ignore[no-any-return]


def feed_status(node: NodeProcess, feed: FeedId) -> dict[str, object]:
    feeds = status(node)["feeds"]
    assert isinstance(feeds, list)
    return next(f for f in feeds if f["feed"] == str(feed))


def refusals(node: NodeProcess, *, but: str = "-") -> list[str]:
    """Peers this node found misbehaving (each is refused for 10 minutes), but ``but``."""
    return [line for line in re.findall(
        r"event=peer-error .*code=(?:invalid-data|malformed|flood|unexpected|bad-frame"
        r"|oversize).*", node.log()) if f"peer={but}" not in line]


def chain(who: Identity, log_id: str, payloads: list[bytes], signed: list[bool],
          before: list[Entry] | None = None, timestamp: int = 1) -> list[Entry]:
    """Entries continuing ``before`` (correctly linked), each signed or not as given."""
    entries = list(before or [])
    made = []
    for payload, sign in zip(payloads, signed, strict=True):
        seq = len(entries) + 1
        target = link_target(seq)
        entry = sign_entry(
            who.secret_key, log_id=log_id, seq=seq, timestamp=timestamp, payload=payload,
            backlink=entries[-1].hash if entries else None,
            lipmaa_link=entries[target - 1].hash if target else None, signed=sign,
        )
        entries.append(entry)
        made.append(entry)
    return made


def bundle_file(path: Path, feed: FeedId, items: list[tuple[bytes, bytes | None]]) -> Path:
    book = Logbook(MemoryStore())
    result = book.ingest(feed, items)
    assert result.error is None and result.pending == 0, result
    with open(path, "wb") as handle:
        book.export_bundle(feed, handle.write)
    return path


# -- the relay scenario ---------------------------------------------------------------


def test_a_bad_entry_from_an_author_leaves_every_node_with_one_view(tmp_path: Path) -> None:
    author = Identity.generate()
    feed = author.author.feed("blog")
    good = chain(author, "blog", [b"post %d" % i for i in range(1, 1000)],
                 [i % 50 == 0 or i == 999 for i in range(1, 1000)])
    # Entry 1000: a 300 KB payload and a signature of zeros; 1001-1003 validly signed.
    big = os.urandom(300_000)
    target = link_target(1000)
    body = encode_body(flags=FLAG_SIGNED, author=author.author.key, log_id="blog", seq=1000,
                       timestamp=1, backlink=good[-1].hash,
                       lipmaa_link=good[target - 1].hash if target else None,
                       payload_size=len(big), payload_hash=payload_hash(big))
    from tidings.core.entry import SIG_HEAD, decode_entry

    bad = decode_entry(body + SIG_HEAD + bytes(64))
    after = chain(author, "blog", [b"more 1", b"more 2", b"more 3"], [True, True, True],
                  before=[*good, bad])
    items = [(e.raw, b"post %d" % e.seq) for e in good] + [(bad.raw, big)] + [
        (e.raw, b"more %d" % i) for i, e in enumerate(after, 1)]

    honest_home = tmp_path / "honest"
    ok(tidings(honest_home, "init"))
    ok(tidings(honest_home, "publish", "--lines", "--log", "notes",
               stdin=b"".join(b"note %d\n" % i for i in range(1, 51))))
    notes = feed_of(honest_home, "notes")

    with running(tmp_path / "x", "--relay") as x, \
            running(honest_home, "--peer", x.address) as honest:
        wait_for(lambda: 50 in stored_seqs(x.home, notes), WAIT, "the relay takes the notes")

        async def offer() -> str:  # the author, as a peer of the relay
            adversary = await Adversary.opened(
                ("127.0.0.1", x.port), clock=[(feed, Note(1003, 0, after[-1].hash[:8]))])
            await adversary.send(Entries(feed, tuple(items)))
            assert await adversary.closed_with() == "invalid-data"  # the author's fault
            return adversary.public_key.hex()[:8]

        author_node = trio.run(offer)
        wait_for(lambda: stored_seqs(x.home, feed) == list(range(1, 1000)), WAIT,
                 "the relay keeps the valid part")

        for name in ("reader", "second"):
            ok(tidings(tmp_path / name, "follow", str(feed)))
        ok(tidings(tmp_path / "reader", "follow", str(notes)))
        with running(tmp_path / "second", "--relay", "--peer", x.address) as second:
            synced = tidings(tmp_path / "reader", "sync", "--peer", x.address, "--timeout", "60")
            assert synced.code == 0, synced.err
            wait_for(lambda: stored_seqs(second.home, feed) == list(range(1, 1000)), WAIT,
                     "the second relay holds the same view")
            # Another reader, through the second relay only.
            ok(tidings(tmp_path / "third", "follow", str(feed)))
            third = tidings(tmp_path / "third", "sync", "--peer", second.address,
                            "--timeout", "60")
            assert third.code == 0, third.err
            [only] = refusals(x)  # the relay refused the author, and only the author
            assert f"peer={author_node}" in only and "seq 1000: bad-signature" in only
            for node in (x, second, honest):
                assert not refusals(node, but=author_node), node.log()
        for home in (x.home, tmp_path / "reader", tmp_path / "second", tmp_path / "third"):
            assert stored_seqs(home, feed) == list(range(1, 1000)), home
            ok(tidings(home, "verify"))
        assert stored_seqs(tmp_path / "reader", notes) == list(range(1, 51))
        assert "bad-signature" in x.log()


# -- a fork met live -------------------------------------------------------------------


def test_a_fork_met_live_is_proven_on_both_sides_and_shown_in_status(tmp_path: Path) -> None:
    laptop, copy = tmp_path / "laptop", tmp_path / "copy"
    ok(tidings(laptop, "init"))
    ok(tidings(laptop, "publish", "--lines", "--log", "blog",
               stdin=b"".join(b"laptop %d\n" % i for i in range(1, 6))))
    copy.mkdir()
    shutil.copy2(laptop / "secret.key", copy / "secret.key")  # a copied home, empty store
    ok(tidings(copy, "publish", "--log", "blog", "written on the copy"))
    blog = feed_of(laptop, "blog")
    assert feed_of(copy, "blog") == blog
    with running(laptop) as a, running(copy, "--peer", a.address) as b:
        for node in (a, b):
            node.wait_log(r"event=fork-proven .*seq=1\b", timeout=WAIT)
        for node in (a, b):
            shown = feed_status(node, blog)
            assert shown["forked_at"] == 1 and shown["local_seq"] == 0, shown
            assert shown["behind"] == 0 and not shown["diverged"]
            text = ok(tidings(node.home, "status")).out
            assert "FORKED at seq 1" in text and "forks    1 feed" in text
    for home in (laptop, copy):
        [proof] = ok(tidings(home, "forks", "--json")).json_lines()
        assert proof["feed"] == str(blog) and proof["seq"] == 1
    # Nothing was lost: each home still holds what it wrote.
    assert stored_seqs(laptop, blog) == [1, 2, 3, 4, 5]
    assert stored_seqs(copy, blog) == [1]
    refused = tidings(copy, "publish", "--log", "blog", "more")
    assert refused.code != 0 and "forked" in refused.err


# -- the alternating-signature fork ------------------------------------------------------


def test_an_alternating_signature_fork_is_proven_and_reaches_every_holder(
    tmp_path: Path,
) -> None:
    author = Identity.generate()
    feed = author.author.feed("blog")
    shared = chain(author, "blog", [b"shared %d" % i for i in range(1, 11)],
                   [i in (5, 10) for i in range(1, 11)])
    # From seq 11: history A signed only at odd seqs, history B only at even seqs.
    a = chain(author, "blog", [b"a %d" % i for i in range(11, 21)],
              [i % 2 == 1 for i in range(11, 21)], before=shared, timestamp=2)
    b = chain(author, "blog", [b"b %d" % i for i in range(11, 22)],
              [i % 2 == 0 for i in range(11, 22)], before=shared, timestamp=3)
    a_items = [(e.raw, None) for e in [*shared, *a[:-1]]]  # ends at 19, signed
    b_items = [(e.raw, None) for e in [*shared, *b[:-1]]]  # ends at 20, signed
    assert not any(x.seq == y.seq and x.signed and y.signed for x in a for y in b)
    homes = {name: tmp_path / name for name in ("x", "y", "z", "w")}
    for name, items in (("x", a_items), ("y", b_items)):
        ok(tidings(homes[name], "import", str(bundle_file(tmp_path / f"{name}.bundle", feed,
                                                          items))))
    for home in homes.values():
        ok(tidings(home, "follow", str(feed)))
    with running(homes["x"]) as x, running(homes["z"], "--peer", x.address) as z:
        wait_for(lambda: len(stored_seqs(homes["z"], feed)) == 19, WAIT, "z has A")
        with running(homes["y"]) as y, running(homes["w"], "--peer", y.address) as w:
            wait_for(lambda: len(stored_seqs(homes["w"], feed)) == 20, WAIT, "w has B")
        assert forked_at(homes["z"], feed) is None  # nobody has met both histories yet
        # Now the two relays meet: y (restarted) dials x.
        with running(homes["y"], "--peer", x.address) as y, \
                    running(homes["w"], "--peer", y.address) as w:
            for node in (x, y, z, w):
                wait_for(lambda node=node: forked_at(node.home, feed) == 11, WAIT,
                         f"{node.home.name} holds the proof")
            for node in (x, y, z, w):
                assert feed_status(node, feed)["forked_at"] == 11
                assert not refusals(node), node.log()
    proofs = {home.name: ok(tidings(home, "forks", "--json")).json_lines() for home in
              homes.values()}
    assert {p[0]["seq"] for p in proofs.values()} == {11}
    raw = bytes.fromhex(__import__("base64").b64decode(proofs["z"][0]["proof"]).hex())
    proof = ForkProof.from_bytes(raw)
    # Neither entry 11 is signed in both histories: the branches run to the next signature.
    assert sorted(len(run) for run in (proof.first, proof.second)) == [1, 2]
    for home in homes.values():
        assert stored_seqs(home, feed)[:10] == list(range(1, 11))
        Home(home)  # the homes are intact
