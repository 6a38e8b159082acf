"""Authors in the embedding API (spec/12 §7.3): follow an author, read and subscribe to
its merged stream. Real nodes on loopback, in one trio run."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.embed_helpers import address_of, eventually
from tests.identity_helpers import Owner, key
from tidings import open_node
from tidings.core.kel import format_identity
from tidings.http.api import item_json
from tidings.identity import Identity
from tidings.node.state import NodeState
from tidings.replication.identities import ALL_LOGS


def device_home(path: Path, owner: Owner, device: str) -> Path:
    """A home whose author key is ``device``'s and that holds ``owner``'s log."""
    path.mkdir(parents=True)
    Identity(key(device)).save(path / "secret.key")
    state = NodeState(path / "node.sqlite3")
    try:
        state.save_identity_log(owner.identity, owner.raws())
        state.follow_identity(owner.identity, ALL_LOGS)
    finally:
        state.close()
    return path


async def test_a_reader_follows_an_author_and_reads_one_stream(tmp_path: Path) -> None:
    owner = Owner()
    owner.add("laptop")
    owner.add("phone")
    author = format_identity(owner.identity)
    laptop_home = device_home(tmp_path / "laptop", owner, "laptop")
    phone_home = device_home(tmp_path / "phone", owner, "phone")
    async with open_node(laptop_home, listen="127.0.0.1:0") as laptop, \
            open_node(phone_home, listen="127.0.0.1:0") as phone:
        await laptop.publish(b"from the laptop", "blog")
        await phone.publish(b"from the phone", "blog")
        async with open_node(tmp_path / "reader",
                             peers=[address_of(laptop), address_of(phone)]) as reader:
            assert await reader.follow_author(f"{author}:blog")
            subscription = reader.subscribe(after="0-0")
            await eventually(lambda: _count(reader, author, 2), "both devices' posts")
            items = await reader.author_entries(author, "blog")
            order = [(i.item.entry.timestamp, i.item.entry.author, i.item.entry.seq)
                     for i in items]
            assert order == sorted(order)  # the documented order
            assert {i.device for i in items} == {"laptop", "phone"}
            got = []
            with trio.fail_after(30):
                async for item in subscription:
                    if item.entry.log_id == "blog":
                        got.append(item.payload)
                        # Each live item names the author and the device it belongs to,
                        # in the embedding API and in /v1/events (the same JSON).
                        device = "laptop" if item.payload == b"from the laptop" else "phone"
                        assert (item.identity, item.device) == (author, device)
                        shown = item_json(item)
                        assert (shown["identity"], shown["device"]) == (author, device)
                    if len(got) == 2:
                        break
            assert sorted(got) == [b"from the laptop", b"from the phone"]
            more = await reader.author_entries(author)  # every log
            assert {i.item.entry.log_id for i in more} == {"blog"}


async def _count(reader: object, author: str, wanted: int) -> bool:
    items = await reader.author_entries(author, "blog")  # type: ignore[attr-defined]
    return len(items) == wanted


async def test_own_devices_items_name_the_identity_and_device(tmp_path: Path) -> None:
    from tests.test_http_api import api_node

    owner = Owner()
    owner.add("laptop")
    author = format_identity(owner.identity)
    home = device_home(tmp_path / "laptop", owner, "laptop")
    async with api_node(home) as api:
        published = await api.post("/v1/publish", {"log": "blog", "content": {
            "type": "post", "text": "mine"}})
        assert published.status == 201
        shown = published.json()
        assert (shown["identity"], shown["device"]) == (author, "laptop")
        feed = shown["feed"]
        [listed] = (await api.get(f"/v1/feeds/{feed}/entries")).json()["entries"]
        one = (await api.get(f"/v1/feeds/{feed}/entries/1")).json()
        for entry in (listed, one):
            assert (entry["identity"], entry["device"]) == (author, "laptop")
        node = api.node
        for item in [*await node.entries(feed), *await node.latest(feed),
                     await node.entry(feed, 1)]:
            assert item is not None and (item.identity, item.device) == (author, "laptop")
        with trio.fail_after(30):
            async for item in node.subscribe(after="0-0", own=True):
                assert (item.identity, item.device) == (author, "laptop")
                break
        merged = (await api.get(f"/v1/authors/{author}/entries")).json()["entries"]
        assert [(e["identity"], e["device"]) for e in merged] == [(author, "laptop")]
        # /v1/events takes authors like the other endpoints: ti1... and ti1...:LOG.
        for target in (author, f"{author}:blog"):
            stream = await api.events(f"/v1/events?feeds={target}&after=0-0",
                                      lambda s: bool(s.of("entry")))
            [event] = [e.json() for e in stream.of("entry")]
            assert (event["feed"], event["identity"], event["device"]) == (
                feed, author, "laptop")
        for bad in ("ti1nope", f"{author}:Not_A_Log"):
            stream = await api.events(f"/v1/events?feeds={bad}", lambda s: False)
            assert stream.status == 400, bad
            assert stream.of("error")[0].json()["error"]["code"] == "invalid_feed"


async def test_a_subscription_to_an_author_takes_in_devices_added_later(
        tmp_path: Path) -> None:
    owner = Owner()
    owner.add("laptop")
    author = format_identity(owner.identity)
    reader_home = tmp_path / "reader"
    reader_home.mkdir()
    state = NodeState(reader_home / "node.sqlite3")
    try:  # the reader holds the log as it was before the tablet joined
        state.save_identity_log(owner.identity, owner.raws())
        state.follow_identity(owner.identity, ALL_LOGS)
    finally:
        state.close()
    owner.add("tablet")
    tablet_home = device_home(tmp_path / "tablet", owner, "tablet")
    async with open_node(reader_home) as reader, \
            open_node(tablet_home, listen="127.0.0.1:0") as tablet:
        subscription = reader.subscribe([f"{author}:blog"], after="0-0")
        await tablet.publish(b"from the tablet", "notes")  # another log: not this one
        await tablet.publish(b"from the tablet", "blog")
        await reader.add_peer(address_of(tablet))
        with trio.fail_after(60):
            item = await subscription.__anext__()
    assert (item.entry.log_id, item.payload) == ("blog", b"from the tablet")
    assert (item.identity, item.device) == (author, "tablet")
