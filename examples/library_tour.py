"""A tour of the tidings library: publish, replicate by bundle, verify partially, detect a fork.

Run it: python examples/library_tour.py
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from tidings import (
    ForkProof,
    Identity,
    Logbook,
    MemoryStore,
    SqliteStore,
    partial_seqs,
    verify_partial,
)
from tidings.errors import ForkDetected


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # An author keeps one log per topic in a durable SQLite store.
        alice = Logbook(SqliteStore(Path(tmp) / "alice.sqlite3"), Identity.generate())
        alice.publish(b"Notes on spaced repetition", log_id="blog")
        alice.publish_batch([f"episode {n}".encode() for n in range(1, 1001)], log_id="podcast")
        podcast = alice.feed("podcast")
        print("alice's podcast feed:", podcast)

        # Anyone can carry the log: export a bundle, import it elsewhere.
        bundle = io.BytesIO()
        alice.export_bundle(podcast, bundle.write)
        relay = Logbook(MemoryStore())
        result = relay.import_bundle(io.BytesIO(bundle.getvalue()).read)
        print(f"relay imported {result.added} entries, error: {result.error}")

        # A reader who wants only the latest 10 episodes takes them plus a
        # certificate pool, and verifies them against entry 1 with one signature.
        wanted = partial_seqs(1000, 10)
        pool = [entry for entry, _ in relay.read(podcast) if entry.seq in wanted]
        verified = verify_partial(pool)
        print(f"verified the latest 10 of 1000 with {len(verified)} entries")

        # The same key used on two devices forks the log; the proof is portable.
        laptop = Logbook(MemoryStore(), alice.identity)
        phone = Logbook(MemoryStore(), alice.identity)
        a = laptop.publish(b"from the laptop", "notes")
        b = phone.publish(b"from the phone", "notes")
        try:
            laptop.ingest(b.feed, [(b.raw, None)])
        except ForkDetected as fork:
            proof = fork.proof
            assert isinstance(proof, ForkProof)
            print("fork detected at seq", proof.seq, "- proof is", len(proof.to_bytes()), "bytes")
            ForkProof.from_bytes(proof.to_bytes()).verify()  # anyone can check it alone
        assert a.seq == b.seq == 1


if __name__ == "__main__":
    main()
