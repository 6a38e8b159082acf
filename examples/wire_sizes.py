"""The bytes a run of entries takes on the wire: in full, and as a compact run.

Two nodes that both speak wire version 4 send runs of entries compact
(spec/09 §8): without the author, log id, seq, links and payload hash that the
receiver recomputes. The receiver rebuilds exactly the bytes the author signed.
This publishes 1,000 entries of 200 bytes, puts them in both messages, and
checks that the compact one rebuilds to the same entries::

    python examples/wire_sizes.py
"""

from __future__ import annotations

import os

from tidings import Identity, Logbook, MemoryStore
from tidings.wire.compact import compact_run, expand_run
from tidings.wire.messages import Entries, decode_message, encode_message

COUNT, SIZE = 1000, 200


def main() -> None:
    book = Logbook(MemoryStore(), Identity.generate())
    book.publish_batch([os.urandom(SIZE) for _ in range(COUNT)], "blog")
    feed = book.feed("blog")
    items = [(entry.raw, payload) for entry, payload in book.read(feed)]

    full = encode_message(Entries(feed, tuple(items)))  # wire versions 2 and 3
    compact = compact_run(feed, items)  # wire version 4
    assert compact is not None
    body = encode_message(compact)

    # The receiver decodes the message and rebuilds every entry, byte for byte.
    received = decode_message(body)
    assert isinstance(received, type(compact))
    assert list(expand_run(received)) == items

    print(f"{COUNT} entries of {SIZE}-byte payloads, one message each way:")
    print(f"  entries message:         {len(full) / COUNT:6.1f} bytes per entry")
    print(f"  compact-entries message: {len(body) / COUNT:6.1f} bytes per entry "
          f"({len(body) / len(full):.0%})")
    print("  rebuilt entries: identical to the signed ones")


if __name__ == "__main__":
    main()
