"""atheris harness for the handshake, responder side (docs/fuzzing.md).

Not run in CI. A responder Channel (fixed keys) takes the input as the bytes an
initiator sends, cut into pieces by the input's first bytes. Only PeerError
subclasses may escape, and a handshake may complete only with the honest
initiator's key (the seed corpus holds its transcript)::

    python fuzz/make_corpus.py fuzz/corpus
    python fuzz/fuzz_handshake.py -max_len=2048 -timeout=10 fuzz/corpus/handshake
"""

from __future__ import annotations

import hashlib
import sys

import atheris

with atheris.instrument_imports():
    from tidings.errors import PeerError
    from tidings.transport.channel import Channel
    from tidings.transport.network import DEFAULT_NETWORK_KEY


def key(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=32).digest()


def responder() -> Channel:
    return Channel(initiator=False, static_private=key("r"), network_key=DEFAULT_NETWORK_KEY,
                   ephemeral_private=key("re"))


def initiator() -> Channel:
    return Channel(initiator=True, static_private=key("i"), network_key=DEFAULT_NETWORK_KEY,
                   ephemeral_private=key("ie"))


INITIATOR_KEY = initiator().local_static


def TestOneInput(data: bytes) -> None:
    provider = atheris.FuzzedDataProvider(data)
    sizes = [provider.ConsumeIntInRange(1, 512) for _ in range(provider.ConsumeIntInRange(1, 8))]
    stream = provider.ConsumeBytes(provider.remaining_bytes())
    channel = responder()
    start = index = 0
    try:
        while start < len(stream):
            end = start + sizes[index % len(sizes)]
            channel.receive_data(stream[start:end])
            channel.messages()
            channel.data_to_send()
            start, index = end, index + 1
    except PeerError:
        pass
    if channel.established:
        assert channel.remote_static == INITIATOR_KEY, "a handshake completed with another key"


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
