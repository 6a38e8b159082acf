"""The pure blob core (spec/13-blobs.md §1-§5): chunks, the tree, proofs, ids, the
hasher and the streaming verifier.

The tree's shape is checked on leaf hashes alone (any 32 bytes stand for a
chunk), so thousands of chunks cost nothing; whole chunks are checked with real
64 KiB data.
"""

from __future__ import annotations

import doctest
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidings.core.blob
from tests.helpers import examples
from tidings.content import Attachment, Post, decode, encode
from tidings.core.blob import (
    BLOB_ID_SIZE,
    CHUNK_SIZE,
    HASH_SIZE,
    MAX_BLOB_SIZE,
    MAX_CHUNKS,
    MAX_PROOF_DEPTH,
    MAX_PROOF_SIZE,
    BlobHasher,
    BlobId,
    BlobTree,
    BlobVerifier,
    CheckedNodes,
    InvalidBlob,
    InvalidBlobId,
    blob_id_of,
    chunk_count,
    chunk_span,
    leaf_hash,
    make_proof,
    node_position,
    parent_hash,
    path_nodes,
    proof_depth,
    proof_nodes,
    root_hash,
    split,
    tree_from_proof,
    tree_hash,
    tree_nodes,
    verify_blob,
    verify_chunk,
)
from tidings.errors import InvalidId, LocalProtocolError, TidingsError


def blob_data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def nodes_of(count: int) -> list[tuple[int, int]]:
    """Every node of the tree over ``count`` chunks, as ranges (spec/13 §2)."""
    out = []

    def walk(start: int, end: int) -> None:
        out.append((start, end))
        if end - start > 1:
            middle = start + split(end - start)
            walk(start, middle)
            walk(middle, end)

    walk(0, count)
    return out


# -- chunks (§1) ---------------------------------------------------------------------


@pytest.mark.parametrize(("size", "count", "last"), [
    (0, 1, 0), (1, 1, 1), (CHUNK_SIZE - 1, 1, CHUNK_SIZE - 1), (CHUNK_SIZE, 1, CHUNK_SIZE),
    (CHUNK_SIZE + 1, 2, 1), (3 * CHUNK_SIZE, 3, CHUNK_SIZE),
    (MAX_BLOB_SIZE, MAX_CHUNKS, CHUNK_SIZE), (MAX_BLOB_SIZE - 1, MAX_CHUNKS, CHUNK_SIZE - 1),
])
def test_chunk_count_and_the_last_chunk(size: int, count: int, last: int) -> None:
    assert chunk_count(size) == count
    assert chunk_span(size, count - 1) == ((count - 1) * CHUNK_SIZE, last)
    if count > 1:
        assert chunk_span(size, 0) == (0, CHUNK_SIZE)


def test_the_bounds_follow_from_the_chunk_size() -> None:
    assert MAX_CHUNKS == 65536
    assert MAX_PROOF_DEPTH == 16 == proof_depth(0, MAX_CHUNKS) == proof_depth(65535, MAX_CHUNKS)
    assert MAX_PROOF_SIZE == 512
    assert max(proof_depth(i, MAX_CHUNKS - 1) for i in (0, 32767, 32768, 65534)) == 16


# -- the tree (§2) ----------------------------------------------------------------------


@pytest.mark.parametrize("count", [*range(1, 70), 127, 128, 129, 1000])
def test_in_order_positions_number_every_node_once(count: int) -> None:
    positions = sorted(node_position(start, end) for start, end in nodes_of(count))
    assert positions == list(range(tree_nodes(count)))


def test_split_is_the_largest_power_of_two_below() -> None:
    for count in range(2, 3000):
        s = split(count)
        assert s & (s - 1) == 0 and s < count <= 2 * s


def test_domains_separate_leaves_parents_and_roots() -> None:
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    # A 64-byte chunk made of two hashes never hashes like their parent.
    assert leaf_hash(left + right) != parent_hash(left, right)
    assert root_hash(left, 0) != leaf_hash(left)


