"""Blobs: large files as chunks under a BLAKE2b hash tree (spec/13-blobs.md).

A blob is split into 64 KiB chunks. Their hashes form a binary tree whose
shape depends only on the number of chunks (the left subtree of every node
holds the largest power of two of chunks below its total, as in RFC 6962), and
the blob's *root* binds the tree hash to the blob's size. A :class:`BlobId` is
that root with the size; its text form is ``tb1<55 characters>_<size>``.

Any chunk is checked on its own against a blob id with its *proof*, the
sibling hashes from the chunk up to the top of the tree, so a blob can be
fetched from several peers at once, resumed, and streamed while it downloads:

>>> data = bytes(200_000)                     # 4 chunks: 3 of 64 KiB and one of 3,392 bytes
>>> tree = BlobTree.of(data)
>>> blob = tree.blob_id
>>> blob.size, blob.chunk_count
(200000, 4)
>>> _ = verify_chunk(blob, 3, data[3 * CHUNK_SIZE:], tree.proof(3))   # it verifies
>>> verify_chunk(blob, 3, b"x" + data[3 * CHUNK_SIZE + 1:], tree.proof(3))
Traceback (most recent call last):
...
tidings.core.blob.InvalidBlob: chunk 3: blob-chunk-proof: chunk and proof lead to another root
>>> BlobId.parse(str(blob)) == blob
True

Everything here is pure: bytes in, bytes or errors out. The chunk store on
disk is :mod:`tidings.storage.blobs`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, cast

from tidings.core.ids import INPUT_WHITESPACE
from tidings.core.records import record
from tidings.errors import InvalidId, LocalProtocolError, TidingsError

# -- bounds (spec/13 §1, §6) ---------------------------------------------------------

#: Bytes in every chunk but the last. 64 KiB: a chunk costs at most 512 bytes of
#: proof (0.8 %), a reader streaming audio waits for at most 64 KiB before the
#: first verified byte, and a bad peer wastes at most 64 KiB per lie
#: (spec/13 §1.1 compares the choices of BitTorrent v2, Bao, IPFS and Hypercore).
CHUNK_SIZE = 64 * 1024
#: The largest blob: 4 GiB. Every podcast episode and most videos fit; chunk
#: indexes stay below 2^16, proofs within 16 hashes, a held-chunk bitmap within
#: 8 KiB and a stored tree within 4 MiB.
MAX_BLOB_SIZE = 1 << 32
#: Chunks of the largest blob (65,536): indexes run from 0 to 65,535.
MAX_CHUNKS = MAX_BLOB_SIZE // CHUNK_SIZE
HASH_SIZE = 32
#: The deepest chunk of the largest blob is 16 levels below the top of the tree.
MAX_PROOF_DEPTH = (MAX_CHUNKS - 1).bit_length()
#: 16 hashes of 32 bytes.
MAX_PROOF_SIZE = MAX_PROOF_DEPTH * HASH_SIZE
#: The binary form of a blob id: root (32 bytes) and size (8 bytes, big-endian).
BLOB_ID_SIZE = HASH_SIZE + 8

#: The first byte hashed for each kind of node: a leaf can never pose as a
#: parent, nor either as a root (spec/13 §2).
LEAF_DOMAIN = b"\x00"
PARENT_DOMAIN = b"\x01"
ROOT_DOMAIN = b"\x02"

BLOB_PREFIX = "tb1"
CHECKSUM_SIZE = 2
#: 34 bytes (root + checksum) in unpadded base32.
ROOT_TEXT_LEN = 55
#: A size in decimal: 0, or up to 10 digits without a leading zero (2^32 has 10).
_SIZE_TEXT = re.compile(r"0|[1-9][0-9]{0,9}")
_BASE32 = re.compile(r"[a-z2-7]*")


# -- errors ----------------------------------------------------------------------


class InvalidBlob(TidingsError):
    """Blob data breaks a rule of spec/13 §5; ``rule`` names it.

    Raised for peer data (a chunk, a proof, a binary blob id) as well as for
    local input; the session wraps the first kind in
    :class:`~tidings.errors.InvalidData`. ``index`` is the chunk concerned, when
    there is one.
    """

    code = "invalid-blob"

    def __init__(self, rule: str, detail: str, *, index: int | None = None) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail
        self.index = index

    def __str__(self) -> str:
        where = f"chunk {self.index}: " if self.index is not None else ""
        return f"{where}{self.rule}: {self.detail}"


class InvalidBlobId(InvalidId):
    """A text blob id does not parse; ``reason`` names the check of spec/13 §4.3."""


#: Every rule of spec/13 §5, by its stable name.
BLOB_RULES = (
    "blob-id", "blob-size", "blob-chunk-index", "blob-chunk-length",
    "blob-proof-length", "blob-chunk-proof", "blob-hash",
)


# -- hashing (spec/13 §2) -------------------------------------------------------------


def _blake(*parts: bytes | bytearray | memoryview) -> bytes:
    state = hashlib.blake2b(digest_size=HASH_SIZE)
    for part in parts:
        state.update(part)
    return state.digest()


def leaf_hash(chunk: bytes | bytearray | memoryview) -> bytes:
    """``BLAKE2b-256(00 || chunk)``."""
    state = hashlib.blake2b(LEAF_DOMAIN, digest_size=HASH_SIZE)
    state.update(chunk)  # (hashlib lets other threads run while it hashes a chunk)
    return state.digest()


def parent_hash(left: bytes, right: bytes) -> bytes:
    """``BLAKE2b-256(01 || left || right)``."""
    return hashlib.blake2b(PARENT_DOMAIN + left + right, digest_size=HASH_SIZE).digest()


def root_hash(tree: bytes, size: int) -> bytes:
    """The blob's root: ``BLAKE2b-256(02 || size as 8 bytes big-endian || tree hash)``."""
    return _blake(ROOT_DOMAIN, size.to_bytes(8, "big"), tree)


