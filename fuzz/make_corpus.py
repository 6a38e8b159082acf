"""Write seed corpora for the atheris harnesses: ``python fuzz/make_corpus.py DIR``.

DIR/entry: valid entries (every entry of spec/vectors/entries.json and a small
log); DIR/handshake: an honest initiator's transcript to fuzz_handshake's
responder, with a cut-size prefix; DIR/wire: msgpack message bodies for
decode_message, and a peer's plaintext streams of valid messages for the
replicator. Not run in CI.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
import sys
from pathlib import Path

from tidings import Identity, Logbook, MemoryStore
from tidings.transport.channel import Channel
from tidings.transport.network import DEFAULT_NETWORK_KEY
from tidings.wire.compact import compact_run
from tidings.wire.messages import (
    WANT,
    Clock,
    Entries,
    Hello,
    Message,
    Note,
    PartialRequest,
    Ping,
    encode_message,
)

SPEC_VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors" / "entries.json"


def key(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=32).digest()


def write(folder: Path, name: str, data: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def hex_values(value: object) -> list[bytes]:
    """Every string in the vectors that looks like a hex entry."""
    found: list[bytes] = []
    if isinstance(value, dict):
        for item in value.values():
            found += hex_values(item)
    elif isinstance(value, list):
        for item in value:
            found += hex_values(item)
    elif isinstance(value, str) and len(value) > 140 and len(value) % 2 == 0:
        with contextlib.suppress(ValueError):
            found.append(bytes.fromhex(value))
    return found


def main(out: Path) -> None:
    author = Identity.from_seed(b"\x01" * 32)
    book = Logbook(MemoryStore(), author, clock=lambda: 1_700_000_000_000_000)
    log = book.publish_batch([b"entry %d" % i for i in range(1, 41)], "blog")
    feed = log[0].feed

    entries = [e.raw for e in log[:14]] + [log[39].raw]
    if SPEC_VECTORS.exists():
        entries += hex_values(json.loads(SPEC_VECTORS.read_text()))
    for index, raw in enumerate(entries):
        write(out / "entry", f"seed-{index}", raw)

    sender = Channel(initiator=True, static_private=key("i"), network_key=DEFAULT_NETWORK_KEY,
                     ephemeral_private=key("ie"))
    receiver = Channel(initiator=False, static_private=key("r"),
                       network_key=DEFAULT_NETWORK_KEY, ephemeral_private=key("re"))
    sender.start()
    first = sender.data_to_send()
    receiver.receive_data(first)
    sender.receive_data(receiver.data_to_send())
    sender.send(Hello((1,), False, None))
    transcript = first + sender.data_to_send()
    # FuzzedDataProvider takes integers from the end of the input and bytes from the
    # front: the stream, then the cut sizes backwards (one size of 512, one piece count).
    write(out / "handshake", "honest", transcript + b"\xff\xff\x00")
    write(out / "handshake", "message-1", first + b"\xff\xff\x00")

    items = tuple((e.raw, b"entry %d" % e.seq) for e in log)
    messages: list[Message] = [
        Hello((1,), False, None),
        Clock(True, ((feed, Note(40, 0)),), True),
        Entries(feed, items[:8]),
        Entries(feed, items[8:40]),
        PartialRequest(0, feed, 5),
        Ping(),
        Clock(False, ((feed, Note(40, WANT)),), True),
    ]
    stream = b"".join(struct.pack(">I", len(body)) + body
                      for body in map(encode_message, messages))
    for index, message in enumerate(messages):
        write(out / "wire", f"message-{index}", b"\x00" + encode_message(message))
    for name, run in (("compact-from-1", items[:8]), ("compact-from-9", items[8:40])):
        compact = compact_run(feed, list(run))  # wire version 4 (spec/09 §8)
        assert compact is not None
        write(out / "wire", name, b"\x00" + encode_message(compact))
    # Odd first byte: the replicator. Then the stream; integers come from the end,
    # backwards: held 0 (or 8), no partial request, one piece count, one size (4096).
    write(out / "wire", "session", b"\x01" + stream + b"\xff\xff\x00\x00\x00")
    write(out / "wire", "session-held", b"\x01" + stream + b"\xff\xff\x00\x00\x08")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python fuzz/make_corpus.py DIR")
    main(Path(sys.argv[1]))
