"""The blob code against spec/vectors/blobs.json (spec/13-blobs.md).

The vectors are loaded, never copied here; ``tools/make_vectors.py --check``
(run by test_vectors.py) keeps them in step with the code, and the generator
computes every tree and proof with code of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tidings.content import decode
from tidings.core.blob import (
    CHUNK_SIZE,
    MAX_BLOB_SIZE,
    BlobHasher,
    BlobId,
    BlobTree,
    InvalidBlob,
    InvalidBlobId,
    blob_id_of,
    leaf_hash,
    root_hash,
    tree_hash,
    verify_blob,
    verify_chunk,
)
from tidings.errors import PeerError
from tidings.storage.blobs import BlobStore
from tidings.wire.messages import decode_message, encode_message

ROOT = Path(__file__).resolve().parents[1]
VECTORS = json.loads((ROOT / "spec" / "vectors" / "blobs.json").read_text(encoding="utf-8"))
BLOBS = {case["name"]: case for case in VECTORS["blobs"]}


def by_name(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in cases]


def blob_bytes(case: dict[str, Any]) -> bytes:
    """The bytes of a blob of the vectors: given, or byte j = j mod 251 (README)."""
    if case["data"] is not None:
        return bytes.fromhex(str(case["data"]))
    size: int = case["size"]
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def chunk_data(spec: dict[str, Any]) -> bytes:
    """An invalid case's chunk: given in hex, or an edit of a chunk of a listed blob."""
    if "hex" in spec:
        return bytes.fromhex(spec["hex"])
    data = blob_bytes(BLOBS[spec["blob"]])
    chunk = bytearray(data[spec["index"] * CHUNK_SIZE:(spec["index"] + 1) * CHUNK_SIZE])
    del chunk[len(chunk) - spec["cut"]:]
    chunk += bytes.fromhex(spec["append"])
    if spec["flip"] is not None:
        chunk[spec["flip"]["offset"]] ^= spec["flip"]["mask"]
    return bytes(chunk)


def test_the_constants() -> None:
    assert VECTORS["chunk_size"] == CHUNK_SIZE
    assert VECTORS["max_size"] == MAX_BLOB_SIZE


@pytest.mark.parametrize("case", by_name(VECTORS["blobs"]))
def test_blob_ids_trees_and_proofs(case: dict[str, Any]) -> None:
    data = blob_bytes(case)
    assert len(data) == case["size"]
    blob = BlobId.parse(case["id"])
    assert (blob.root.hex(), blob.size, blob.chunk_count) == (
        case["root"], case["size"], case["chunk_count"])
    assert str(blob) == case["id"]
    assert bytes(blob).hex() == case["binary_id"]
    assert BlobId.from_bytes(bytes.fromhex(case["binary_id"])) == blob
    assert blob_id_of(data) == blob
    tree = BlobTree.of(data)
    assert tree.blob_id == blob
    assert tree.node(0, blob.chunk_count).hex() == case["tree_hash"]
    assert root_hash(bytes.fromhex(case["tree_hash"]), case["size"]).hex() == case["root"]
    for chunk in case["chunks"]:
        index = chunk["index"]
        offset, length = blob.chunk_span(index)
        assert (offset, length) == (chunk["offset"], chunk["length"])
        piece = data[offset:offset + length]
        assert leaf_hash(piece).hex() == chunk["leaf"]
        assert tree.proof(index).hex() == chunk["proof"]
        verify_chunk(blob, index, piece, bytes.fromhex(chunk["proof"]))
    if len(case["chunks"]) == blob.chunk_count:  # every leaf listed: the tree from them
        assert tree_hash([bytes.fromhex(c["leaf"]) for c in case["chunks"]]).hex() == \
            case["tree_hash"]


@pytest.mark.parametrize("case", by_name(VECTORS["blobs"]))
def test_the_hasher_in_pieces_and_the_store_make_the_same_ids(
        case: dict[str, Any], tmp_path: Path) -> None:
    data = blob_bytes(case)
    hasher = BlobHasher()
    step = 1
    position = 0
    while position < len(data):  # pieces of 1, 2, 4, ... bytes: every alignment
        hasher.update(data[position:position + step])
        position += step
        step = step * 2 if step < 1 << 20 else 1
    assert str(hasher.finish()) == case["id"]
    if case["size"] <= 1 << 20:
        with BlobStore(tmp_path / "blobs") as store:
            assert str(store.import_bytes(data)) == case["id"]