def test_the_root_binds_the_size() -> None:
    data = blob_data(CHUNK_SIZE + 10)
    blob = blob_id_of(data)
    # Same chunk count, same leaves but the last, so only the size tells them apart.
    assert blob_id_of(data[:-1]).root != blob.root
    assert blob_id_of(data + b"\0").root != blob.root
    forged = BlobId(blob.root, blob.size - 1)
    tree = BlobTree.of(data)
    with pytest.raises(InvalidBlob) as raised:
        verify_chunk(forged, 0, data[:CHUNK_SIZE], tree.proof(0))
    assert raised.value.rule == "blob-chunk-proof"


# -- proofs on leaf hashes alone (§3) -------------------------------------------------


@settings(max_examples=examples(300), deadline=None)
@given(count=st.integers(1, 5000), data=st.data())
def test_any_leaf_of_any_tree_proves_the_tree_hash(count: int, data: st.DataObject) -> None:
    rng = random.Random(count)
    leaves = [rng.randbytes(HASH_SIZE) for _ in range(count)]
    index = data.draw(st.integers(0, count - 1))
    memo: dict[tuple[int, int], bytes] = {}

    def node(start: int, end: int) -> bytes:
        if (start, end) not in memo:
            memo[start, end] = tree_hash(leaves[start:end])
        return memo[start, end]

    proof = make_proof(index, count, node)
    assert len(proof) == proof_depth(index, count) * HASH_SIZE
    assert proof_depth(index, count) <= (count - 1).bit_length()
    top, on_the_way = tree_from_proof(leaves[index], index, count, proof)
    assert top == tree_hash(leaves)
    assert on_the_way == [node(s, e) for s, e in path_nodes(index, count)]
    if proof:  # any flipped bit of the proof leads elsewhere
        bit = data.draw(st.integers(0, len(proof) * 8 - 1))
        flipped = bytearray(proof)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert tree_from_proof(leaves[index], index, count, bytes(flipped))[0] != top


def test_proof_nodes_are_the_siblings_of_the_path() -> None:
    for count in range(1, 40):
        for index in range(count):
            path = path_nodes(index, count)
            assert path[0] == (index, index + 1) and path[-1] == (0, count)
            for (low, high), (start, end), (up_low, up_high) in zip(
                    path, proof_nodes(index, count), path[1:], strict=False):
                assert (min(low, start), max(high, end)) == (up_low, up_high)
                assert high == start or end == low  # beside it, not overlapping


# -- whole chunks (§3, §5) -------------------------------------------------------------

SIZES = st.one_of(
    st.integers(0, 3 * CHUNK_SIZE),
    st.builds(lambda k, d: k * CHUNK_SIZE + d, st.integers(0, 9), st.integers(-2, 2)),
).filter(lambda n: n >= 0)