def chunk_count(size: int) -> int:
    """Chunks of a blob of ``size`` bytes; the empty blob has one, empty, chunk."""
    return max(1, -(-size // CHUNK_SIZE))


def chunk_span(size: int, index: int) -> tuple[int, int]:
    """``(offset, length)`` of chunk ``index`` of a blob of ``size`` bytes."""
    offset = index * CHUNK_SIZE
    return offset, max(0, min(CHUNK_SIZE, size - offset))


def split(count: int) -> int:
    """The number of chunks in the left subtree of a node over ``count`` >= 2 chunks:
    the largest power of two below ``count``."""
    return 1 << ((count - 1).bit_length() - 1)


def node_position(start: int, end: int) -> int:
    """Where the node over chunks ``start .. end - 1`` sits in the in-order layout of
    the tree: leaf ``i`` at ``2i``, a parent at ``2m - 1`` with ``m`` its split point.

    The position depends on the node alone, not on the size of the tree around it
    (spec/13 §7, informative; the chunk store keeps its tree this way).
    """
    if end - start == 1:
        return 2 * start
    return 2 * (start + split(end - start)) - 1


def tree_nodes(count: int) -> int:
    """Nodes of a tree over ``count`` chunks: ``2 count - 1``."""
    return 2 * count - 1


def proof_depth(index: int, count: int) -> int:
    """Hashes in the proof of chunk ``index`` of ``count``."""
    return len(chunk_layout(index, count).right)


@record
class ChunkLayout:
    """Where chunk ``index`` of a tree of ``count`` chunks sits: what checking it and
    storing its proof need, computed once per ``(index, count)`` (a download checks
    thousands of chunks of one tree; the walk of spec/13 §3.1 is pure Python)."""

    #: For each hash of the proof, bottom first: the sibling is on the right.
    right: tuple[bool, ...]
    #: The in-order positions (spec/13 §7) of the proof's nodes, bottom first.
    proof_positions: tuple[int, ...]
    #: The positions of the nodes from the chunk's leaf up to the top of the tree.
    path_positions: tuple[int, ...]


@functools.lru_cache(maxsize=8192)  # ~1 KB each: a few MB, the chunks of 512 MB
def chunk_layout(index: int, count: int) -> ChunkLayout:
    """The :class:`ChunkLayout` of chunk ``index`` of ``count`` (``0 <= index < count``)."""
    # The walk of _path, with node_position inlined: a receiver computes this once
    # per chunk it fetches.
    right: list[bool] = []
    proof: list[int] = []
    path: list[int] = []
    start, end = 0, count
    while end - start > 1:
        middle = start + (1 << ((end - start - 1).bit_length() - 1))
        path.append(2 * middle - 1)
        if index < middle:
            low, high = middle, end
            end = middle
        else:
            low, high = start, middle
            start = middle
        right.append(index < middle)
        proof.append(2 * low if high - low == 1
                     else 2 * (low + (1 << ((high - low - 1).bit_length() - 1))) - 1)
    path.append(2 * index)
    return ChunkLayout(tuple(reversed(right)), tuple(reversed(proof)), tuple(reversed(path)))


def _path(index: int, count: int) -> list[tuple[int, int, bool]]:
    """The siblings of chunk ``index``'s path, top first: ``(start, end, on_the_right)``."""
    siblings = []
    start, end = 0, count
    while end - start > 1:
        middle = start + split(end - start)
        if index < middle:
            siblings.append((middle, end, True))
            end = middle
        else:
            siblings.append((start, middle, False))
            start = middle
    return siblings


def proof_nodes(index: int, count: int) -> list[tuple[int, int]]:
    """The chunk ranges ``(start, end)`` of the nodes whose hashes make chunk
    ``index``'s proof, in proof order: from the chunk's sibling up."""
    return [(start, end) for start, end, _ in reversed(_path(index, count))]


def path_nodes(index: int, count: int) -> list[tuple[int, int]]:
    """The chunk ranges of the nodes from chunk ``index``'s leaf up to the top."""
    nodes = [(index, index + 1)]
    for start, end in proof_nodes(index, count):
        low, high = nodes[-1]
        nodes.append((min(low, start), max(high, end)))
    return nodes


def tree_hash(leaves: Sequence[bytes]) -> bytes:
    """The hash of the tree over ``leaves`` (at least one leaf hash)."""
    if not leaves:
        raise ValueError("a tree has at least one leaf")
    if len(leaves) == 1:
        return leaves[0]
    middle = split(len(leaves))
    return parent_hash(tree_hash(leaves[:middle]), tree_hash(leaves[middle:]))


def tree_from_proof(leaf: bytes, index: int, count: int, proof: bytes) -> tuple[bytes, list[bytes]]:
    """The tree hash that ``leaf`` at ``index`` and its proof lead to, and the hashes
    of the nodes on the way (leaf first, tree hash last).

    The caller checks ``len(proof)`` first (rule ``blob-proof-length``).
    """
    node = leaf
    on_the_way = [leaf]
    for level, on_the_right in enumerate(chunk_layout(index, count).right):
        sibling = proof[level * HASH_SIZE:(level + 1) * HASH_SIZE]
        node = parent_hash(node, sibling) if on_the_right else parent_hash(sibling, node)
        on_the_way.append(node)
    return node, on_the_way


def make_proof(index: int, count: int, node: Callable[[int, int], bytes]) -> bytes:
    """The proof of chunk ``index`` of ``count``, with ``node(start, end)`` giving the
    hash of the node over chunks ``start .. end - 1``."""
    return b"".join(node(start, end) for start, end in proof_nodes(index, count))


# -- blob ids (spec/13 §4) -----------------------------------------------------------


def _checksum(root: bytes, size: int) -> bytes:
    data = BLOB_PREFIX.encode() + root + size.to_bytes(8, "big")
    return hashlib.blake2b(data, digest_size=CHECKSUM_SIZE).digest()


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


@dataclass(frozen=True, slots=True)
class BlobId:
    """A blob: its root (32 bytes) and its size in bytes. ``str()`` gives the text
    form, ``bytes()`` the 40-byte binary form."""

    root: bytes
    size: int

    TEXT_EXAMPLE: ClassVar[str] = "tb1<55 characters of base32>_<size in decimal>"

    def __post_init__(self) -> None:
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise InvalidBlob("blob-id", "a blob root is exactly 32 bytes")
        if type(self.size) is not int or not 0 <= self.size <= MAX_BLOB_SIZE:
            raise InvalidBlob("blob-size", f"a blob has 0 to {MAX_BLOB_SIZE} bytes (4 GiB)")

    @property
    def chunk_count(self) -> int:
        return chunk_count(self.size)

    def chunk_span(self, index: int) -> tuple[int, int]:
        """``(offset, length)`` of chunk ``index`` (checked: ``blob-chunk-index``)."""
        self.check_index(index)
        return chunk_span(self.size, index)

    def check_index(self, index: int) -> None:
        if type(index) is not int or not 0 <= index < self.chunk_count:
            raise InvalidBlob("blob-chunk-index",
                              f"the blob has chunks 0 to {self.chunk_count - 1}", index=index)

    def __bytes__(self) -> bytes:
        return self.root + self.size.to_bytes(8, "big")

    def to_bytes(self) -> bytes:
        return bytes(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> BlobId:
        """The binary form (spec/13 §4.1); raises :class:`InvalidBlob` (``blob-id``,
        ``blob-size``)."""
        if not isinstance(data, bytes | bytearray | memoryview) or len(data) != BLOB_ID_SIZE:
            raise InvalidBlob("blob-id", f"a binary blob id is exactly {BLOB_ID_SIZE} bytes")
        data = bytes(data)
        return cls(data[:HASH_SIZE], int.from_bytes(data[HASH_SIZE:], "big"))

    def __str__(self) -> str:
        return f"{BLOB_PREFIX}{_b32(self.root + _checksum(self.root, self.size))}_{self.size}"

    def __repr__(self) -> str:
        return f"BlobId({str(self)!r})"

    @classmethod
    def from_input(cls, text: str) -> BlobId:
        """Parse what a person typed or pasted: ASCII whitespace around it is dropped."""
        return cls.parse(text.strip(INPUT_WHITESPACE))

    @classmethod
    def parse(cls, text: str) -> BlobId:
        """Parse the text form exactly (spec/13 §4.3); raises :class:`InvalidBlobId`."""
        if not isinstance(text, str) or not text.startswith(BLOB_PREFIX):
            raise InvalidBlobId(f"not a blob id: it must start with {BLOB_PREFIX!r}",
                                "wrong-prefix")
        body = text[len(BLOB_PREFIX):]
        if len(body) < ROOT_TEXT_LEN + 2 or body[ROOT_TEXT_LEN] != "_":
            raise InvalidBlobId(f"not a blob id: expected {cls.TEXT_EXAMPLE}", "bad-separator")
        root_text, size_text = body[:ROOT_TEXT_LEN], body[ROOT_TEXT_LEN + 1:]
        if not _BASE32.fullmatch(root_text):
            raise InvalidBlobId("blob id: the root part may only hold a-z and 2-7", "bad-chars")
        raw = base64.b32decode(root_text.upper() + "=" * (-len(root_text) % 8))
        if _b32(raw) != root_text:
            raise InvalidBlobId("blob id: non-canonical base32 (trailing bits must be zero)",
                                "non-canonical-base32")
        if not _SIZE_TEXT.fullmatch(size_text) or int(size_text) > MAX_BLOB_SIZE:
            raise InvalidBlobId(
                f"blob id: the size must be a decimal number from 0 to {MAX_BLOB_SIZE}, "
                "without leading zeros", "bad-size")
        root, check, size = raw[:HASH_SIZE], raw[HASH_SIZE:], int(size_text)
        if check != _checksum(root, size):
            raise InvalidBlobId("blob id checksum does not match: is it mistyped?",
                                "bad-checksum")
        return cls(root, size)


# -- verifying (spec/13 §5) ------------------------------------------------------------


#: Node hashes a :class:`CheckedNodes` keeps before it starts again: about 150 bytes
#: each, so at most ~1 MB per blob, and a run of chunks in order needs a few dozen.
MAX_CHECKED_NODES = 8192


class CheckedNodes:
    """Node hashes of one blob's tree that a chunk's walk to the root has checked.

    Given to :func:`verify_chunk`, they shorten the check of the next chunk: its
    walk stops at the first node on its path already checked (equal: the rest of
    its proof is compared with the checked nodes; different: ``blob-chunk-proof``),
    so a run of neighbouring chunks costs about one leaf hash each instead of a
    walk of up to 16 hashes to the root. The outcome is the one of the full walk
    (spec/13 §5.2 V4): a checked node is the true hash of its subtree, since it
    led to the root. Safe to share between threads (each update is one dict call).
    """

    __slots__ = ("_nodes",)

    def __init__(self) -> None:
        self._nodes: dict[int, bytes] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def _add(self, layout: ChunkLayout, path: list[bytes], proof: bytes,
             levels: int | None = None) -> None:
        """Keep the nodes of a walk: the path (``path``, from the leaf) and the proof's
        siblings, of its first ``levels`` levels (None: all)."""
        if len(self._nodes) > MAX_CHECKED_NODES:
            self._nodes = {}  # (a fresh dict: another thread may be reading the old one)
        found = dict(zip(layout.path_positions, path, strict=False))  # (path: a prefix)
        for level, position in enumerate(layout.proof_positions[:levels]):
            found[position] = proof[level * HASH_SIZE:(level + 1) * HASH_SIZE]
        self._nodes.update(found)


def verify_chunk(blob: BlobId, index: int, data: bytes | bytearray | memoryview,
                 proof: bytes | bytearray | memoryview,
                 checked: CheckedNodes | None = None) -> list[bytes]:
    """Check chunk ``index`` of ``blob`` against its proof; raises :class:`InvalidBlob`.

    The checks run in the order of spec/13 §5.2: ``blob-chunk-index``,
    ``blob-chunk-length``, ``blob-proof-length``, ``blob-chunk-proof``.
    Returns the hashes of the nodes from the chunk's leaf up to the top of the tree,
    now verified (the chunk store keeps them). ``checked``: the nodes of this blob
    checked before (the walk stops at the first of them it meets), and to which
    this chunk's are added.
    """
    # (Inlined: check_index, chunk_span, proof_depth. A download and every serve run
    # this once per 64 KiB chunk, in Python.)
    size = blob.size
    count = max(1, -(-size // CHUNK_SIZE))
    if type(index) is not int or not 0 <= index < count:
        raise InvalidBlob("blob-chunk-index", f"the blob has chunks 0 to {count - 1}",
                          index=index)
    length = max(0, min(CHUNK_SIZE, size - index * CHUNK_SIZE))
    if len(data) != length:
        raise InvalidBlob("blob-chunk-length",
                          f"chunk {index} of a {size}-byte blob has {length} bytes, "
                          f"not {len(data)}", index=index)
    layout = chunk_layout(index, count)
    depth = len(layout.right)
    if len(proof) != depth * HASH_SIZE:
        raise InvalidBlob("blob-proof-length",
                          f"its proof has {depth} hashes ({depth * HASH_SIZE} bytes), "
                          f"not {len(proof)} bytes", index=index)
    proof = bytes(proof)
    leaf = leaf_hash(data)
    if checked is None:
        top, on_the_way = tree_from_proof(leaf, index, count, proof)
    else:
        nodes = checked._nodes
        top, on_the_way = leaf, [leaf]
        path_positions = layout.path_positions
        for level, on_the_right in enumerate(layout.right):
            known = nodes.get(path_positions[level])
            if known is not None:
                rest = _checked_rest(nodes, layout, level, proof)
                if rest is not None:  # (None: forgotten meanwhile; walk on)
                    above, siblings_match = rest
                    if known != top or not siblings_match:
                        raise InvalidBlob("blob-chunk-proof",
                                          "chunk and proof lead to another root", index=index)
                    checked._add(layout, on_the_way, proof, level)
                    return on_the_way + above
            sibling = proof[level * HASH_SIZE:(level + 1) * HASH_SIZE]
            top = parent_hash(top, sibling) if on_the_right else parent_hash(sibling, top)
            on_the_way.append(top)
    if root_hash(top, size) != blob.root:
        raise InvalidBlob("blob-chunk-proof", "chunk and proof lead to another root",
                          index=index)
    if checked is not None:
        checked._add(layout, on_the_way, proof)
    return on_the_way


def _checked_rest(nodes: dict[int, bytes], layout: ChunkLayout, level: int,
                  proof: bytes) -> tuple[list[bytes], bool] | None:
    """Where a walk meets a checked node at ``level``: the checked hashes of the path
    above it, and whether the proof's siblings from that level up are the checked
    ones (else it leads to another root); None if some were not kept."""
    get = nodes.get
    above = [get(position) for position in layout.path_positions[level + 1:]]
    siblings = [get(position) for position in layout.proof_positions[level:]]
    if None in above or None in siblings:
        return None
    # (one comparison of the proof's rest with the checked siblings, joined)
    match = b"".join(cast(list[bytes], siblings)) == proof[level * HASH_SIZE:]
    return cast(list[bytes], above), match


def blob_id_of(data: bytes | bytearray | memoryview) -> BlobId:
    """The id of the blob whose bytes are ``data`` (all in memory)."""
    hasher = BlobHasher()
    hasher.update(data)
    return hasher.finish()


def verify_blob(blob: BlobId, data: bytes | bytearray | memoryview) -> None:
    """Check a whole blob held in memory; raises :class:`InvalidBlob` (``blob-hash``)."""
    if len(data) != blob.size or blob_id_of(data) != blob:
        raise InvalidBlob("blob-hash", f"{len(data)} bytes that are not blob {blob}")


# -- making trees and proofs ---------------------------------------------------------


class BlobTree:
    """Every node hash of a blob's tree, in memory, for building proofs.

    Kept in the in-order layout of :func:`node_position`: ``2n - 1`` hashes,
    at most 4 MiB for the largest blob.
    """

    __slots__ = ("_nodes", "blob_id")

    def __init__(self, blob_id: BlobId, nodes: bytes) -> None:
        if len(nodes) != tree_nodes(blob_id.chunk_count) * HASH_SIZE:
            raise ValueError("a tree over n chunks has 2n - 1 node hashes")
        self.blob_id = blob_id
        self._nodes = nodes

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview) -> BlobTree:
        """The tree of a blob held in memory."""
        hasher = BlobHasher(keep_nodes=True)
        hasher.update(data)
        blob = hasher.finish()
        layout = bytearray(tree_nodes(blob.chunk_count) * HASH_SIZE)
        for position, digest in hasher.take_nodes():
            layout[position * HASH_SIZE:(position + 1) * HASH_SIZE] = digest
        return cls(blob, bytes(layout))

    @property
    def nodes(self) -> bytes:
        """All node hashes, in the in-order layout."""
        return self._nodes

    def node(self, start: int, end: int) -> bytes:
        position = node_position(start, end)
        return self._nodes[position * HASH_SIZE:(position + 1) * HASH_SIZE]

    def proof(self, index: int) -> bytes:
        """The proof of chunk ``index``."""
        self.blob_id.check_index(index)
        return make_proof(index, self.blob_id.chunk_count, self.node)


class BlobHasher:
    """Hashes a blob fed in pieces of any size, in bounded memory: one partial chunk
    and one hash per level of the tree (at most 17), however large the blob.

    >>> hasher = BlobHasher()
    >>> for piece in (b"hello, ", b"world"):
    ...     hasher.update(piece)
    >>> hasher.finish() == blob_id_of(b"hello, world")
    True

    With ``keep_nodes``, every node hash is also collected as
    ``(position, hash)`` pairs (:func:`node_position`), to be drained with
    :meth:`take_nodes` as they complete: a store writes a blob's tree while
    it imports the blob, without holding either whole.
    """

    def __init__(self, *, keep_nodes: bool = False) -> None:
        self._keep_nodes = keep_nodes
        self._size = 0
        self._chunk = bytearray()
        self._chunks = 0
        #: Complete subtrees not yet joined: (first chunk, chunk count, hash); the
        #: counts are distinct powers of two, largest first.
        self._stack: list[tuple[int, int, bytes]] = []
        self._nodes: list[tuple[int, bytes]] = []
        self._result: BlobId | None = None

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._size

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._result is not None:
            raise LocalProtocolError("the hasher has finished; make a new one")
        if self._size + len(data) > MAX_BLOB_SIZE:
            raise InvalidBlob("blob-size", f"a blob has at most {MAX_BLOB_SIZE} bytes (4 GiB)")
        self._size += len(data)
        view = memoryview(data).cast("B")
        while view:
            room = CHUNK_SIZE - len(self._chunk)
            if not self._chunk and len(view) >= CHUNK_SIZE:
                self._add_leaf(leaf_hash(view[:CHUNK_SIZE]))  # a whole chunk: no copy
                view = view[CHUNK_SIZE:]
                continue
            self._chunk += view[:room]
            view = view[room:]
            if len(self._chunk) == CHUNK_SIZE:
                self._add_leaf(leaf_hash(self._chunk))
                self._chunk.clear()

    def _add_leaf(self, digest: bytes) -> None:
        index = self._chunks
        self._chunks += 1
        self._node(index, index + 1, digest)
        self._stack.append((index, 1, digest))
        # Two subtrees of equal size are always siblings (spec/13 §2: the left
        # subtree of a node is a power of two), so they are joined at once.
        while len(self._stack) >= 2 and self._stack[-1][1] == self._stack[-2][1]:
            right_start, right_count, right = self._stack.pop()
            left_start, left_count, left = self._stack.pop()
            joined = parent_hash(left, right)
            self._node(left_start, right_start + right_count, joined)
            self._stack.append((left_start, left_count + right_count, joined))

    def _node(self, start: int, end: int, digest: bytes) -> None:
        if self._keep_nodes:
            self._nodes.append((node_position(start, end), digest))

    def finish(self) -> BlobId:
        """The blob's id; the hasher takes no more bytes afterwards."""
        if self._result is not None:
            return self._result
        if self._chunk or self._chunks == 0:  # the last, short chunk; or the empty blob's
            self._add_leaf(leaf_hash(self._chunk))
            self._chunk.clear()
        # The subtrees left are the binary digits of the chunk count, largest
        # first; the tree joins them from the right (each left one is a power of
        # two larger than everything after it).
        while len(self._stack) > 1:
            right_start, right_count, right = self._stack.pop()
            left_start, left_count, left = self._stack.pop()
            joined = parent_hash(left, right)
            self._node(left_start, right_start + right_count, joined)
            self._stack.append((left_start, left_count + right_count, joined))
        self._result = BlobId(root_hash(self._stack[0][2], self._size), self._size)
        return self._result

    def take_nodes(self) -> list[tuple[int, bytes]]:
        """The ``(position, hash)`` of the nodes completed since the last call
        (only with ``keep_nodes``)."""
        nodes, self._nodes = self._nodes, []
        return nodes


class BlobVerifier:
    """Checks a blob's chunks as they arrive, in any order and from any peers, and
    hands out bytes in order, only ever verified ones.

    >>> tree = BlobTree.of(bytes(range(256)) * 1024)      # 256 KiB: chunks 0 to 3
    >>> verifier = BlobVerifier(tree.blob_id)
    >>> verifier.add(1, bytes(range(256)) * 256, tree.proof(1))
    True
    >>> verifier.read()                                  # chunk 0 is still missing
    b''
    >>> verifier.add(0, bytes(range(256)) * 256, tree.proof(0))
    True
    >>> len(verifier.read()), verifier.position
    (131072, 2)

    ``start`` resumes at a chunk (the chunks before it are the reader's already).
    At most ``window`` chunks ahead of the next one to read are buffered: the
    bound on its memory (64 chunks, 4 MiB, by default); a chunk further ahead
    is refused with :class:`~tidings.errors.LocalProtocolError`, since the
    caller chose what to request.
    """

    def __init__(self, blob_id: BlobId, *, start: int = 0, window: int = 64) -> None:
        if not 0 <= start <= blob_id.chunk_count or window < 1:
            raise ValueError("start is a chunk index (or the chunk count), window at least 1")
        self.blob_id = blob_id
        self.window = window
        self._next = start
        self._ready: dict[int, bytes] = {}

    @property
    def position(self) -> int:
        """The next chunk :meth:`read` will hand out."""
        return self._next

    @property
    def done(self) -> bool:
        """Every chunk has been handed out."""
        return self._next == self.blob_id.chunk_count

    def wanted(self) -> Iterator[int]:
        """The chunks of the window not received yet, in order."""
        end = min(self._next + self.window, self.blob_id.chunk_count)
        return (i for i in range(self._next, end) if i not in self._ready)

    def add(self, index: int, data: bytes, proof: bytes) -> bool:
        """Verify and keep a chunk; False if it was read or is held already.

        Raises :class:`InvalidBlob` for a chunk that does not verify; nothing
        is kept then.
        """
        self.blob_id.check_index(index)
        if index < self._next or index in self._ready:
            return False
        if index >= self._next + self.window:
            raise LocalProtocolError(
                f"chunk {index} is beyond the window (chunks {self._next} to "
                f"{self._next + self.window - 1}): request fewer chunks ahead")
        verify_chunk(self.blob_id, index, data, proof)
        self._ready[index] = bytes(data)
        return True

    def read(self) -> bytes:
        """The verified bytes that follow those already read, in order (may be empty)."""
        out = bytearray()
        while self._next in self._ready:
            out += self._ready.pop(self._next)
            self._next += 1
        return bytes(out)
