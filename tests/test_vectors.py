"""The library against the published vectors in spec/vectors (see its README.md).

The vectors are loaded, never copied here; ``tools/make_vectors.py --check``
keeps them in step with the code. Lipmaa values are also checked against a
second, independent definition of the function, so a bug shared by the library
and the generator still fails.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tidings import Identity, Logbook, MemoryStore
from tidings.core.bundle import EntryRecord, ForkProofRecord, IdentityRecord, read_bundle
from tidings.core.entry import (
    FLAG_END_OF_LOG,
    FLAG_SIGNED,
    SIG_HEAD,
    decode_entry,
    encode_body,
    sign_entry,
)
from tidings.core.forks import ForkProof
from tidings.core.ids import AuthorId, FeedId, check_log_id
from tidings.core.lipmaa import certificate_pool, link_target, lipmaa
from tidings.core.verify import Anchor, check_run, decode_run, partial_seqs, verify_partial
from tidings.errors import (
    RULES,
    ForkDetected,
    InvalidBundle,
    InvalidEntry,
    InvalidForkProof,
    InvalidId,
)

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "spec" / "vectors"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


IDS = load("ids.json")
LIPMAA = load("lipmaa.json")
ENTRIES = load("entries.json")
INVALID = load("invalid.json")["cases"]
FORKS = load("forks.json")
BUNDLES = load("bundles.json")
ED25519 = load("ed25519.json")["cases"]

def by_name(cases: list[dict[str, Any]], key: str = "name") -> list[Any]:
    return [pytest.param(case, id=case[key]) for case in cases]


def unhex(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text)


def hexed(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


def items(rows: list[dict[str, Any]]) -> list[tuple[bytes, bytes | None]]:
    return [(bytes.fromhex(row["entry"]), unhex(row["payload"])) for row in rows]


# -- ids.json -------------------------------------------------------------------


@pytest.mark.parametrize("author", IDS["authors"], ids=lambda a: a["name"])
def test_author_and_feed_ids(author: dict[str, Any]) -> None:
    key = bytes.fromhex(author["public_key"])
    made = Identity.from_seed(bytes.fromhex(author["seed"])).author
    assert made.key == key
    assert str(made) == author["author_id"]
    assert AuthorId.parse(author["author_id"]) == AuthorId(key)
    for feed in author["feeds"]:
        assert str(made.feed(feed["log_id"])) == feed["feed_id"]
        parsed = FeedId.parse(feed["feed_id"])
        assert (parsed.author_key, parsed.log_id) == (key, feed["log_id"])


def test_rfc8032_seed_gives_the_published_key() -> None:
    """RFC 8032 section 7.1, TEST 1, is among the vectors: the seed -> key step is pinned."""
    seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
    key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert [a["public_key"] for a in IDS["authors"] if a["seed"] == seed] == [key]


@pytest.mark.parametrize("log_id", IDS["valid_log_ids"])
def test_valid_log_ids(log_id: str) -> None:
    assert check_log_id(log_id) == log_id


@pytest.mark.parametrize("case", IDS["invalid_log_ids"], ids=lambda c: c["description"])
def test_invalid_log_ids(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidId):
        check_log_id(case["log_id"])
    with pytest.raises(InvalidId):
        FeedId(bytes(32), case["log_id"])


@pytest.mark.parametrize("case", IDS["invalid_author_ids"], ids=lambda c: c["description"])
def test_invalid_author_ids(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidId) as raised:
        AuthorId.parse(case["text"])
    assert raised.value.reason == case["reason"]


@pytest.mark.parametrize("case", IDS["invalid_feed_ids"] + IDS["exact"],
                         ids=lambda c: c["description"])
def test_invalid_feed_ids_and_ids_in_signed_data_are_read_exactly(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidId) as raised:
        FeedId.parse(case["text"])
    assert raised.value.reason == case["reason"]


@pytest.mark.parametrize("case", IDS["typed"], ids=lambda c: c["description"])
def test_typed_ids_lose_ascii_whitespace_only(case: dict[str, Any]) -> None:
    parse = AuthorId.from_input if case["text"].strip().startswith("ta1") else FeedId.from_input
    if case["result"].startswith(("ta1", "tf1")):
        assert str(parse(case["text"])) == case["result"]
    else:
        with pytest.raises(InvalidId) as raised:
            parse(case["text"])
        assert raised.value.reason == case["result"]


# -- lipmaa.json ------------------------------------------------------------------


def reference_lipmaa(n: int) -> int:
    """lipmaa(n) from the graph's shape, written apart from the library's loop.

    The first (3^k - 1) / 2 numbers are three copies of the first (3^(k-1) - 1) / 2
    and the spine number after them. A spine number jumps back 3^(k-1); inside a
    copy, a number that is itself a spine (or the copy's last) jumps to the end of
    the copy before; any other number does what it does in the first copy, shifted.
    """
    below, spine, power = 0, 1, 1
    while spine < n:
        below, spine, power = spine, 3 * spine + 1, 3 * power
    if n == spine:
        return n - power
    copy, local = divmod(n - 1, below)
    local += 1
    inner = 1
    while inner < local:
        inner = 3 * inner + 1
    return copy * below + (0 if inner == local else reference_lipmaa(local))


def test_lipmaa_values() -> None:
    rows = LIPMAA["lipmaa"]
    assert {row["n"] for row in rows} >= set(range(1, 201))
    wrong = [row for row in rows if lipmaa(row["n"]) != row["lipmaa"]
             or link_target(row["n"]) != row["link_target"]]
    assert not wrong


def test_lipmaa_vectors_match_the_reference_definition() -> None:
    for row in LIPMAA["lipmaa"]:
        n = row["n"]
        assert reference_lipmaa(n) == row["lipmaa"], n
        # link_target is lipmaa(n) except where that repeats the backlink.
        expected = None if n == 1 or row["lipmaa"] == n - 1 else row["lipmaa"]
        assert row["link_target"] == expected, n


def test_certificate_pools() -> None:
    for row in LIPMAA["certificate_pool"]:
        assert certificate_pool(row["n"]) == row["pool"], row["n"]
        assert row["pool"] == sorted(set(row["pool"])) and row["n"] in row["pool"]


def test_partial_seqs() -> None:
    for row in LIPMAA["partial_seqs"]:
        assert partial_seqs(row["head_seq"], row["count"]) == row["seqs"], row


# -- entries.json ---------------------------------------------------------------------

LOGS = ENTRIES["logs"]
ENTRY_ROWS = [(log, row) for log in LOGS for row in log["entries"]]
SECRET = Identity.from_seed(bytes.fromhex(ENTRIES["author"]["seed"])).secret_key


def fields_of(row: dict[str, Any]) -> dict[str, Any]:
    """The vector's decoded fields as encode_body takes them."""
    out = dict(row["fields"])
    out.pop("version")
    for name in ("author", "backlink", "lipmaa_link", "payload_hash"):
        out[name] = unhex(out[name])
    return out


@pytest.mark.parametrize(
    ("log", "row"), ENTRY_ROWS, ids=[f"{log['log_id']}-{row['seq']}" for log, row in ENTRY_ROWS]
)
def test_entry_decodes_to_its_fields(log: dict[str, Any], row: dict[str, Any]) -> None:
    raw = bytes.fromhex(row["entry"])
    entry = decode_entry(raw)
    fields = row["fields"]
    assert entry.version == fields["version"]
    assert (entry.flags, entry.author.hex(), entry.log_id, entry.seq, entry.timestamp) == (
        fields["flags"], fields["author"], fields["log_id"], fields["seq"], fields["timestamp"]
    )
    assert (entry.backlink and entry.backlink.hex(), entry.lipmaa_link and
            entry.lipmaa_link.hex()) == (fields["backlink"], fields["lipmaa_link"])
    assert (entry.payload_size, entry.payload_hash.hex()) == (
        fields["payload_size"], fields["payload_hash"]
    )
    assert fields["author"] == ENTRIES["author"]["public_key"]
    assert str(entry.feed) == log["feed_id"] and entry.seq == row["seq"]
    assert entry.hash.hex() == row["hash"] == hashlib.blake2b(raw, digest_size=32).hexdigest()
    assert entry.body.hex() == row["body"]
    if row["signature"] is None:
        assert not entry.signed and raw == entry.body
    else:
        assert entry.signature.hex() == row["signature"]
        assert raw == bytes.fromhex(row["body"]) + SIG_HEAD + bytes.fromhex(row["signature"])
        entry.check_signature()
    payload = bytes.fromhex(row["payload"])
    entry.check_payload(payload)
    assert hashlib.blake2b(payload, digest_size=32).hexdigest() == fields["payload_hash"]


@pytest.mark.parametrize(
    ("log", "row"), ENTRY_ROWS, ids=[f"{log['log_id']}-{row['seq']}" for log, row in ENTRY_ROWS]
)
def test_entry_encodes_back_to_the_same_bytes(log: dict[str, Any], row: dict[str, Any]) -> None:
    fields = fields_of(row)
    assert encode_body(**fields).hex() == row["body"]
    payload = bytes.fromhex(row["payload"])
    flags = fields["flags"]
    remade = sign_entry(
        SECRET, log_id=fields["log_id"], seq=fields["seq"], timestamp=fields["timestamp"],
        payload=payload, backlink=fields["backlink"], lipmaa_link=fields["lipmaa_link"],
        signed=bool(flags & FLAG_SIGNED), end_of_log=bool(flags & FLAG_END_OF_LOG),
    )
    assert remade.raw.hex() == row["entry"]


def appends(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The rows grouped by append: each ends at a signed entry."""
    groups: list[list[dict[str, Any]]] = [[]]
    for row in rows:
        groups[-1].append(row)
        if row["fields"]["flags"] & FLAG_SIGNED:
            groups.append([])
    assert not groups[-1], "a log ends at a signed entry"
    return groups[:-1]


@pytest.mark.parametrize("log", LOGS, ids=lambda log: log["log_id"])
def test_logs_verify_however_they_are_cut(log: dict[str, Any]) -> None:
    feed = FeedId.parse(log["feed_id"])
    rows = log["entries"]
    assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))
    entries = [decode_entry(bytes.fromhex(row["entry"])) for row in rows]
    payloads = [bytes.fromhex(row["payload"]) for row in rows]
    whole = check_run(entries, Anchor(feed.author_key, feed.log_id), payloads)
    assert (whole.accepted, whole.error) == (len(rows), None)
    for cut in range(1, len(rows)):
        book = Logbook(MemoryStore())
        first = book.ingest(feed, list(zip(entries and [e.raw for e in entries[:cut]],
                                           payloads[:cut], strict=True)))
        rest = book.ingest(feed, list(zip([e.raw for e in entries[first.added:]],
                                          payloads[first.added:], strict=True)))
        assert first.error is None and rest.error is None
        assert first.added + rest.added == len(rows)
        signed = [e.seq for e in entries[:cut] if e.signed]
        assert first.added == (signed[-1] if signed else 0)
    head = [row["seq"] for row in rows if row["fields"]["flags"] & FLAG_SIGNED][-1]
    latest = partial_seqs(head, 3)
    assert [e.seq for e in verify_partial(e for e in entries if e.seq in latest)] == latest


def test_log_kinds_covered() -> None:
    """The vectors hold what entries.json promises: empty payloads, unsigned entries,
    an end of log."""
    blog, notes = LOGS
    assert blog["log_id"] == "blog" and len(blog["entries"]) >= 30
    assert any(row["payload"] == "" for row in blog["entries"])
    flags = [row["fields"]["flags"] for row in blog["entries"]]
    assert 0 in flags and flags[-1] == FLAG_SIGNED
    notes_flags = [row["fields"]["flags"] for row in notes["entries"]]
    assert notes_flags[-1] == FLAG_SIGNED | FLAG_END_OF_LOG
    assert all(not f & FLAG_END_OF_LOG for f in notes_flags[:-1])


@pytest.mark.parametrize("log", LOGS, ids=lambda log: log["log_id"])
def test_publishing_makes_the_same_entries(log: dict[str, Any]) -> None:
    """A publisher signs the last entry of each append: the vectors' appends, published
    with their timestamps, give the same bytes."""
    groups = appends(log["entries"])
    timestamps = iter(group[0]["fields"]["timestamp"] for group in groups)
    book = Logbook(MemoryStore(), Identity.from_seed(bytes.fromhex(ENTRIES["author"]["seed"])),
                   clock=lambda: next(timestamps))
    for group in groups:
        assert len({row["fields"]["timestamp"] for row in group}) == 1
        ended = bool(group[-1]["fields"]["flags"] & FLAG_END_OF_LOG)
        made = book.publish_batch([bytes.fromhex(row["payload"]) for row in group],
                                  log["log_id"], end_of_log=ended)
        assert [e.raw.hex() for e in made] == [row["entry"] for row in group]


# -- invalid.json -------------------------------------------------------------------------

INGEST = [case for case in INVALID if case["kind"] == "ingest"]
PARTIAL = [case for case in INVALID if case["kind"] == "partial"]


def test_every_rule_has_a_vector() -> None:
    assert {case["rule"] for case in INVALID} - {None} == set(RULES)
    assert len({case["name"] for case in INVALID}) == len(INVALID)


def check_error(exc: BaseException | None, case: dict[str, Any]) -> None:
    expected = case["expected"]
    if case["rule"] is None:
        assert exc is None, repr(exc)
        return
    assert type(exc) is RULES[case["rule"]], f"{type(exc).__name__}: {exc}"
    assert isinstance(exc, InvalidEntry)
    assert exc.seq == expected["seq"], str(exc)
    assert exc.feed == case["feed"], str(exc)


def node_with_context(case: dict[str, Any]) -> tuple[Logbook, FeedId]:
    book = Logbook(MemoryStore())
    feed = FeedId.parse(case["feed"])
    context = items(case["context"]["entries"])
    if context:
        assert book.ingest(feed, context).added == len(context)
    for proof in case["context"]["fork_proofs"]:
        assert book.add_fork_proof(ForkProof.from_bytes(bytes.fromhex(proof)))
    return book, feed


@pytest.mark.parametrize("case", by_name(INGEST))
def test_invalid_ingest(case: dict[str, Any]) -> None:
    book, feed = node_with_context(case)
    expected = case["expected"]
    result = book.ingest(feed, items(case["input"]))
    check_error(result.error, case)
    assert (result.added, result.pending) == (
        len([row for row in case["input"][: expected["stored"]]
             if row["entry"] not in {c["entry"] for c in case["context"]["entries"]}]),
        expected["pending"])
    held = [row.raw.hex() for row in book.store.entries(feed)]
    context = [row["entry"] for row in case["context"]["entries"]]
    stored = [row["entry"] for row in case["input"][: expected["stored"]]]
    assert held == context + [entry for entry in stored if entry not in context]
    proofs = list(case["context"]["fork_proofs"])
    if "fork_proof" in expected:  # the node made a proof of the fork and keeps it
        assert isinstance(result.error, ForkDetected) and result.error.proof is not None
        assert result.error.proof.to_bytes().hex() == expected["fork_proof"]
        assert book.store.forked_at(feed) == expected["seq"]
        proofs.append(expected["fork_proof"])
    elif isinstance(result.error, ForkDetected):
        assert result.error.proof is None
    assert result.split_below == expected.get("split_below")
    assert sorted(p.to_bytes().hex() for p in book.fork_proofs(feed)) == sorted(proofs)


@pytest.mark.parametrize("case", by_name([case for case in INGEST if case["run"]]))
def test_invalid_run(case: dict[str, Any]) -> None:
    """The same cases through the pure verifier, anchored on the context's description."""
    feed = FeedId.parse(case["feed"])
    anchor_data = case["context"]["anchor"]
    anchor = Anchor(
        feed.author_key, feed.log_id, anchor_data["head_seq"], anchor_data["ended"],
        {row["seq"]: bytes.fromhex(row["hash"]) for row in anchor_data["known"]},
    )
    run = items(case["input"])
    first = anchor.head_seq + 1
    try:
        entries = decode_run([raw for raw, _ in run], feed, first)
    except InvalidEntry as exc:
        check_error(exc, case)
        return
    result = check_run(entries, anchor, [payload for _, payload in run])
    check_error(result.error, case)
    assert result.accepted == case["expected"]["stored"]
    assert result.pending == case["expected"]["pending"]


@pytest.mark.parametrize("case", by_name([case for case in INGEST if case["standalone"]]))
def test_invalid_standalone(case: dict[str, Any]) -> None:
    """Rules an entry breaks on its own: no context, no seq to report."""
    raw, payload = items(case["input"])[case["expected"]["index"]]
    with pytest.raises(InvalidEntry) as raised:
        entry = decode_entry(raw)
        if entry.signed:
            entry.check_signature()
        if payload is not None:
            entry.check_payload(payload)
    assert type(raised.value) is RULES[case["rule"]], str(raised.value)


@pytest.mark.parametrize("case", by_name(PARTIAL))
def test_invalid_partial(case: dict[str, Any]) -> None:
    """Partial answers: decoded entry by entry (a failure has no seq), then P1-P10."""
    with pytest.raises(InvalidEntry) as raised:
        entries = []
        for raw, _ in items(case["input"]):
            try:
                entries.append(decode_entry(raw))
            except InvalidEntry as exc:
                raise exc.at(case["feed"], None) from None
        payloads = {e.seq: p for e, (_, p) in zip(entries, items(case["input"]), strict=True)
                    if p is not None}
        verify_partial(entries, payloads)
    check_error(raised.value, case)


# -- ed25519.json ------------------------------------------------------------------------


@pytest.mark.parametrize("case", by_name(ED25519))
def test_ed25519_edge_cases(case: dict[str, Any]) -> None:
    entry = decode_entry(bytes.fromhex(case["entry"]))
    assert entry.author.hex() == case["author"]
    if case["valid"]:
        entry.check_signature()
    else:
        with pytest.raises(InvalidEntry) as raised:
            entry.check_signature()
        assert raised.value.rule == case["rule"]


def test_ed25519_cases_cover_the_disagreements() -> None:
    names = {case["name"] for case in ED25519}
    assert {"s-not-reduced", "small-order-r", "cofactored-only", "mixed-order-key"} <= names
    # At least one case where the plain primitive and the spec disagree.
    assert any(case["openssl_accepts"] != case["valid"] for case in ED25519)


# -- forks.json -------------------------------------------------------------------------


@pytest.mark.parametrize("case", FORKS["valid"], ids=lambda c: c["description"])
def test_valid_fork_proofs(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["proof"])
    proof = ForkProof.from_bytes(data)
    assert (str(proof.feed), proof.seq) == (case["feed"], case["seq"])
    assert [e.raw.hex() for e in proof.first] == case["first"]
    assert [e.raw.hex() for e in proof.second] == case["second"]
    assert proof.to_bytes() == data
    first, second = ([decode_entry(bytes.fromhex(h)) for h in case[k]]
                     for k in ("first", "second"))
    assert ForkProof.from_runs(second, first).to_bytes() == data


def test_the_largest_proof_is_the_bound() -> None:
    from tidings.core.forks import MAX_PROOF_SIZE

    assert FORKS["max_proof_size"] == MAX_PROOF_SIZE


@pytest.mark.parametrize("case", by_name(FORKS["invalid"], "description"))
def test_invalid_fork_proofs(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidForkProof) as raised:
        ForkProof.from_bytes(bytes.fromhex(case["proof"]))
    assert raised.value.reason == case["reason"]


# -- bundles.json -----------------------------------------------------------------------


def import_bundle(data: bytes) -> tuple[Logbook, Any]:
    book = Logbook(MemoryStore())
    return book, book.import_bundle(io.BytesIO(data).read)


def check_outcome(book: Logbook, result: Any, expected: dict[str, Any]) -> None:
    """An import's result and what the node holds afterwards, against ``expected``."""
    error, want = result.error, expected["error"]
    if want is None:
        assert error is None, repr(error)
    elif want["kind"] == "InvalidEntry":
        assert type(error) is RULES[want["rule"]], f"{type(error).__name__}: {error}"
        assert (error.seq, error.feed) == (want["seq"], want["feed"]), str(error)
    else:
        assert type(error) is {"InvalidBundle": InvalidBundle,
                               "InvalidForkProof": InvalidForkProof}[want["kind"]], repr(error)
    assert (result.added, result.fork_proofs) == (expected["added"], expected["fork_proofs"])
    assert sum(info.latest_seq for info in book.store.feeds()) == expected["added"]
    assert all(info.forked_at == expected["forked_at"] for info in book.store.feeds())


@pytest.mark.parametrize("case", BUNDLES["valid"], ids=lambda c: c["description"][:40])
def test_valid_bundles(case: dict[str, Any]) -> None:
    data = bytes.fromhex(case["bundle"])
    records = []
    for record in read_bundle(io.BytesIO(data).read):
        if isinstance(record, EntryRecord):
            records.append({"kind": "entry", "entry": record.entry.hex(),
                            "payload": hexed(record.payload)})
        else:
            assert isinstance(record, ForkProofRecord)
            records.append({"kind": "fork_proof", "proof": record.proof.hex()})
    assert records == case["records"]

    book, result = import_bundle(data)
    check_outcome(book, result, case["expected"])
    feed = FeedId.parse(case["feed"])
    held = [{"kind": "entry", "entry": row.raw.hex(), "payload": hexed(row.payload)}
            for row in book.store.entries(feed)]
    assert held == [r for r in case["records"] if r["kind"] == "entry"][: len(held)]
    out = io.BytesIO()
    book.export_bundle(feed, out.write)
    assert out.getvalue().hex() == case["reexport"]
    again = book.import_bundle(io.BytesIO(data).read)  # what it stored is a duplicate now
    assert (again.added, again.fork_proofs, again.duplicates) == (0, 0, len(held))
    assert type(again.error) is type(result.error)


@pytest.mark.parametrize("case", BUNDLES["identity"], ids=lambda c: c["description"][:40])
def test_bundles_with_identity_records(case: dict[str, Any]) -> None:
    from tidings.core.kel import fold

    data = bytes.fromhex(case["bundle"])
    records = []
    for record in read_bundle(io.BytesIO(data).read):
        if isinstance(record, IdentityRecord):
            records.append({"kind": "identity", "identity": record.identity.hex(),
                            "event": record.event.hex()})
        else:
            assert isinstance(record, EntryRecord)
            records.append({"kind": "entry", "entry": record.entry.hex(),
                            "payload": hexed(record.payload)})
    assert records == case["records"]
    book, result = import_bundle(data)
    check_outcome(book, result, case["expected"])
    assert len(result.identity_events) == case["expected"]["identity_events"]
    identity = bytes.fromhex(case["identity"])
    assert {i for i, _ in result.identity_events} == {identity}
    state = fold(identity, [raw for _, raw in result.identity_events])
    assert sorted(key.hex() for key in state.devices) == case["devices"]
    out = io.BytesIO()
    book.export_bundle(FeedId.parse(case["feed"]), out.write,
                       identity_events=result.identity_events)
    assert out.getvalue() == data


@pytest.mark.parametrize("case", by_name(BUNDLES["damaged"]))
def test_damaged_bundles(case: dict[str, Any]) -> None:
    book, result = import_bundle(bytes.fromhex(case["bundle"]))
    assert case["expected"]["error"] is not None
    check_outcome(book, result, case["expected"])


# -- the vectors match the code that makes them -------------------------------------------


@pytest.mark.system
def test_vectors_are_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_vectors.py"), "--check"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