@settings(max_examples=examples(40), deadline=None)
@given(size=SIZES, seed=st.integers(0, 2**32), data=st.data())
def test_any_chunk_verifies_and_any_flipped_bit_fails(size: int, seed: int,
                                                      data: st.DataObject) -> None:
    content = blob_data(size, seed)
    tree = BlobTree.of(content)
    blob = tree.blob_id
    index = data.draw(st.integers(0, blob.chunk_count - 1), label="index")
    offset, length = blob.chunk_span(index)
    chunk, proof = content[offset:offset + length], tree.proof(index)
    verify_chunk(blob, index, chunk, proof)
    where = data.draw(st.sampled_from(["chunk", "proof", "root"]), label="where")
    target = {"chunk": chunk, "proof": proof, "root": blob.root}[where]
    if not target:
        return  # the empty chunk, or a one-chunk blob's empty proof: no bit to flip
    bit = data.draw(st.integers(0, len(target) * 8 - 1), label="bit")
    flipped = bytearray(target)
    flipped[bit // 8] ^= 1 << (bit % 8)
    args = {"chunk": chunk, "proof": proof, "root": blob.root, where: bytes(flipped)}
    with pytest.raises(InvalidBlob) as raised:
        verify_chunk(BlobId(args["root"], blob.size), index, args["chunk"], args["proof"])
    assert raised.value.rule == "blob-chunk-proof"
    assert raised.value.index == index


def test_the_checks_run_in_order() -> None:
    content = blob_data(2 * CHUNK_SIZE + 5)
    tree = BlobTree.of(content)
    blob = tree.blob_id
    last = content[2 * CHUNK_SIZE:]
    cases = [  # each breaks its rule and every later one
        ("blob-chunk-index", 3, last + b"x", b""),
        ("blob-chunk-index", -1, last, tree.proof(2)),
        ("blob-chunk-length", 2, last + b"x", b"\0"),
        ("blob-proof-length", 2, last, tree.proof(0)),
        ("blob-chunk-proof", 2, content[:5], tree.proof(2)),
    ]
    for rule, index, chunk, proof in cases:
        with pytest.raises(InvalidBlob) as raised:
            verify_chunk(blob, index, chunk, proof)
        assert raised.value.rule == rule, (rule, str(raised.value))


def test_a_blob_error_is_a_tidings_error_naming_rule_and_chunk() -> None:
    error = InvalidBlob("blob-chunk-proof", "it lies", index=4)
    assert isinstance(error, TidingsError)
    assert str(error) == "chunk 4: blob-chunk-proof: it lies"


def test_verify_blob() -> None:
    content = blob_data(CHUNK_SIZE * 2)
    verify_blob(blob_id_of(content), content)
    for other in (content[:-1], content + b"\0", content[::-1]):
        with pytest.raises(InvalidBlob) as raised:
            verify_blob(blob_id_of(content), other)
        assert raised.value.rule == "blob-hash"


# -- the hasher ---------------------------------------------------------------------------


@settings(max_examples=examples(40), deadline=None)
@given(size=SIZES, cuts=st.lists(st.integers(0, 10 * CHUNK_SIZE), max_size=8))
def test_the_hasher_gives_one_answer_however_the_bytes_are_cut(size: int,
                                                              cuts: list[int]) -> None:
    content = blob_data(size)
    hasher = BlobHasher(keep_nodes=True)
    layout = bytearray(tree_nodes(chunk_count(size)) * HASH_SIZE)
    written: set[int] = set()
    start = 0
    for cut in [*sorted(min(c, size) for c in cuts), size]:
        hasher.update(content[start:cut])
        start = max(start, cut)
        for position, digest in hasher.take_nodes():
            assert position not in written
            written.add(position)
            layout[position * HASH_SIZE:(position + 1) * HASH_SIZE] = digest
    blob = hasher.finish()
    for position, digest in hasher.take_nodes():
        written.add(position)
        layout[position * HASH_SIZE:(position + 1) * HASH_SIZE] = digest
    assert written == set(range(tree_nodes(blob.chunk_count)))
    tree = BlobTree.of(content)
    assert blob == tree.blob_id and bytes(layout) == tree.nodes
    leaves = [leaf_hash(content[o:o + n]) for o, n in
              (chunk_span(size, i) for i in range(blob.chunk_count))]
    assert blob.root == root_hash(tree_hash(leaves), size)


def test_the_hasher_refuses_more_than_4_gib_and_use_after_finish() -> None:
    hasher = BlobHasher()
    hasher._size = MAX_BLOB_SIZE - 1  # as if 4 GiB less a byte had been fed
    with pytest.raises(InvalidBlob) as raised:
        hasher.update(b"ab")
    assert raised.value.rule == "blob-size"
    hasher.update(b"a")  # exactly 4 GiB is allowed
    done = BlobHasher()
    done.finish()
    with pytest.raises(LocalProtocolError):
        done.update(b"x")


# -- blob ids (§4) ---------------------------------------------------------------------


def test_blob_id_forms() -> None:
    blob = blob_id_of(b"hello, world")
    text = str(blob)
    assert text.startswith("tb1") and text.endswith("_12") and len(text) == 3 + 55 + 1 + 2
    assert BlobId.parse(text) == blob == BlobId.from_bytes(bytes(blob))
    assert len(bytes(blob)) == BLOB_ID_SIZE and blob.to_bytes() == bytes(blob)
    assert repr(blob) == f"BlobId({text!r})"
    assert {blob: 1}[BlobId.parse(text)] == 1  # hashable, equal by value


def test_blob_id_constructor_checks() -> None:
    with pytest.raises(InvalidBlob) as raised:
        BlobId(bytes(31), 0)
    assert raised.value.rule == "blob-id"
    with pytest.raises(InvalidBlob) as raised:
        BlobId(bytes(32), MAX_BLOB_SIZE + 1)
    assert raised.value.rule == "blob-size"
    with pytest.raises(InvalidBlob):
        BlobId(bytes(32), True)
    assert BlobId(bytes(32), MAX_BLOB_SIZE).chunk_count == MAX_CHUNKS


def test_an_invalid_blob_id_is_an_invalid_id() -> None:
    with pytest.raises(InvalidId) as raised:
        BlobId.parse("tb1")
    assert isinstance(raised.value, InvalidBlobId) and raised.value.reason == "bad-separator"


@settings(max_examples=examples(200), deadline=None)
@given(root=st.binary(min_size=32, max_size=32), size=st.integers(0, MAX_BLOB_SIZE))
def test_text_and_binary_forms_round_trip(root: bytes, size: int) -> None:
    blob = BlobId(root, size)
    assert BlobId.parse(str(blob)) == blob == BlobId.from_bytes(bytes(blob))
    assert 60 <= len(str(blob)) <= 69


@settings(max_examples=examples(300), deadline=None)
@given(text=st.text(max_size=80))
def test_parsing_any_text_raises_only_invalid_id(text: str) -> None:
    try:
        blob = BlobId.parse(text)
    except InvalidBlobId:
        return
    assert str(blob) == text


# -- the streaming verifier -----------------------------------------------------------


def test_the_verifier_hands_out_only_verified_bytes_in_order() -> None:
    content = blob_data(5 * CHUNK_SIZE + 99)
    tree = BlobTree.of(content)
    verifier = BlobVerifier(tree.blob_id, window=4)

    def chunk(i: int) -> bytes:
        offset, length = tree.blob_id.chunk_span(i)
        return content[offset:offset + length]

    assert list(verifier.wanted()) == [0, 1, 2, 3]
    assert verifier.add(2, chunk(2), tree.proof(2))
    with pytest.raises(InvalidBlob):
        verifier.add(0, chunk(1), tree.proof(0))  # a lie is refused, and kept nowhere
    assert verifier.read() == b""
    assert list(verifier.wanted()) == [0, 1, 3]
    with pytest.raises(LocalProtocolError):
        verifier.add(4, chunk(4), tree.proof(4))  # past the window of 4 chunks
    assert verifier.add(0, chunk(0), tree.proof(0))
    assert not verifier.add(0, chunk(0), tree.proof(0))  # a duplicate
    assert verifier.read() == chunk(0)
    assert verifier.add(1, chunk(1), tree.proof(1))
    assert verifier.read() == chunk(1) + chunk(2)
    for i in (5, 3, 4):
        verifier.add(i, chunk(i), tree.proof(i))
    assert verifier.read() == content[3 * CHUNK_SIZE:]
    assert verifier.done and not verifier.add(1, chunk(1), tree.proof(1))


def test_the_verifier_resumes_at_a_chunk() -> None:
    content = blob_data(3 * CHUNK_SIZE)
    tree = BlobTree.of(content)
    verifier = BlobVerifier(tree.blob_id, start=2)
    assert not verifier.add(1, content[CHUNK_SIZE:2 * CHUNK_SIZE], tree.proof(1))
    verifier.add(2, content[2 * CHUNK_SIZE:], tree.proof(2))
    assert verifier.read() == content[2 * CHUNK_SIZE:] and verifier.done


# -- attachments (spec/content.md §6.1) ------------------------------------------------


def test_a_post_attaches_a_blob() -> None:
    blob = blob_id_of(os.urandom(1000))
    attachment = Attachment.of_blob(blob, "audio/ogg", title="Episode", duration=61)
    assert attachment.size == 1000 and attachment.url is None
    post = Post("notes", attachments=(attachment,))
    assert decode(encode(post)) == post


def test_the_module_examples() -> None:
    failed, attempted = doctest.testmod(tidings.core.blob)
    assert attempted and not failed


@pytest.mark.parametrize("count", [*range(1, 70), 1000, 65536])
def test_chunk_layouts_are_the_walk_of_spec_13(count: int) -> None:
    """The cached layout of a chunk (what checking and storing it use) is the walk of
    spec/13 §3.1 and the in-order positions of §7, for every index of small trees and
    some of the largest."""
    from tidings.core.blob import chunk_layout, node_position, path_nodes, proof_nodes

    indexes = range(count) if count < 1000 else [0, 1, count // 3, count - 2, count - 1]
    for index in indexes:
        layout = chunk_layout(index, count)
        assert layout.proof_positions == tuple(node_position(s, e)
                                               for s, e in proof_nodes(index, count))
        assert layout.path_positions == tuple(node_position(s, e)
                                              for s, e in path_nodes(index, count))
        assert len(layout.right) == proof_depth(index, count) == len(proof_nodes(index, count))
        for (start, _), on_the_right in zip(proof_nodes(index, count), layout.right,
                                           strict=True):
            assert on_the_right == (start > index)


# -- checking chunks with the nodes checked before ---------------------------------------


@settings(max_examples=examples(40))
@given(st.integers(1, 70), st.integers(0, 2**32))
def test_checked_nodes_give_the_full_walks_outcome(count: int, seed: int) -> None:
    """A walk that stops at a node checked before accepts exactly what the full walk
    accepts (spec/13 §5.2 V4), and returns the same path, whatever the order."""
    rnd = random.Random(seed)
    size = (count - 1) * CHUNK_SIZE + rnd.randint(1, CHUNK_SIZE)
    data = rnd.randbytes(size)
    tree = BlobTree.of(data)
    blob = tree.blob_id
    checked = CheckedNodes()
    order = list(range(count))
    rnd.shuffle(order)
    for index in order:
        offset, length = blob.chunk_span(index)
        chunk, proof = data[offset:offset + length], tree.proof(index)
        bad_chunk = bytearray(chunk)
        bad_chunk[rnd.randrange(length)] ^= 1 << rnd.randrange(8)
        with pytest.raises(InvalidBlob) as raised:
            verify_chunk(blob, index, bytes(bad_chunk), proof, checked)
        assert raised.value.rule == "blob-chunk-proof"
        if proof:  # one bit of any one hash of the proof
            bad_proof = bytearray(proof)
            bad_proof[rnd.randrange(len(proof))] ^= 1 << rnd.randrange(8)
            with pytest.raises(InvalidBlob):
                verify_chunk(blob, index, chunk, bytes(bad_proof), checked)
        assert verify_chunk(blob, index, chunk, proof, checked) == \
            verify_chunk(blob, index, chunk, proof)
    assert len(checked) == tree_nodes(count)  # every node, each checked once


def test_a_run_of_chunks_checks_about_one_hash_each() -> None:
    data = bytes(64 * CHUNK_SIZE)
    tree = BlobTree.of(data)
    checked = CheckedNodes()
    hashed = []
    real_parent = tidings.core.blob.parent_hash
    tidings.core.blob.parent_hash = lambda a, b: hashed.append(1) or real_parent(a, b)
    try:
        for index in range(64):
            verify_chunk(tree.blob_id, index, data[:CHUNK_SIZE], tree.proof(index), checked)
    finally:
        tidings.core.blob.parent_hash = real_parent
    assert len(hashed) < 2 * 64  # not 6 a chunk (64 chunks: a tree 6 levels deep)