@pytest.mark.parametrize("case", by_name(VECTORS["invalid_chunks"]))
def test_invalid_chunks(case: dict[str, Any]) -> None:
    blob = BlobId.parse(case["blob"])
    with pytest.raises(InvalidBlob) as raised:
        verify_chunk(blob, case["index"], chunk_data(case["data"]), bytes.fromhex(case["proof"]))
    assert raised.value.rule == case["rule"]


@pytest.mark.parametrize("case", by_name(VECTORS["invalid_chunks"]))
def test_a_store_keeps_no_invalid_chunk(case: dict[str, Any], tmp_path: Path) -> None:
    blob = BlobId.parse(case["blob"])
    with BlobStore(tmp_path / "blobs") as store:
        with pytest.raises(InvalidBlob) as raised:
            store.put_chunk(blob, case["index"], chunk_data(case["data"]),
                            bytes.fromhex(case["proof"]))
        assert raised.value.rule == case["rule"]
        info = store.info(blob)
        assert info is None or info.held == 0


@pytest.mark.parametrize("case", by_name(VECTORS["binary_ids"]["valid"]))
def test_valid_binary_ids(case: dict[str, Any]) -> None:
    blob = BlobId.from_bytes(bytes.fromhex(case["hex"]))
    assert (blob.root.hex(), blob.size, str(blob)) == (case["root"], case["size"], case["id"])
    assert BlobId.parse(case["id"]) == blob


@pytest.mark.parametrize("case", by_name(VECTORS["binary_ids"]["invalid"]))
def test_invalid_binary_ids(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidBlob) as raised:
        BlobId.from_bytes(bytes.fromhex(case["hex"]))
    assert raised.value.rule == case["rule"]


@pytest.mark.parametrize("case", by_name(VECTORS["invalid_text_ids"]))
def test_invalid_text_ids(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidBlobId) as raised:
        BlobId.parse(case["text"])
    assert raised.value.reason == case["reason"]


@pytest.mark.parametrize("case", by_name(VECTORS["typed"]))
def test_typed_ids(case: dict[str, Any]) -> None:
    if case["result"].startswith("tb1"):
        assert str(BlobId.from_input(case["text"])) == case["result"]
        with pytest.raises(InvalidBlobId):
            BlobId.parse(case["text"])  # read exactly, the same text is refused
    else:
        with pytest.raises(InvalidBlobId) as raised:
            BlobId.from_input(case["text"])
        assert raised.value.reason == case["result"]


def test_the_largest_id() -> None:
    assert BlobId.parse(VECTORS["largest_id"]).size == MAX_BLOB_SIZE


@pytest.mark.parametrize("case", by_name(VECTORS["whole"]))
def test_whole_blobs(case: dict[str, Any]) -> None:
    blob, data = BlobId.parse(case["blob"]), bytes.fromhex(case["data"])
    if case["rule"] is None:
        verify_blob(blob, data)
    else:
        with pytest.raises(InvalidBlob) as raised:
            verify_blob(blob, data)
        assert raised.value.rule == case["rule"]


def test_the_content_vectors_name_the_episode_blob() -> None:
    content = json.loads((ROOT / "spec" / "vectors" / "content.json").read_text("utf-8"))
    case = next(c for c in content["valid"] if c["name"] == "post-podcast-blob")
    post = decode(bytes.fromhex(case["hex"]))
    attachment = post.attachments[0]  # type: ignore[union-attr]
    assert attachment.blob == BlobId.parse(BLOBS["episode"]["id"])
    assert attachment.size == BLOBS["episode"]["size"]


# -- the wire messages (spec/13 §8) ---------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["wire"]["messages"], ids=lambda c: c["name"])
def test_blob_messages_decode_and_encode_byte_for_byte(case: dict[str, Any]) -> None:
    body = bytes.fromhex(case["body"])
    message = decode_message(body)
    assert case["type"] == message.TYPE
    assert encode_message(message) == body


@pytest.mark.parametrize("case", VECTORS["wire"]["invalid"], ids=lambda c: c["name"])
def test_malformed_blob_messages(case: dict[str, Any]) -> None:
    with pytest.raises(PeerError) as raised:
        decode_message(bytes.fromhex(case["body"]))
    assert raised.value.code == case["code"]
