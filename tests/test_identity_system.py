"""Identities with real processes (issue 13's "must show"): `tidings up` on loopback,
the CLI for everything else."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.nodes import running, wait_for
from tests.test_cli import _env, ok, tidings
from tests.test_status_cli import fetch, serving_feeds
from tidings.core.ids import AuthorId, FeedId
from tidings.node.state import NodeState

pytestmark = pytest.mark.system


@pytest.fixture(autouse=True)
def passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_PASSPHRASE", "correct horse battery staple")


def identity_of(home: Path) -> str:
    return str(json.loads(ok(tidings(home, "identity", "show", "--json")).out)["identity"])


def make_identity(root_home: Path, next_key: Path, name: str) -> str:
    ok(tidings(root_home, "identity", "init", "--name", name, "--next-key-file",
               str(next_key), "--kdf-cost", "10"))
    return identity_of(root_home)


def pair(identity: str, root_home: Path, home: Path, name: str) -> None:
    request = ok(tidings(home, "device", "pair", identity, "--name", name,
                         "--no-wait")).out.strip()
    ok(tidings(root_home, "device", "approve", request, "--yes"))


def merged(home: Path, target: str) -> list[dict[str, object]]:
    result = tidings(home, "show", target, "--json")
    if result.code != 0:
        return []
    return [json.loads(line) for line in result.out.splitlines()]


def author_of(home: Path) -> str:
    return ok(tidings(home, "whoami")).out.strip()


def test_laptop_and_phone_are_one_blog_to_a_reader(tmp_path: Path) -> None:
    laptop, phone, reader, plain = (tmp_path / n for n in ("laptop", "phone", "reader", "plain"))
    identity = make_identity(laptop, tmp_path / "next.key", "laptop")
    pair(identity, laptop, phone, "phone")
    # Both publish to "blog" while offline from each other.
    for home, name in ((laptop, "laptop"), (phone, "phone")):
        for i in range(2):
            ok(tidings(home, "publish", "--log", "blog", f"{name} post {i}"))
    # Each device said who the author is; the phone said it last, so it counts.
    ok(tidings(laptop, "about", "--name", "Old name"))
    ok(tidings(phone, "about", "--name", "Ann Author"))
    invite = ok(tidings(laptop, "share", "--log", "blog")).out.strip()
    assert invite.startswith("tinv1")
    ok(tidings(reader, "follow", invite))
    [laptop_blog] = [f["feed"] for f in ok(tidings(laptop, "feeds", "--json")).json_lines()
                     if str(f["feed"]).endswith("_blog")]
    ok(tidings(plain, "follow", str(laptop_blog)))
    with running(laptop) as on_laptop, running(phone) as on_phone, \
            running(reader, "--peer", on_laptop.address, "--peer", on_phone.address), \
            running(plain, "--peer", on_laptop.address):
        wait_for(lambda: len(merged(reader, f"{identity}:blog")) == 4, 60,
                 "the reader's merged blog")
        wait_for(lambda: "Ann Author" in ok(tidings(reader, "show", identity)).out, 60,
                 "the author's newest about")
        wait_for(lambda: len(ok(tidings(plain, "show", str(laptop_blog))).out.splitlines())
                 == 2, 60, "the plain reader's copy of the laptop's feed")
        text = ok(tidings(reader, "status")).out
        assert f"author   {identity}  2 device(s)" in text, text
    items = merged(reader, f"{identity}:blog")
    texts = sorted(str(item["payload"]) for item in items)
    assert texts == ["laptop post 0", "laptop post 1", "phone post 0", "phone post 1"]
    assert {item["device"] for item in items} == {"laptop", "phone"}
    # The documented order: (timestamp, device key, seq), each naming its feed and seq.
    keys = [(item["timestamp"], item["author"], item["seq"]) for item in items]
    assert keys == sorted(keys)
    assert all(item["feed"] and item["seq"] for item in items)
    # No fork anywhere.
    assert ok(tidings(reader, "forks")).out == ""
    # The reader's feed gateway serves the author's blog as one Atom feed.
    with serving_feeds(reader, "127.0.0.1:0", "--all") as (url, _, _):
        status, headers, body = fetch(f"{url}authors/{identity}/blog.atom")
    assert status == 200 and headers["content-type"].startswith("application/atom+xml")
    atom = ElementTree.fromstring(body)
    ns = "{http://www.w3.org/2005/Atom}"
    titles = [entry.findtext(f"{ns}title") or "" for entry in atom.iter(f"{ns}entry")]
    assert sorted(titles) == texts  # every post of both devices, once
    assert atom.findtext(f"{ns}title") == "Ann Author"  # the newest about, not a device's
    # `show` heads the author's stream with the display name.
    shown = ok(tidings(reader, "show", f"{identity}:blog")).out.splitlines()
    assert shown[0] == f"Ann Author ({identity})"


def test_one_sync_gets_every_devices_posts(tmp_path: Path) -> None:
    # The reader knows only the identity id: the devices, and so the device feeds it
    # wants, it learns from the identity log in the same session that fetches them.
    laptop, phone, reader = (tmp_path / n for n in ("laptop", "phone", "reader"))
    identity = make_identity(laptop, tmp_path / "next.key", "laptop")
    pair(identity, laptop, phone, "phone")
    for home, name in ((laptop, "laptop"), (phone, "phone")):
        for i in range(3):
            ok(tidings(home, "publish", "--log", "blog", f"{name} post {i}"))
    with running(phone) as on_phone:  # the laptop fetches the phone's feed
        ok(tidings(laptop, "sync", "--peer", on_phone.address, "--timeout", "60"))
    ok(tidings(reader, "follow", identity))
    with running(laptop) as on_laptop:
        synced = ok(tidings(reader, "sync", "--peer", on_laptop.address, "--timeout", "60",
                            "--json"))
    assert json.loads(synced.out)["received"] >= 6
    texts = sorted(str(item["payload"]) for item in merged(reader, f"{identity}:blog"))
    assert texts == sorted(f"{d} post {i}" for d in ("laptop", "phone") for i in range(3))


def test_device_pair_waits_for_the_approval(tmp_path: Path) -> None:
    laptop, phone = tmp_path / "laptop", tmp_path / "phone"
    identity = make_identity(laptop, tmp_path / "next.key", "laptop")
    err_file = tmp_path / "pair.err"
    with running(laptop) as on_laptop, open(err_file, "wb") as err_out:
        pairing = subprocess.Popen(
            [sys.executable, "-m", "tidings", "--home", str(phone), "device", "pair",
             identity, "--name", "phone", "--peer", on_laptop.address, "--timeout", "120",
             "--json"], stdout=subprocess.PIPE, stderr=err_out, env=_env())
        try:
            wait_for(lambda: "tpair1" in err_file.read_text(), 60, "the pairing request")
            [request] = re.findall(r"tpair1\w+", err_file.read_text())[:1]
            # Nothing is decided yet: the new device waits, saying so on stderr.
            wait_for(lambda: "waiting for the approval" in err_file.read_text(), 60,
                     "the new device to say it waits")
            assert pairing.poll() is None
            ok(tidings(laptop, "device", "approve", request, "--yes"))
            out, _ = pairing.communicate(timeout=120)
        finally:
            if pairing.poll() is None:
                pairing.kill()
                pairing.wait()
    assert pairing.returncode == 0, err_file.read_text()
    result = json.loads(out)
    assert result["approved"] is True and result["devices"] == 2
    assert result["identity"] == identity and result["request"] == request
    # The new device knows it is one: its own identity log lists it.
    shown = json.loads(ok(tidings(phone, "identity", "show", "--json")).out)
    assert "phone" in json.dumps(shown)
    # Asked again once approved, it answers at once, with no peer to ask.
    again = ok(tidings(phone, "device", "pair", identity, "--name", "phone", "--timeout", "1"))
    assert "approved" in again.out


def test_device_pair_says_what_to_do_when_no_approval_comes(tmp_path: Path) -> None:
    laptop, phone = tmp_path / "laptop", tmp_path / "phone"
    identity = make_identity(laptop, tmp_path / "next.key", "laptop")
    with running(laptop) as on_laptop:
        late = tidings(phone, "device", "pair", identity, "--name", "phone", "--peer",
                       on_laptop.address, "--timeout", "1")
    assert late.code == 1
    assert "no approval arrived within 1 s" in late.err and "device approve" in late.err
    assert late.out.startswith("tpair1")  # the request, to approve and wait again
    alone = tidings(tmp_path / "tablet", "device", "pair", identity, "--name", "tablet")
    assert alone.code == 1 and "--peer HOST:PORT" in alone.err and "--no-wait" in alone.err


def test_a_revocation_reaches_a_node_that_was_offline(tmp_path: Path) -> None:
    phone, laptop, third, offline = (tmp_path / n for n in ("phone", "laptop", "third",
                                                              "offline"))
    identity = make_identity(phone, tmp_path / "next.key", "phone")
    pair(identity, phone, laptop, "laptop")
    for i in range(2):
        ok(tidings(laptop, "publish", "--log", "blog", f"before {i}"))
    for home in (third, offline):
        ok(tidings(home, "follow", f"{identity}:blog"))
    with running(laptop) as on_laptop, running(phone, "--peer", on_laptop.address), \
                running(offline, "--peer", on_laptop.address):
        wait_for(lambda: len(merged(offline, f"{identity}:blog")) == 2, 60, "offline's view")
        wait_for(lambda: len(merged(phone, f"{identity}:blog")) == 2, 60, "phone's view")
    # The laptop is lost: the phone revokes it, keeping what it holds of it.
    ok(tidings(phone, "device", "revoke", "laptop", "--keep-all"))
    with running(phone) as on_phone, running(third, "--peer", on_phone.address):
        wait_for(lambda: "revoked" in ok(tidings(third, "identity", "show", identity)).out,
                 60, "the revocation at the third node")
    # The thief writes on with the laptop's key; the third node hears of it.
    for i in range(3):
        ok(tidings(tmp_path / "laptop", "publish", "--log", "blog", f"after {i}"))
    with running(laptop) as on_laptop:
        ok(tidings(third, "sync", "--peer", on_laptop.address, "--timeout", "60"))
        assert len(merged(third, f"{identity}:blog")) == 2
        # The node that was offline learns of the revocation from the third node.
        with running(third) as on_third:
            ok(tidings(offline, "sync", "--peer", on_third.address, "--timeout", "60"))
        assert "revoked" in ok(tidings(offline, "identity", "show", identity)).out
        ok(tidings(offline, "sync", "--peer", on_laptop.address, "--timeout", "60"))
    texts = [item["payload"] for item in merged(offline, f"{identity}:blog")]
    assert texts == ["before 0", "before 1"]
    feeds = {line["log"]: line["latest_seq"]
             for line in ok(tidings(offline, "feeds", "--json")).json_lines()}
    assert feeds["blog"] == 2  # the entries past the cut are stored nowhere


def status_text(home: Path) -> str:
    return ok(tidings(home, "status")).out


def test_a_copied_home_is_detected_everywhere_and_nothing_is_lost(tmp_path: Path) -> None:
    """issue 13: secret.key copied to a new laptop with an empty store, and a post made
    there. Every node finds the fork, proves it and says so; none says "caught up"."""
    old, new, reader = tmp_path / "old", tmp_path / "new", tmp_path / "reader"
    ok(tidings(old, "init"))
    for i in range(3):
        ok(tidings(old, "publish", f"old {i}"))
    feed = ok(tidings(old, "feeds", "--json")).json_lines()[0]["feed"]
    ok(tidings(new, "init"))
    (new / "secret.key").unlink()
    (new / "secret.key").write_bytes((old / "secret.key").read_bytes())
    (new / "secret.key").chmod(0o600)
    ok(tidings(new, "publish", "new 1"))  # seq 1 of another history
    ok(tidings(reader, "follow", str(feed)))
    with running(old) as on_old, running(reader, "--peer", on_old.address) as on_reader:
        wait_for(lambda: len(ok(tidings(reader, "show", str(feed))).out.splitlines()) == 3,
                 60, "the reader's copy")
        with running(new, "--peer", on_reader.address):
            for home in (reader, old, new):
                wait_for(lambda home=home: ok(tidings(home, "forks")).out != "", 60,
                         f"a fork proof at {home.name}")
            for home in (reader, old, new):
                text = status_text(home)
                assert "FORKED" in text and "caught up" not in text, text
    # Nothing is lost silently: the proof holds both branches' first entries.
    proof = ok(tidings(reader, "forks", "--json")).json_lines()[0]
    assert proof["seq"] == 1


def test_a_restored_store_refuses_to_write_over_history(tmp_path: Path) -> None:
    """issue 13: a restored backup (the key, an empty store) refuses to publish to a feed
    peers hold further, says what to do, and may publish once it has synced."""
    old, restored, reader = tmp_path / "old", tmp_path / "restored", tmp_path / "reader"
    ok(tidings(old, "init"))
    for i in range(3):
        ok(tidings(old, "publish", f"old {i}"))
    feed = ok(tidings(old, "feeds", "--json")).json_lines()[0]["feed"]
    ok(tidings(restored, "init"))
    (restored / "secret.key").unlink()
    (restored / "secret.key").write_bytes((old / "secret.key").read_bytes())
    (restored / "secret.key").chmod(0o600)
    ok(tidings(reader, "follow", str(feed)))
    with running(old) as on_old, running(reader, "--peer", on_old.address) as on_reader:
        wait_for(lambda: len(ok(tidings(reader, "show", str(feed))).out.splitlines()) == 3,
                 60, "the reader's copy")
        on_old.stop()
        with running(restored, "--peer", on_reader.address) as on_restored:
            on_restored.wait_log("own-feed-behind")
            # The node recorded what the peer holds (the CLI checks it before publishing:
            # test_publish_refuses_while_the_store_is_behind), and fetches its own feed;
            # then publishing continues the history instead of forking it.
            state = NodeState(restored / "node.sqlite3")
            try:
                assert state.own_head(FeedId.parse(str(feed))) == 3
            finally:
                state.close()
            wait_for(lambda: len(ok(tidings(restored, "show", str(feed))).out.splitlines())
                     == 3, 60, "the restored store")
            published = ok(tidings(restored, "publish", "after the sync"))
            assert published.out.split()[1] == "4"
    assert ok(tidings(reader, "forks")).out == ""


def test_publish_refuses_while_the_store_is_behind(tmp_path: Path) -> None:
    """What a node records when a peer holds its own feed further (own-feed-behind):
    `tidings publish` refuses, says what to do, and writes nothing."""
    home = tmp_path / "restored"
    ok(tidings(home, "init"))
    author = ok(tidings(home, "whoami")).out.strip()
    feed = AuthorId.parse(author).feed("main")
    ok(tidings(home, "following"))  # makes the node state
    state = NodeState(home / "node.sqlite3")
    try:
        state.note_own_head(feed, 7)
    finally:
        state.close()
    refused = tidings(home, "publish", "would be seq 1 of another history")
    assert refused.code == 2 and "sync first" in refused.err and "seq 7" in refused.err
    assert ok(tidings(home, "feeds")).out == ""
    ok(tidings(home, "publish", "--log", "other", "another log is fine"))


def test_a_stolen_root_key_is_rotated_away(tmp_path: Path) -> None:
    """issue 13, must show 4: a thief with the root key adds its own device; the owner
    rotates with the pre-committed next key; the thief's events count nowhere."""
    import shutil

    phone, laptop, thief, gadget, reader = (
        tmp_path / n for n in ("phone", "laptop", "thief", "gadget", "reader"))
    identity = make_identity(phone, tmp_path / "next.key", "phone")
    pair(identity, phone, laptop, "laptop")
    shutil.copytree(phone, thief)  # the stolen machine: root.key and the log
    (thief / "node.lock").unlink(missing_ok=True)
    (thief / "node.key").unlink(missing_ok=True)
    request = ok(tidings(gadget, "device", "pair", identity, "--name", "gadget",
                         "--no-wait")).out.strip()
    ok(tidings(thief, "device", "approve", request, "--yes"))
    ok(tidings(reader, "follow", identity))
    with running(thief) as on_thief:
        ok(tidings(reader, "sync", "--peer", on_thief.address, "--timeout", "60"))
    assert "gadget" in ok(tidings(reader, "identity", "show", identity)).out
    # The owner rotates from the last event it trusts, with the offline next key.
    ok(tidings(phone, "identity", "rotate", "--next-key", str(tmp_path / "next.key"),
               "--new-next-key", str(tmp_path / "next2.key"), "--kdf-cost", "10"))
    with running(phone) as on_phone:
        ok(tidings(reader, "sync", "--peer", on_phone.address, "--timeout", "60"))
    shown = json.loads(ok(tidings(reader, "identity", "show", identity, "--json")).out)
    assert shown["status"] == "active"
    assert {d["name"] for d in shown["devices"]} == {"phone", "laptop"}
    # What the thief signs afterwards with the replaced root key counts nowhere.
    ok(tidings(thief, "device", "revoke", "laptop"))
    with running(thief) as on_thief:
        tidings(reader, "sync", "--peer", on_thief.address, "--timeout", "30")
    shown = json.loads(ok(tidings(reader, "identity", "show", identity, "--json")).out)
    assert {d["name"]: d["revoked_seq"] for d in shown["devices"]} == {
        "phone": None, "laptop": None}


