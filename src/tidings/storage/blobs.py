"""The chunk store: blobs on disk, beside the SQLite store of a home (spec/13 §7).

Layout (local only; directories 0700, files 0600)::

    HOME/blobs/.lock                     held (flock) by the one process using the store
    HOME/blobs/<blob id>/data            the blob's bytes at their offsets (sparse while partial)
    HOME/blobs/<blob id>/tree            its tree: 2n - 1 node hashes of 32 bytes, in-order
    HOME/blobs/<blob id>/have            the held-chunk bitmap: bit i of byte i // 8 is chunk i
    HOME/blobs/<blob id>/pinned          present: never evicted
    HOME/blobs/<blob id>/used            its mtime is the blob's last use (for eviction)
    HOME/blobs/.tmp-*/                   a blob being imported; removed when the store opens

**Durability.** A chunk's bytes and the tree nodes that prove it are written
and fsynced *before* its bit is set in ``have`` and that is fsynced: a
``kill -9`` at any moment leaves a bitmap that names only chunks whose bytes
are on disk, and a chunk without its bit is fetched again. An imported blob
is written whole under ``.tmp-*`` and renamed into place.

**Damage.** Every chunk read is hashed again and checked with its proof
against the blob id. A chunk whose bytes (or proof nodes) changed on disk is
reported missing (:class:`ChunksMissing`), and its bit is cleared, so it is
fetched again; the store never hands out a byte that does not verify.

**Quota.** With a quota, the store evicts the least recently used blobs that
are not pinned to make room, and refuses (:class:`BlobQuotaExceeded`) what
would not fit even so.

The store is thread-safe; one process at a time may open it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tidings.core.blob import (
    CHUNK_SIZE,
    HASH_SIZE,
    MAX_BLOB_SIZE,
    BlobHasher,
    BlobId,
    CheckedNodes,
    InvalidBlob,
    InvalidBlobId,
    chunk_layout,
    chunk_span,
    tree_nodes,
    verify_chunk,
)
from tidings.errors import TidingsError, UsageError

BLOBS_DIR = "blobs"
DATA_FILE = "data"
TREE_FILE = "tree"
HAVE_FILE = "have"
PIN_FILE = "pinned"
USED_FILE = "used"
LOCK_FILE = ".lock"
#: The blobs the owner removed, one id a line: no fetch policy brings them back.
REMOVED_FILE = "removed"
#: Removed blobs remembered: ~70 bytes each, so the file stays under 300 KB; the
#: oldest are forgotten first (a policy may fetch them again).
MAX_REMOVED = 4096
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
#: One :meth:`BlobStore.read` returns at most 16 MiB; :meth:`BlobStore.iter_range`
#: streams longer ranges a chunk at a time.
MAX_READ = 16 * 1024 * 1024
#: A blob's ``used`` file is rewritten at most once a second (ns): after a restart,
#: eviction goes by uses a second apart at worst.
USED_RESOLUTION = 1_000_000_000
#: Blobs whose tree (at most 4 MiB) the store keeps in memory to serve chunks: a
#: node serves a few blobs at a time, and reads each tree once, not per chunk.
MAX_TREES_READ = 4
#: Blobs whose checked nodes (CheckedNodes: at most ~1 MB each) the store keeps: those
#: read or written last. A node fetches and serves a few blobs at a time.
MAX_CHECKED_BLOBS = 8
#: Buffers handed to one pwritev at most (below every system's IOV_MAX of 1024).
MAX_IOV = 512
#: Bytes read from a file per step of an import: the import's whole buffer.
IMPORT_STEP = 1024 * 1024
_FILE_MODE = 0o600
_DIR_MODE = 0o700


class BlobNotFound(UsageError):
    """The store holds no chunk of this blob."""

    def __init__(self, blob_id: BlobId) -> None:
        super().__init__(f"blob {blob_id} is not in the store")
        self.blob_id = blob_id


class ChunksMissing(TidingsError):
    """A read needs chunks the store does not hold (or held, but found damaged).

    ``missing`` lists them, ascending: the chunks to fetch again.
    """

    def __init__(self, blob_id: BlobId, missing: Iterable[int], detail: str = "") -> None:
        self.blob_id = blob_id
        self.missing = tuple(sorted(set(missing)))
        shown = ", ".join(map(str, self.missing[:8])) + (", ..." if len(self.missing) > 8 else "")
        super().__init__(f"blob {blob_id}: chunks missing: {shown}{detail}")


#: A chunk checked against its blob id: ``(index, data, [(tree position, hash), ...])``.
VerifiedChunk = tuple[int, bytes, list[tuple[int, bytes]]]


class BlobQuotaExceeded(UsageError):
    """Storing this would exceed the store's quota, even after evicting every
    unpinned blob it may evict."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What the store holds of one blob."""

    blob_id: BlobId
    #: Chunks held (by the bitmap; each is checked again when read).
    held: int
    pinned: bool
    #: When the blob was last written or read, in nanoseconds of the store's clock.
    last_used: int
    #: Bytes it takes in the quota: held chunks, its tree and its bitmap.
    disk_bytes: int

    @property
    def complete(self) -> bool:
        return self.held == self.blob_id.chunk_count


