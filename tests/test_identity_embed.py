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
