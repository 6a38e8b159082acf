"""atheris harness for the entry decoder, tidings.core.entry.decode_entry (docs/fuzzing.md).

Not run in CI (pytest does not collect it). Any bytes must give an Entry whose
bytes are canonical, or an InvalidEntry subclass; a decoded entry's signature
check may only raise BadSignature. Anything else is a crash::

    pip install atheris
    python fuzz/make_corpus.py fuzz/corpus
    python fuzz/fuzz_entry.py -max_len=600 -timeout=10 fuzz/corpus/entry
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from tidings.core.entry import SIG_HEAD, decode_entry, encode_body, entry_hash
    from tidings.errors import BadSignature, InvalidEntry


def TestOneInput(data: bytes) -> None:
    try:
        entry = decode_entry(data)
    except InvalidEntry:
        return
    assert entry.raw == data and entry.hash == entry_hash(data)
    body = encode_body(
        tag=entry.tag, author=entry.author, log_id=entry.log_id, seq=entry.seq,
        timestamp=entry.timestamp, backlink=entry.backlink, lipmaa_link=entry.lipmaa_link,
        payload_size=entry.payload_size, payload_hash=entry.payload_hash,
    )
    assert body + SIG_HEAD + entry.signature == data, "accepted a non-canonical entry"
    with contextlib.suppress(BadSignature):
        entry.check_signature()


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