class _Blob:
    """The store's memory of one blob: its bitmap and bookkeeping."""

    __slots__ = ("blob_id", "checked", "data_file", "have", "held", "held_bytes", "last_used",
                 "path", "pinned", "tree", "tree_file", "used_file", "used_written")

    def __init__(self, blob_id: BlobId, path: Path, have: bytearray, pinned: bool,
                 last_used: int) -> None:
        self.blob_id = blob_id
        self.path = path
        # (as strings, made once: a blob being served opens them for every message)
        self.data_file = str(path / DATA_FILE)
        self.tree_file = str(path / TREE_FILE)
        self.used_file = str(path / USED_FILE)
        self.have = have
        self.pinned = pinned
        self.last_used = last_used
        #: The last use written to the ``used`` file (its mtime).
        self.used_written = last_used
        self.held = 0
        self.held_bytes = 0
        #: Nodes of its tree checked against its id: a chunk's check stops at them.
        self.checked = CheckedNodes()
        #: Its tree file as last read to serve chunks (see BlobStore.chunks); None once
        #: chunks are written (nodes were added) or forgotten.
        self.tree: bytes | None = None
        for index in range(blob_id.chunk_count):
            if self.has(index):
                self.held += 1
                self.held_bytes += chunk_span(blob_id.size, index)[1]

    def has(self, index: int) -> bool:
        return bool(self.have[index >> 3] >> (index & 7) & 1)

    @property
    def complete(self) -> bool:
        return self.held == self.blob_id.chunk_count

    @property
    def disk_bytes(self) -> int:
        return self.held_bytes + _overhead(self.blob_id)

    def info(self) -> BlobInfo:
        return BlobInfo(self.blob_id, self.held, self.pinned, self.last_used, self.disk_bytes)


def _overhead(blob_id: BlobId) -> int:
    """Bytes of a blob's tree and bitmap."""
    count = blob_id.chunk_count
    return tree_nodes(count) * HASH_SIZE + _bitmap_size(count)