def test_a_revoked_device_refuses_to_publish(tmp_path: Path) -> None:
    phone, laptop = tmp_path / "phone", tmp_path / "laptop"
    identity = make_identity(phone, tmp_path / "next.key", "phone")
    pair(identity, phone, laptop, "laptop")
    ok(tidings(laptop, "publish", "--log", "blog", "before"))
    ok(tidings(phone, "device", "revoke", "laptop"))
    with running(phone) as on_phone:
        ok(tidings(laptop, "sync", "--peer", on_phone.address, "--timeout", "60"))
    refused = tidings(laptop, "publish", "--log", "blog", "after")
    assert refused.code == 2 and "was revoked" in refused.err, refused.err


def test_export_and_import_make_a_new_machine_a_new_device(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    identity = make_identity(old, tmp_path / "next.key", "old laptop")
    ok(tidings(old, "identity", "export", str(tmp_path / "root.key"), "--kdf-cost", "10"))
    assert (tmp_path / "root.key").stat().st_mode & 0o777 == 0o600
    # Before it holds the log, the new machine says what to do.
    first = ok(tidings(new, "identity", "import", str(tmp_path / "root.key"), "--name", "new"))
    assert "sync" in first.err
    with running(old) as on_old:
        ok(tidings(new, "sync", "--peer", on_old.address, "--timeout", "60"))
    ok(tidings(new, "identity", "import", str(tmp_path / "root.key"), "--name", "new"))
    shown = json.loads(ok(tidings(new, "identity", "show", "--json")).out)
    assert shown["identity"] == identity
    devices = {d["name"]: d for d in shown["devices"]}
    assert set(devices) == {"old laptop", "new"}
    assert devices["new"]["author"] == author_of(new) != author_of(old)
    # A wrong passphrase is refused with its reason.
    monkeypatch.setenv("TIDINGS_PASSPHRASE", "not the passphrase")
    wrong = tidings(new, "identity", "import", str(tmp_path / "root.key"))
    assert wrong.code == 2 and "passphrase" in wrong.err, wrong.err


def test_import_never_reuses_a_device_key_of_another_or_a_revoked_device(
        tmp_path: Path) -> None:
    home, other = tmp_path / "home", tmp_path / "other"
    identity = make_identity(home, tmp_path / "next.key", "laptop")
    ok(tidings(home, "identity", "export", str(tmp_path / "root.key"), "--kdf-cost", "10"))
    # A home whose device key is another identity's: refused, and nothing changes there.
    make_identity(other, tmp_path / "other-next.key", "desk")
    key_before = (other / "secret.key").read_bytes()
    root_before = (other / "root.key").read_bytes()
    refused = tidings(other, "identity", "import", str(tmp_path / "root.key"))
    assert refused.code == 2 and "another identity" in refused.err, refused.err
    assert "--home NEW_DIR" in refused.err
    assert (other / "secret.key").read_bytes() == key_before
    assert (other / "root.key").read_bytes() == root_before
    assert identity_of(other) != identity
    # The laptop's device is revoked (it was lost): restoring the root key onto a home
    # that still holds the revoked device key is refused; it never writes again.
    ok(tidings(home, "device", "revoke", "laptop"))
    refused = tidings(home, "identity", "import", str(tmp_path / "root.key"))
    assert refused.code == 2 and "revoked device 'laptop'" in refused.err, refused.err
    shown = json.loads(ok(tidings(home, "identity", "show", "--json")).out)
    assert [d["name"] for d in shown["devices"]] == ["laptop"]


def test_watch_takes_an_author(tmp_path: Path) -> None:
    from tests.test_cli_person import HANG, _interrupt, _lines, _watch

    laptop = tmp_path / "laptop"
    identity = make_identity(laptop, tmp_path / "next.key", "laptop")
    ok(tidings(laptop, "publish", "--log", "notes", "not this log"))
    ok(tidings(laptop, "publish", "--log", "blog", "on the blog"))
    with running(laptop, "--api", "127.0.0.1:0"):
        proc = _watch(laptop, "--from-start", "--json", "--feed", f"{identity}:blog")
        try:
            first = json.loads(_lines(proc).get(timeout=HANG))
        finally:
            _interrupt(proc)
    # The node's own device is labelled like a followed author's.
    assert base64.b64decode(first["payload_base64"]) == b"on the blog"
    assert (first["log"], first["identity"], first["device"]) == ("blog", identity, "laptop")
    bad = tidings(laptop, "watch", "--feed", "ti1nope")
    assert bad.code == 2 and "ti1nope" in bad.err


def test_an_authors_bundle_reads_as_the_merged_stream(tmp_path: Path) -> None:
    from tidings.core.bundle import (
        HEADER_V2,
        EntryRecord,
        IdentityRecord,
        encode_entry_record,
        encode_identity_record,
        read_bundle,
    )

    laptop, phone, reader, other = (tmp_path / n for n in ("laptop", "phone", "reader",
                                                            "other"))
    identity = make_identity(laptop, tmp_path / "next.key", "laptop")
    pair(identity, laptop, phone, "phone")
    ok(tidings(laptop, "publish", "--log", "blog", "laptop post"))
    ok(tidings(phone, "publish", "--log", "blog", "phone post"))
    # The phone's feed reaches the laptop by file, and the author's stream leaves it so.
    ok(tidings(phone, "export", "blog", "-o", str(tmp_path / "phone.bundle")))
    ok(tidings(laptop, "import", str(tmp_path / "phone.bundle")))
    bundle = tmp_path / "author.bundle"
    written = json.loads(ok(tidings(laptop, "export", f"{identity}:blog", "-o", str(bundle),
                                    "--json")).out)
    assert written["entries"] == 2 and written["identity_events"] == 3
    assert bundle.read_bytes().startswith(HEADER_V2)
    imported = json.loads(ok(tidings(reader, "import", str(bundle), "--json")).out)
    assert (imported["added"], imported["identity_events"]) == (2, 3)
    assert imported["identity_refused"] == []
    items = merged(reader, f"{identity}:blog")
    assert sorted((i["device"], i["payload"]) for i in items) == [
        ("laptop", "laptop post"), ("phone", "phone post")]
    # One device's feed carries the events that place it too.
    ok(tidings(laptop, "export", "blog", "-o", str(tmp_path / "laptop.bundle")))
    with open(tmp_path / "laptop.bundle", "rb") as handle:
        records = list(read_bundle(handle.read))
    assert [type(r).__name__ for r in records[:3]] == ["IdentityRecord"] * 3
    # A forged identity event is refused by its rule; the entries stand on their own.
    forged = HEADER_V2
    last = max(i for i, r in enumerate(records) if isinstance(r, IdentityRecord))
    for index, record in enumerate(records):
        if isinstance(record, IdentityRecord):
            event = record.event
            if index == last:
                event = event[:-1] + bytes([event[-1] ^ 1])  # its signature's last byte
            forged += encode_identity_record(record.identity, event)
        else:
            assert isinstance(record, EntryRecord)
            forged += encode_entry_record(record.entry, record.payload)
    (tmp_path / "forged.bundle").write_bytes(forged)
    refused = tidings(other, "import", str(tmp_path / "forged.bundle"))
    assert refused.code == 1 and "refused (bad-signature)" in refused.err, refused.err
    assert "imported 1 new entries" in refused.err
