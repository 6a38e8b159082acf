"""atheris harness for the wire after a handshake (docs/fuzzing.md).

Not run in CI. The first input byte chooses the target:

- even: ``decode_message`` on the rest (only PeerError may escape);
- odd: a Replicator that follows a 40-entry feed and holds some of it finishes a
  handshake with an honest peer, which then seals the rest of the input as its
  plaintext stream (4-byte lengths and msgpack bodies, or anything) into frames
  cut at the sizes the input chooses. Only PeerError may escape
  ``Replicator.receive``; whatever the node sends back must decode; its store must
  still verify.

::

    python fuzz/make_corpus.py fuzz/corpus
    python fuzz/fuzz_wire.py -max_len=65536 -timeout=10 fuzz/corpus/wire
"""

from __future__ import annotations

import contextlib
import hashlib
import sys

import atheris

with atheris.instrument_imports():
    from tidings import Identity, Logbook, MemoryStore
    from tidings.errors import PeerError
    from tidings.replication.replicator import Replicator
    from tidings.transport.channel import Channel
    from tidings.transport.network import DEFAULT_NETWORK_KEY
    from tidings.wire.messages import decode_message

AUTHOR = Identity.from_seed(b"\x01" * 32)
_book = Logbook(MemoryStore(), AUTHOR, clock=lambda: 1_700_000_000_000_000)
LOG = _book.publish_batch([b"entry %d" % i for i in range(1, 41)], "blog")
FEED = LOG[0].feed
ITEMS = [(entry.raw, b"entry %d" % entry.seq) for entry in LOG]


def key(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=32).digest()


def replicate(provider: atheris.FuzzedDataProvider) -> None:
    book = Logbook(MemoryStore())
    held = provider.ConsumeIntInRange(0, len(ITEMS))
    if held:
        book.ingest(FEED, ITEMS[:held])
    node = Replicator(book, static_private=key("node"), follows=[FEED])
    session = node.open_session(initiator=False, ephemeral_private=key("node e"))
    peer = Channel(initiator=True, static_private=key("peer"), network_key=DEFAULT_NETWORK_KEY,
                   ephemeral_private=key("peer e"))
    peer.start()
    node.receive(session, peer.data_to_send())
    peer.receive_data(session.data_to_send())
    for _ in range(provider.ConsumeIntInRange(0, 2)):
        node.request_partial(session, FEED, provider.ConsumeIntInRange(1, 20))
    sizes = [provider.ConsumeIntInRange(1, 4096) for _ in range(provider.ConsumeIntInRange(1, 8))]
    # The rest is the peer's plaintext stream, sealed into frames by data_to_send().
    peer._plaintext_out += provider.ConsumeBytes(provider.remaining_bytes())
    stream = peer.data_to_send()
    start = index = 0
    try:
        while start < len(stream):
            end = start + sizes[index % len(sizes)]
            node.receive(session, stream[start:end])
            peer.receive_data(node.pump(session))  # must decode: a PeerError here is a bug
            peer.messages()
            start, index = end, index + 1
    except PeerError as error:
        session.fail(error)
    node.close_session(session)
    for report in book.verify():
        assert report.ok or report.forked_at is not None, report.error


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    if data[0] % 2 == 0:
        with contextlib.suppress(PeerError):
            decode_message(data[1:])
        return
    replicate(atheris.FuzzedDataProvider(data[1:]))


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
