"""The floor of a blob transfer's CPU on this machine, measured (issue 14).

    python benchmarks/blob_ceiling.py [--mb 64] [--rounds 5] [--json]

Times, in CPU ms per MB (10^6 bytes), each step a blob's bytes cannot skip
between two nodes on loopback, each step sampled in interleaved rounds (the
median is printed):

* receiver: TCP receive into a reused buffer, ChaCha20-Poly1305 decrypt of
  Noise frames (65,535 bytes), BLAKE2b-256 of each 64 KiB chunk (its leaf),
  pwrite to a file and one fsync per 4 MiB;
* sender: pread from the page cache, BLAKE2b-256 of each chunk (the check on
  read, spec/13 §7), ChaCha20-Poly1305 encrypt, TCP send.

From them: the best MB/s with each node on its own core (1 / the busier side)
and with both sharing two cores perfectly (2 / the sum), and whether
cryptography's AEAD and hashlib's BLAKE2b release the GIL (a worker thread can
only overlap them if they do).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

MB = 1_000_000
CHUNK = 65536
FRAME = 65535 - 16  # Noise's bound less the tag: the plaintext of one frame


def cpu_ms_per_mb(work: Callable[[], int]) -> float:
    start = time.thread_time()
    done = work()
    return (time.thread_time() - start) * 1000 / (done / MB)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = args.mb * MB // CHUNK * CHUNK
    data = os.urandom(size)
    view = memoryview(data)
    aead = ChaCha20Poly1305(os.urandom(32))
    nonce = bytes(12)
    sealed = [aead.encrypt(nonce, view[o:o + FRAME], b"") for o in range(0, size, FRAME)]
    work_dir = tempfile.mkdtemp()
    path = os.path.join(work_dir, "data")

    def blake() -> int:
        for o in range(0, size, CHUNK):
            h = hashlib.blake2b(b"\x00", digest_size=32)
            h.update(view[o:o + CHUNK])
            h.digest()
        return size

    def encrypt() -> int:
        for o in range(0, size, FRAME):
            aead.encrypt(nonce, view[o:o + FRAME], b"")
        return size

    def decrypt() -> int:
        for frame in sealed:
            aead.decrypt(nonce, frame, b"")
        return size

    def write() -> int:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for o in range(0, size, 4 << 20):
                os.pwrite(fd, view[o:o + (4 << 20)], o)
                os.fsync(fd)
        finally:
            os.close(fd)
        return size

    def write_cpu() -> int:  # pwrite only: page-cache copy, no fsync
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for o in range(0, size, 4 << 20):
                os.pwrite(fd, view[o:o + (4 << 20)], o)
        finally:
            os.close(fd)
        return size

    def read() -> int:
        fd = os.open(path, os.O_RDONLY)
        try:
            for o in range(0, size, CHUNK):
                os.pread(fd, CHUNK, o)
        finally:
            os.close(fd)
        return size

    def tcp() -> tuple[float, float]:
        listener = socket.create_server(("127.0.0.1", 0))
        sent_cpu: list[float] = []

        def send() -> None:
            with socket.create_connection(listener.getsockname()) as out:
                sent_cpu.append(cpu_ms_per_mb(lambda: _send_all(out, view)))

        sender = threading.Thread(target=send)
        sender.start()
        conn, _ = listener.accept()
        buffer = bytearray(1 << 20)
        with conn:
            def receive() -> int:
                got = 0
                while got < size:
                    n = conn.recv_into(buffer)
                    if not n:
                        break
                    got += n
                return got
            received = cpu_ms_per_mb(receive)
        sender.join()
        listener.close()
        return sent_cpu[0], received

    write()  # a file to read back, in the page cache
    steps: dict[str, list[float]] = {}
    walls: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, step in (("blake2b_64k", blake), ("chacha_encrypt", encrypt),
                           ("chacha_decrypt", decrypt), ("pwrite", write_cpu),
                           ("pwrite_fsync_4m", write), ("pread_64k", read)):
            start = time.perf_counter()
            steps.setdefault(name, []).append(cpu_ms_per_mb(step))
            walls.setdefault(name, []).append((time.perf_counter() - start) * 1000 / (size / MB))
        send_ms, receive_ms = tcp()
        steps.setdefault("tcp_send", []).append(send_ms)
        steps.setdefault("tcp_receive", []).append(receive_ms)
    med = {name: statistics.median(values) for name, values in steps.items()}
    wall = {name: statistics.median(values) for name, values in walls.items()}
    receiver = (med["tcp_receive"] + med["chacha_decrypt"] + med["blake2b_64k"]
                + med["pwrite_fsync_4m"])
    sender = med["pread_64k"] + med["blake2b_64k"] + med["chacha_encrypt"] + med["tcp_send"]
    sender_no_check = sender - med["blake2b_64k"]
    gil = {"blake2b": _parallel(blake), "chacha": _parallel(encrypt)}
    result = {
        "cpu_ms_per_mb": med, "wall_ms_per_mb": wall,
        "receiver_ms_per_mb": receiver, "sender_ms_per_mb": sender,
        "one_core_each_mb_s": 1000 / max(receiver, sender),
        "two_shared_cores_mb_s": 2000 / (receiver + sender),
        "two_shared_cores_no_sender_rehash_mb_s": 2000 / (receiver + sender_no_check),
        "raw_blake2b_mb_s": 1000 / med["blake2b_64k"],
        "two_threads_speedup": gil,
    }
    os.unlink(path)
    os.rmdir(work_dir)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, value in med.items():
            print(f"{name:<18} {value:6.3f} CPU ms/MB   (wall {wall.get(name, value):.3f})")
        print(f"receiver floor     {receiver:6.3f} ms/MB; sender floor {sender:6.3f} ms/MB")
        print(f"best MB/s: one core each {result['one_core_each_mb_s']:.0f}; two shared "
              f"cores {result['two_shared_cores_mb_s']:.0f} "
              f"({result['two_shared_cores_no_sender_rehash_mb_s']:.0f} if the sender did "
              "not hash again)")
        print(f"raw BLAKE2b {result['raw_blake2b_mb_s']:.0f} MB/s; two threads / one: "
              f"blake2b x{gil['blake2b']:.2f}, chacha x{gil['chacha']:.2f}")
    return 0


def _send_all(sock: socket.socket, view: memoryview) -> int:
    for o in range(0, len(view), 1 << 18):
        sock.sendall(view[o:o + (1 << 18)])
    return len(view)


def _parallel(step: Callable[[], int]) -> float:
    """Throughput of two threads running ``step`` at once over one thread's (2.0: the
    GIL is released for the whole step)."""
    start = time.perf_counter()
    step()
    one = time.perf_counter() - start
    threads = [threading.Thread(target=step) for _ in range(2)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 2 * one / (time.perf_counter() - start)


if __name__ == "__main__":
    raise SystemExit(main())
