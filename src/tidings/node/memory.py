"""The allocator of a node process: large buffers reused, not mapped afresh per use.

glibc's malloc serves a block of 128 KiB or more with a fresh ``mmap`` and gives it
back with ``munmap`` when freed, so the kernel maps and zeroes it page by page on
every use. It raises that threshold by itself only after freeing such a block, so
whether a node's 2 MiB sends and 64 KiB-4 MiB reads cost page faults depended on
what happened to be freed first: during a blob upload, up to 420 faults per MB
sent. :func:`tune_allocator` sets the thresholds once, for the node process
(``tidings up``): blocks up to 8 MiB come from the heap, and up to 32 MiB of freed
heap is kept for the next ones instead of being trimmed.
"""

from __future__ import annotations

import sys

#: glibc's mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks served from the heap: above the largest read (4 MiB) and send (2 MiB).
MMAP_THRESHOLD = 8 * 1024 * 1024
#: Freed heap kept for reuse: a few of those buffers.
TRIM_THRESHOLD = 32 * 1024 * 1024


def tune_allocator() -> bool:
    """Set the thresholds (glibc on Linux); False where there is nothing to set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # (no libc symbols to find)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # (musl has mallopt too, and ignores it: it returns 0)
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