def _bitmap_size(count: int) -> int:
    return (count + 7) // 8


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(path: Path, size: int = 0) -> None:
    """A new file of ``size`` zero bytes (sparse), mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    while len(data) < length:  # short reads are legal; a file cut short reads as zeros
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            return data + bytes(length - len(data))
        data += more
    return data


def _pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _write_runs(fd: int, pieces: list[tuple[int, bytes]]) -> None:
    """Write ``(offset, bytes)`` pieces, ascending by offset: each run of adjacent ones
    with one system call."""
    run: list[bytes] = []
    start = end = 0
    for offset, data in [*pieces, (-1, b"")]:
        if run and (offset != end or len(run) >= MAX_IOV):
            written = os.pwritev(fd, run, start)
            if written < end - start:  # (short writes are legal: the rest one by one)
                _pwrite_all(fd, b"".join(run)[written:], start + written)
            run = []
        if offset < 0:
            break
        if not run:
            start = end = offset
        run.append(data)
        end += len(data)


def _touch(recent: dict[_Blob, None], blob: _Blob, limit: int) -> list[_Blob]:
    """Make ``blob`` the most recently used of ``recent``; returns (and drops) the
    least recently used beyond ``limit``."""
    recent.pop(blob, None)
    recent[blob] = None
    dropped = []
    while len(recent) > limit:
        oldest = next(iter(recent))
        del recent[oldest]
        dropped.append(oldest)
    return dropped


class BlobStore:
    """Blobs in a directory (``HOME/blobs``): import, fetch chunk by chunk, read.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as home, BlobStore(Path(home) / "blobs") as store:
    ...     blob = store.import_bytes(b"an episode")
    ...     store.read(blob, 3, 7)
    b'episode'

    ``quota`` bounds the bytes the store takes (held chunks, trees, bitmaps);
    ``None`` is no bound. ``clock`` gives the time in nanoseconds that orders
    eviction (least recently used first).
    """

    def __init__(self, path: str | Path, *, quota: int | None = None,
                 clock: Callable[[], int] = time.time_ns, importer: bool = False) -> None:
        if quota is not None and quota < 0:
            raise UsageError("a blob quota is a number of bytes, 0 or more")
        self.path = Path(path)
        self.quota = quota
        self._clock = clock
        self._mutex = threading.RLock()
        self._blobs: dict[BlobId, _Blob] = {}
        #: The blobs whose tree is kept in memory to serve chunks, and those whose
        #: checked nodes are kept: least recently used first (dicts as ordered sets).
        self._trees_read: dict[_Blob, None] = {}
        self._checked: dict[_Blob, None] = {}
        #: Blobs the owner removed (REMOVED_FILE), read on first use.
        self._removed: dict[BlobId, None] | None = None
        self._importer = False
        try:
            self.path.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            self.path.mkdir(mode=_DIR_MODE, exist_ok=True)
            os.chmod(self.path, _DIR_MODE)
            self._lock_fd: int | None = os.open(self.path / LOCK_FILE,
                                                os.O_RDWR | os.O_CREAT, _FILE_MODE)
        except OSError as exc:
            raise UsageError(f"cannot open the blob store {self.path}: {exc.strerror}") from None
        if importer:
            # Another process (the running node) owns the store: this one only adds
            # whole blobs, renamed into place, which the owner finds on first use.
            self.quota = None
            os.close(self._lock_fd)
            self._lock_fd = None
            self._importer = True
            self._load()
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UsageError(f"another process is using the blob store {self.path}") from None
            raise
        self._load()

    @classmethod
    def in_home(cls, home: str | Path, *, quota: int | None = None,
                clock: Callable[[], int] = time.time_ns) -> BlobStore:
        """The store of a home: ``HOME/blobs``."""
        return cls(Path(home) / BLOBS_DIR, quota=quota, clock=clock)

    @classmethod
    def for_import(cls, home: str | Path) -> BlobStore:
        """The store of a home that another process (its node) may hold: this one
        only imports whole blobs (no quota, nothing evicted) and reads."""
        return cls(Path(home) / BLOBS_DIR, importer=True)

    def close(self) -> None:
        with self._mutex:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    def __enter__(self) -> BlobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- opening --------------------------------------------------------------------

    def _load(self) -> None:
        for child in sorted(self.path.iterdir()):
            if child.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                if not self._importer:  # (the owner's, or another importer's, at work)
                    _rmtree(child, ignore_errors=True)  # an import or removal cut short
                continue
            try:
                blob_id = BlobId.parse(child.name)
            except InvalidBlobId:
                continue  # not ours: left alone
            if child.is_dir():
                self._blobs[blob_id] = self._open_blob(blob_id, child)

    def _get(self, blob_id: BlobId) -> _Blob | None:
        """The blob, or None; one another process imported meanwhile is found on disk."""
        blob = self._blobs.get(blob_id)
        if blob is None and (self.path / str(blob_id) / HAVE_FILE).is_file():
            blob = self._blobs[blob_id] = self._open_blob(blob_id, self.path / str(blob_id))
        return blob

    def _open_blob(self, blob_id: BlobId, path: Path) -> _Blob:
        count = blob_id.chunk_count
        size = _bitmap_size(count)
        have = bytearray(size)
        with contextlib.suppress(FileNotFoundError):
            have[:] = (path / HAVE_FILE).read_bytes()[:size].ljust(size, b"\0")
        if count % 8:
            have[-1] &= (1 << (count % 8)) - 1  # bits past the last chunk mean nothing
        files_ok = all(
            (path / name).is_file() and (path / name).stat().st_size == length
            for name, length in ((DATA_FILE, blob_id.size),
                                 (TREE_FILE, tree_nodes(count) * HASH_SIZE))
        )
        if not files_ok:  # damaged beyond a chunk: start the blob again
            for name in (DATA_FILE, TREE_FILE, HAVE_FILE):
                (path / name).unlink(missing_ok=True)
            _create(path / DATA_FILE, blob_id.size)
            _create(path / TREE_FILE, tree_nodes(count) * HASH_SIZE)
            have = bytearray(size)
        if not (path / HAVE_FILE).is_file():
            _create(path / HAVE_FILE, size)
        try:
            last_used = (path / USED_FILE).stat().st_mtime_ns
        except FileNotFoundError:
            last_used = 0
        return _Blob(blob_id, path, have, (path / PIN_FILE).exists(), last_used)

    # -- what the store holds -------------------------------------------------------

    def info(self, blob_id: BlobId) -> BlobInfo | None:
        with self._mutex:
            blob = self._get(blob_id)
            return None if blob is None else blob.info()

    def blobs(self) -> list[BlobInfo]:
        """Every blob held, wholly or in part, by id."""
        with self._mutex:
            return [self._blobs[b].info() for b in sorted(self._blobs, key=bytes)]

    def has(self, blob_id: BlobId) -> bool:
        """The whole blob is held (by the bitmap)."""
        with self._mutex:
            blob = self._get(blob_id)
            return blob is not None and blob.complete

    def held(self, blob_id: BlobId) -> bytes:
        """The held-chunk bitmap (spec/13 §8.5): bit ``i % 8`` of byte ``i // 8`` is chunk
        ``i``; all zeros for a blob the store does not know."""
        with self._mutex:
            blob = self._get(blob_id)
            return bytes(blob.have) if blob else bytes(_bitmap_size(blob_id.chunk_count))

    def missing(self, blob_id: BlobId, first: int = 0, end: int | None = None) -> list[int]:
        """The chunks from ``first`` up to ``end`` (default: the last) not held."""
        with self._mutex:
            blob = self._get(blob_id)
            stop = blob_id.chunk_count if end is None else min(end, blob_id.chunk_count)
            if blob is None:
                return list(range(first, stop))
            return [i for i in range(first, stop) if not blob.has(i)]

    def available(self, blob_id: BlobId, offset: int = 0) -> int:
        """How many bytes from ``offset`` on are in held chunks, without a gap: what a
        reader streaming a blob as it downloads may read now."""
        with self._mutex:
            blob = self._get(blob_id)
            if blob is None or not 0 <= offset < blob_id.size:
                return 0
            index = offset // CHUNK_SIZE
            while index < blob_id.chunk_count and blob.has(index):
                index += 1
            return min(index * CHUNK_SIZE, blob_id.size) - offset

    def usage(self) -> int:
        """Bytes the store takes in its quota."""
        with self._mutex:
            return sum(blob.disk_bytes for blob in self._blobs.values())

    # -- fetching from peers ---------------------------------------------------------

    def begin(self, blob_id: BlobId, *, pin: bool = False) -> BlobInfo:
        """Start holding ``blob_id`` (no chunk yet), to fetch it; a blob held already is
        left as it is (``pin`` pins it)."""
        with self._mutex:
            self._remember_removed(blob_id, False)  # asked for again
            blob = self._get(blob_id)
            if blob is None:
                self._make_room(_overhead(blob_id), keep=blob_id)
                blob = self._blobs[blob_id] = self._create_blob(blob_id)
                self._touch(blob)
            if pin:
                self._set_pinned(blob, True)
            return blob.info()

    def _create_blob(self, blob_id: BlobId) -> _Blob:
        work = Path(_mkdtemp(self.path))
        count = blob_id.chunk_count
        _create(work / DATA_FILE, blob_id.size)
        _create(work / TREE_FILE, tree_nodes(count) * HASH_SIZE)
        _create(work / HAVE_FILE, _bitmap_size(count))
        _create(work / USED_FILE)
        _fsync_dir(work)
        final = self.path / str(blob_id)
        os.rename(work, final)
        _fsync_dir(self.path)
        return _Blob(blob_id, final, bytearray(_bitmap_size(count)), False, 0)

    def put_chunk(self, blob_id: BlobId, index: int, data: bytes, proof: bytes) -> bool:
        """Verify and store one chunk; False if it was held already.

        Raises :class:`~tidings.core.blob.InvalidBlob` (nothing is written) for a
        chunk that does not verify, and :class:`BlobQuotaExceeded`.
        """
        return bool(self.put_chunks(blob_id, [(index, data, proof)]))

    def put_chunks(self, blob_id: BlobId,
                   chunks: Iterable[tuple[int, bytes, bytes]]) -> list[int]:
        """Verify and store chunks ``(index, data, proof)`` of one blob, with one pair
        of fsyncs for all; returns the indexes stored (those not held already).

        Each chunk is verified before a byte of it is written. If one fails, the
        chunks before it are stored, then :class:`~tidings.core.blob.InvalidBlob`
        is raised.
        """
        accepted, failure = self.verify_chunks(blob_id, chunks)
        stored = self.write_verified(blob_id, accepted)
        if failure is not None:
            raise failure
        return stored

    def verify_chunks(self, blob_id: BlobId, chunks: Iterable[tuple[int, bytes, bytes]]
                      ) -> tuple[list[VerifiedChunk], InvalidBlob | None]:
        """Check chunks against the blob id (spec/13 §5.2), writing nothing: those that
        verify, up to the first that does not, and its error (None if all verify).
        Chunks held already are left out."""
        count = blob_id.chunk_count
        with self._mutex:
            blob = self._get(blob_id)
            held = bytes(blob.have) if blob is not None else b""
            checked = self._checked_nodes(blob) if blob is not None else CheckedNodes()
        accepted: list[VerifiedChunk] = []
        seen: set[int] = set()
        for index, data, proof in chunks:
            try:
                on_the_way = verify_chunk(blob_id, index, data, proof, checked)
            except InvalidBlob as exc:
                return accepted, exc
            if (held and held[index >> 3] >> (index & 7) & 1) or index in seen:
                continue
            seen.add(index)
            layout = chunk_layout(index, count)
            proof = bytes(proof)
            nodes = list(zip(layout.path_positions, on_the_way, strict=True))
            nodes += [(position, proof[k * HASH_SIZE:(k + 1) * HASH_SIZE])
                      for k, position in enumerate(layout.proof_positions)]
            accepted.append((index, bytes(data), nodes))
        return accepted, None

    def write_verified(self, blob_id: BlobId, chunks: list[VerifiedChunk], *,
                       create: bool = True) -> list[int]:
        """Store chunks :meth:`verify_chunks` accepted, with one pair of fsyncs; returns
        the indexes stored (those not held meanwhile).

        The bytes are written and synced outside the store's lock (reads, queries and
        checks of other chunks go on meanwhile); only then, under it, are their bits
        set. ``create``: begin the blob if the store does not hold it (else those
        chunks are dropped: the blob was removed meanwhile)."""
        with self._mutex:
            blob = self._get(blob_id)
            if blob is None:
                if not create:
                    return []
                self.begin(blob_id)
                blob = self._blobs[blob_id]
            fresh, seen = [], set()
            for chunk in chunks:  # (two peers may have sent one chunk)
                if not blob.has(chunk[0]) and chunk[0] not in seen:
                    seen.add(chunk[0])
                    fresh.append(chunk)
            if not fresh:
                return []
            self._make_room(sum(len(data) for _, data, _ in fresh), keep=blob_id)
            data_fd = os.open(blob.data_file, os.O_WRONLY)
            try:
                tree_fd = os.open(blob.tree_file, os.O_WRONLY)
            except BaseException:
                os.close(data_fd)
                raise
        try:
            # Bytes and tree nodes first, made durable; only then the bits that name them.
            # (A removal meanwhile renames the directory away: these writes then go to
            # files about to be deleted, and no bit is set below.) Neighbouring chunks and
            # nodes go in one write each: the chunks of a batch share most of their
            # proofs' nodes, and a node is 32 bytes.
            nodes: dict[int, bytes] = {}
            for _, _, chunk_nodes in fresh:
                nodes.update(chunk_nodes)
            _write_runs(data_fd, sorted((index * CHUNK_SIZE, data) for index, data, _ in fresh))
            _write_runs(tree_fd, sorted((position * HASH_SIZE, digest)
                                        for position, digest in nodes.items()))
            # (fdatasync: both files have their size from the start.)
            os.fdatasync(data_fd)
            os.fdatasync(tree_fd)
        finally:
            os.close(data_fd)
            os.close(tree_fd)
        with self._mutex:
            if self._blobs.get(blob_id) is not blob:
                return []  # removed (or replaced whole) while the bytes were written
            blob.tree = None  # (nodes were added: read again to serve)
            fresh = [chunk for chunk in fresh if not blob.has(chunk[0])]
            self._set_held(blob, fresh)
            return [index for index, _, _ in fresh]

    def _set_held(self, blob: _Blob, chunks: list[VerifiedChunk]) -> None:
        """Set the bits of chunks whose bytes and tree nodes are durable."""
        have = bytearray(blob.have)
        for index, _, _ in chunks:
            have[index >> 3] |= 1 << (index & 7)
        # The bits name chunks already durable; a bit lost in a power cut only means
        # the chunk is fetched again, so the bitmap is synced when the blob is whole.
        held = blob.held + len(chunks)
        self._write_have(blob, have, durable=held == blob.blob_id.chunk_count)
        blob.held += len(chunks)
        blob.held_bytes += sum(len(data) for _, data, _ in chunks)
        self._touch(blob)

    def _write_have(self, blob: _Blob, have: bytearray, *, durable: bool = True) -> None:
        """Persist a new bitmap (durably), then take it as the blob's."""
        changed = int.from_bytes(blob.have, "little") ^ int.from_bytes(have, "little")
        if changed:  # write only the bytes from the first changed to the last
            low = ((changed & -changed).bit_length() - 1) // 8
            high = (changed.bit_length() - 1) // 8 + 1
            fd = os.open(blob.path / HAVE_FILE, os.O_WRONLY)
            try:
                _pwrite_all(fd, have[low:high], low)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
        blob.have = have

    # -- reading ----------------------------------------------------------------------

    def chunk(self, blob_id: BlobId, index: int) -> tuple[bytes, bytes]:
        """Chunk ``index`` and its proof, verified: what a node serves a peer.

        Raises :class:`ChunksMissing` if it is not held or found damaged (and then
        no longer held), :class:`BlobNotFound` for a blob not in the store.
        """
        blob_id.check_index(index)
        with self._mutex:
            blob = self._require(blob_id)
            if not blob.has(index):
                raise ChunksMissing(blob_id, [index])
            data_fd = os.open(blob.data_file, os.O_RDONLY)
            tree_fd = os.open(blob.tree_file, os.O_RDONLY)
            try:
                found = self._read_verified(blob, index, data_fd, tree_fd)
            finally:
                os.close(data_fd)
                os.close(tree_fd)
            if found is None:
                raise ChunksMissing(blob_id, [index], " (damaged on disk: fetch it again)")
            self._touch(blob)
            return found

    def chunks(self, blob_id: BlobId, indexes: Iterable[int]) -> list[tuple[int, bytes, bytes]]:
        """``(index, data, proof)`` of the chunks among ``indexes`` that are held, each
        checked again (a damaged one is left out, and no longer held): what a node
        serves a peer, several chunks with one pair of opens."""
        with self._mutex:
            blob = self._get(blob_id)
            wanted = [i for i in indexes if blob is not None and blob.has(i)]
            if blob is None or not wanted:
                return []
            found = []
            data_fd = os.open(blob.data_file, os.O_RDONLY)
            tree_fd = os.open(blob.tree_file, os.O_RDONLY)
            try:
                # The proofs from the whole tree (at most 4 MiB), read once while no
                # chunk is added (a blob being served is most often whole). Each proof is
                # checked with its chunk all the same.
                tree = blob.tree
                if tree is None:
                    tree = blob.tree = _pread_exact(
                        tree_fd, tree_nodes(blob_id.chunk_count) * HASH_SIZE, 0)
                for old in _touch(self._trees_read, blob, MAX_TREES_READ):
                    old.tree = None
                for index in wanted:
                    chunk = self._read_verified(blob, index, data_fd, tree_fd, tree)
                    if chunk is not None:
                        found.append((index, *chunk))
            finally:
                os.close(data_fd)
                os.close(tree_fd)
            self._touch(blob)
            return found

    def _read_verified(self, blob: _Blob, index: int, data_fd: int, tree_fd: int,
                       tree: bytes | None = None) -> tuple[bytes, bytes] | None:
        """The chunk and its proof from disk, checked against the blob id; None (and
        the chunk is no longer held) if they do not verify."""
        count = blob.blob_id.chunk_count
        offset, length = chunk_span(blob.blob_id.size, index)
        data = _pread_exact(data_fd, length, offset)
        positions = chunk_layout(index, count).proof_positions
        if tree is not None:  # the whole tree, read once for a run of chunks
            proof = b"".join(tree[p * HASH_SIZE:(p + 1) * HASH_SIZE] for p in positions)
        else:
            proof = b"".join(_pread_exact(tree_fd, HASH_SIZE, p * HASH_SIZE)
                             for p in positions)
        try:
            verify_chunk(blob.blob_id, index, data, proof, self._checked_nodes(blob))
        except InvalidBlob:
            self._forget(blob, [index])
            return None
        return data, proof

    def _checked_nodes(self, blob: _Blob) -> CheckedNodes:
        """The blob's checked nodes (under the lock), kept only for the
        MAX_CHECKED_BLOBS blobs used last: memory stays bounded however many are read."""
        for old in _touch(self._checked, blob, MAX_CHECKED_BLOBS):
            old.checked = CheckedNodes()
        return blob.checked

    def _forget(self, blob: _Blob, indexes: list[int]) -> None:
        blob.tree = None
        have = bytearray(blob.have)
        for index in indexes:
            have[index >> 3] &= ~(1 << (index & 7)) & 0xFF
        self._write_have(blob, have)
        for index in indexes:
            blob.held -= 1
            blob.held_bytes -= chunk_span(blob.blob_id.size, index)[1]

    def iter_range(self, blob_id: BlobId, start: int = 0,
                   end: int | None = None) -> Iterator[bytes]:
        """The bytes ``start .. end - 1`` of a blob, verified, a chunk at a time.

        Stops with :class:`ChunksMissing` at the first chunk not held or damaged,
        after yielding the bytes before it: a reader streaming a blob that is
        still downloading gets every verified byte, and no other.
        """
        end = blob_id.size if end is None else end
        if not 0 <= start <= end <= blob_id.size:
            raise UsageError(f"bytes {start} to {end} are not a range of a "
                             f"{blob_id.size}-byte blob")
        position = start
        while position < end:
            index = position // CHUNK_SIZE
            offset, length = chunk_span(blob_id.size, index)
            data, _ = self.chunk(blob_id, index)
            stop = min(end, offset + length)
            yield data[position - offset:stop - offset]
            position = stop

    def read(self, blob_id: BlobId, offset: int = 0, length: int | None = None) -> bytes:
        """``length`` bytes from ``offset`` (default: to the end), at most 16 MiB, all
        verified; raises :class:`ChunksMissing` naming every chunk the range lacks
        (for HTTP Range requests)."""
        end = blob_id.size if length is None else offset + length
        if end - offset > MAX_READ:
            raise UsageError(f"read at most {MAX_READ} bytes at once (iter_range streams more)")
        if not 0 <= offset <= end <= blob_id.size:
            raise UsageError(f"bytes {offset} to {end} are not a range of a "
                             f"{blob_id.size}-byte blob")
        with self._mutex:
            blob = self._require(blob_id)
            if end == offset:
                return b""
            first, last = offset // CHUNK_SIZE, (end - 1) // CHUNK_SIZE
            lacking = [i for i in range(first, last + 1) if not blob.has(i)]
            if lacking:
                raise ChunksMissing(blob_id, lacking)
            damaged: list[int] = []
            out = bytearray()
            for index in range(first, last + 1):
                try:
                    data, _ = self.chunk(blob_id, index)
                except ChunksMissing:
                    damaged.append(index)
                    continue
                chunk_offset = index * CHUNK_SIZE
                out += data[max(offset, chunk_offset) - chunk_offset:end - chunk_offset]
            if damaged:
                raise ChunksMissing(blob_id, damaged, " (damaged on disk: fetch them again)")
            return bytes(out)

    def check(self, blob_id: BlobId) -> list[int]:
        """Read every held chunk of a blob again; returns those found damaged (now
        missing, to fetch again)."""
        with self._mutex:
            blob = self._require(blob_id)
            damaged = []
            data_fd = os.open(blob.data_file, os.O_RDONLY)
            tree_fd = os.open(blob.tree_file, os.O_RDONLY)
            try:
                for index in range(blob_id.chunk_count):
                    if blob.has(index) and self._read_verified(
                            blob, index, data_fd, tree_fd) is None:
                        damaged.append(index)
            finally:
                os.close(data_fd)
                os.close(tree_fd)
            return damaged

    # -- importing files ---------------------------------------------------------------

    def import_file(self, path: str | Path, *, pin: bool = True) -> BlobId:
        """Make a file a blob: copied into the store as it is hashed, in bounded memory
        (1 MiB at a time). Pinned unless ``pin`` is False: a publisher's own blobs
        are not evicted."""
        try:
            handle = open(path, "rb")  # noqa: SIM115  (closed below)
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        with handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_BLOB_SIZE:
                raise InvalidBlob("blob-size", f"{path} has {size} bytes; a blob has at "
                                  f"most {MAX_BLOB_SIZE} (4 GiB)")
            return self.import_stream(handle, pin=pin, expected_size=size)

    def import_bytes(self, data: bytes, *, pin: bool = True) -> BlobId:
        """Make ``data`` a blob."""
        return self.import_stream(io.BytesIO(data), pin=pin, expected_size=len(data))

    def import_stream(self, stream: BinaryIO, *, pin: bool = True,
                      expected_size: int | None = None) -> BlobId:
        """Make a blob of what ``stream`` holds until its end (at most 4 GiB).

        The blob is written under a temporary name and renamed into place once
        whole and durable; a crash leaves nothing of it. ``expected_size`` lets the
        quota be checked before anything is written.
        """
        with self._mutex:
            if expected_size is not None:
                self._make_room(expected_size + _overhead_for_size(expected_size))
            work = Path(_mkdtemp(self.path))
            try:
                return self._install(work, self._import_into(work, stream, pin), pin)
            except BaseException:
                _rmtree(work, ignore_errors=True)  # gone already once installed
                raise

    def _import_into(self, work: Path, stream: BinaryIO, pin: bool) -> BlobId:
        hasher = BlobHasher(keep_nodes=True)
        buffer = bytearray(IMPORT_STEP)
        data_fd = os.open(work / DATA_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        tree_fd = os.open(work / TREE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            while True:
                count = stream.readinto(buffer)  # type: ignore[attr-defined]
                if not count:
                    break
                piece = memoryview(buffer)[:count]
                hasher.update(piece)  # raises blob-size past 4 GiB
                _pwrite_all(data_fd, piece, hasher.size - count)
                self._make_room(_overhead_for_size(hasher.size) + hasher.size,
                                counted_elsewhere=True)
                for position, digest in hasher.take_nodes():
                    _pwrite_all(tree_fd, digest, position * HASH_SIZE)
            blob_id = hasher.finish()
            for position, digest in hasher.take_nodes():
                _pwrite_all(tree_fd, digest, position * HASH_SIZE)
            os.ftruncate(tree_fd, tree_nodes(blob_id.chunk_count) * HASH_SIZE)
            os.fsync(data_fd)
            os.fsync(tree_fd)
        finally:
            os.close(data_fd)
            os.close(tree_fd)
        count = blob_id.chunk_count
        have = bytearray(b"\xff" * _bitmap_size(count))
        if count % 8:
            have[-1] = (1 << (count % 8)) - 1
        fd = os.open(work / HAVE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            _pwrite_all(fd, have, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        _create(work / USED_FILE)
        if pin:
            _create(work / PIN_FILE)
        _fsync_dir(work)
        return blob_id

    def _install(self, work: Path, blob_id: BlobId, pin: bool) -> BlobId:
        """Put a whole blob made under ``work`` in place of what the store held of it."""
        old = self._get(blob_id)
        if old is not None and old.complete:
            _rmtree(work, ignore_errors=True)
            if pin:
                self._set_pinned(old, True)
            self._touch(old)
            return blob_id
        if old is not None:  # partial: the whole blob replaces it
            pin = pin or old.pinned
            if pin and not (work / PIN_FILE).exists():
                _create(work / PIN_FILE)
            self._discard(old)
        self._make_room(blob_id.size + _overhead(blob_id), keep=blob_id)
        final = self.path / str(blob_id)
        os.rename(work, final)
        _fsync_dir(self.path)
        blob = self._blobs[blob_id] = self._open_blob(blob_id, final)
        self._touch(blob)
        return blob_id

    # -- pins, removal, eviction -----------------------------------------------------

    def pin(self, blob_id: BlobId) -> None:
        """Never evict this blob (it may still be removed)."""
        with self._mutex:
            self._set_pinned(self._require(blob_id), True)

    def unpin(self, blob_id: BlobId) -> None:
        with self._mutex:
            self._set_pinned(self._require(blob_id), False)

    def _set_pinned(self, blob: _Blob, pinned: bool) -> None:
        if pinned and not blob.pinned:
            with contextlib.suppress(FileExistsError):
                _create(blob.path / PIN_FILE)
        elif blob.pinned and not pinned:
            (blob.path / PIN_FILE).unlink(missing_ok=True)
        _fsync_dir(blob.path)
        blob.pinned = pinned

    def remove(self, blob_id: BlobId) -> bool:
        """Drop a blob and every chunk of it (its owner's choice: remembered, so that
        no fetch policy brings it back until it is asked for again with
        :meth:`begin`); False if it was not held."""
        with self._mutex:
            self._remember_removed(blob_id, True)
            blob = self._get(blob_id)
            if blob is None:
                return False
            self._discard(blob)
            return True

    def was_removed(self, blob_id: BlobId) -> bool:
        """Whether the owner removed ``blob_id`` and has not asked for it since."""
        with self._mutex:
            return blob_id in self._removed_ids()

    def _removed_ids(self) -> dict[BlobId, None]:
        if self._removed is None:
            self._removed = {}
            try:
                text = (self.path / REMOVED_FILE).read_text("ascii", errors="replace")
            except FileNotFoundError:
                text = ""
            for line in text.splitlines()[-MAX_REMOVED:]:
                try:
                    self._removed[BlobId.parse(line.strip())] = None
                except InvalidBlobId:
                    continue  # a torn or foreign line: that blob may be fetched again
        return self._removed

    def _remember_removed(self, blob_id: BlobId, removed: bool) -> None:
        ids = self._removed_ids()
        if (blob_id in ids) == removed:
            return
        if removed:
            ids[blob_id] = None
            while len(ids) > MAX_REMOVED:
                del ids[next(iter(ids))]
        else:
            del ids[blob_id]
        if self._importer:
            return  # the owner keeps the file
        temporary = self.path / f"{REMOVED_FILE}.new"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
        try:
            _pwrite_all(fd, "".join(f"{b}\n" for b in ids).encode("ascii"), 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path / REMOVED_FILE)
        _fsync_dir(self.path)

    def _discard(self, blob: _Blob) -> None:
        # Renamed away first, so that a crash leaves the blob whole or gone.
        trash = self.path / f"{TRASH_PREFIX}{secrets.token_hex(8)}"
        os.rename(blob.path, trash)
        _fsync_dir(self.path)
        del self._blobs[blob.blob_id]
        blob.tree = None
        self._trees_read.pop(blob, None)
        self._checked.pop(blob, None)
        _rmtree(trash, ignore_errors=True)

    def evict(self, need: int = 0, *, keep: BlobId | None = None) -> list[BlobId]:
        """Evict the least recently used unpinned blobs until ``need`` more bytes fit
        in the quota; returns those evicted."""
        with self._mutex:
            return self._make_room(need, keep=keep)

    def _make_room(self, need: int, *, keep: BlobId | None = None,
                   counted_elsewhere: bool = False) -> list[BlobId]:
        """Evict until ``need`` more bytes fit; raise :class:`BlobQuotaExceeded` (having
        evicted nothing) if they cannot."""
        if self.quota is None:
            return []
        usage = self.usage()
        if usage + need <= self.quota:
            return []
        candidates = sorted(
            (b for b in self._blobs.values() if not b.pinned and b.blob_id != keep),
            key=lambda b: (b.last_used, bytes(b.blob_id)),
        )
        freeable = sum(b.disk_bytes for b in candidates)
        if usage - freeable + need > self.quota:
            what = "the blob being imported" if counted_elsewhere else f"{need} more bytes"
            raise BlobQuotaExceeded(
                f"the blob store's quota of {self.quota} bytes has no room for {what} "
                f"({usage} used, {freeable} of it evictable)")
        evicted = []
        for blob in candidates:
            if usage + need <= self.quota:
                break
            usage -= blob.disk_bytes
            evicted.append(blob.blob_id)
            self._discard(blob)
        return evicted

    # -- helpers -------------------------------------------------------------------------

    def _require(self, blob_id: BlobId) -> _Blob:
        blob = self._get(blob_id)
        if blob is None:
            raise BlobNotFound(blob_id)
        return blob

    def _touch(self, blob: _Blob) -> None:
        """Note a use of the blob (the order of eviction): at once in memory, and in
        its ``used`` file (the order after a restart) at most once per USED_RESOLUTION:
        a blob being served is used for every message."""
        now = self._clock()
        blob.last_used = now
        if not 0 <= now - blob.used_written < USED_RESOLUTION:
            blob.used_written = now
            with contextlib.suppress(OSError):
                os.utime(blob.used_file, ns=(now, now))


def _overhead_for_size(size: int) -> int:
    count = max(1, -(-size // CHUNK_SIZE))
    return tree_nodes(count) * HASH_SIZE + _bitmap_size(count)


def _mkdtemp(parent: Path) -> str:
    import tempfile  # (here, as shutil below: a sync that moves no blob never loads them)

    return tempfile.mkdtemp(prefix=TMP_PREFIX, dir=parent)  # mode 0700


def _rmtree(path: Path, *, ignore_errors: bool) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=ignore_errors)
