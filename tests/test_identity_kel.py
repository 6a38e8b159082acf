"""The key event log (spec/12 §3-§6): events, every rule, forks and their resolution.

Tests are named after the rule or section they check. Hypothesis checks that
the fold is a function of the set of events (any order, any repetition) and
that nodes that keep what §6.1 says and exchange what they serve end with the
state of the union.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import examples
from tests.identity_helpers import Owner, key, pub
from tidings.core import kel
from tidings.core.kel import (
    APPLIED,
    DISPUTED,
    PENDING,
    SUPERSEDED,
    Cut,
    IdentityLog,
    InvalidIdentityEvent,
    Revocation,
    decode_event,
    fold,
)
from tidings.errors import InvalidId

HASH = bytes(range(32))


def body_fields(event: kel.Event) -> list[Any]:
    return list(cbor2.loads(event.body))


def outcome(owner: Owner, raw: bytes, extra: list[bytes] | None = None) -> str:
    state = fold(owner.identity, [*owner.raws(), *(extra or []), raw])
    return state.outcomes[kel.event_hash(raw)]


# -- §2 identity ids ---------------------------------------------------------------


def test_identity_id_is_the_hash_of_the_inception_and_reads_back() -> None:
    owner = Owner()
    inception = owner.events[0]
    assert owner.identity == kel.event_hash(inception.raw)
    text = kel.format_identity(owner.identity)
    assert text.startswith("ti1") and len(text) == 58
    assert kel.parse_identity(text) == owner.identity
    assert kel.parse_identity_input(f" \t{text}\n") == owner.identity


@pytest.mark.parametrize(("mangle", "reason"), [
    (lambda t: "ta1" + t[3:], "wrong-prefix"),
    (lambda t: t[:-1], "bad-length"),
    (lambda t: t[:10] + "A" + t[11:], "bad-chars"),
    (lambda t: t[:10] + ("b" if t[10] != "b" else "c") + t[11:], "bad-checksum"),
])
def test_identity_id_refusals(mangle: object, reason: str) -> None:
    text = kel.format_identity(Owner().identity)
    with pytest.raises(InvalidId) as caught:
        kel.parse_identity(mangle(text))  # type: ignore[operator]
    assert caught.value.reason == reason


# -- §3 events and their fold --------------------------------------------------------


def test_device_add_and_revoke_with_cuts() -> None:
    owner = Owner()
    owner.add("laptop")
    owner.add("phone", "Ana's phone")
    cut = Cut("blog", 7, HASH)
    owner.revoke("phone", [cut])
    state = owner.state()
    assert state.status == "active" and state.seq == 4
    laptop, phone = state.devices[pub("laptop")], state.devices[pub("phone")]
    assert laptop.active and laptop.name == "laptop" and laptop.added_seq == 2
    assert not phone.active and phone.revoked_seq == 4 and phone.name == "Ana's phone"
    assert phone.limit("blog") == cut and phone.limit("notes") is None
    assert state.counts(pub("phone"), "blog", 7) and not state.counts(pub("phone"), "blog", 8)
    assert not state.counts(pub("phone"), "notes", 1)
    assert state.counts(pub("laptop"), "anything", 10**9)
    assert not state.counts(pub("stranger"), "blog", 1)


def test_rotation_reveals_the_committed_next_key_and_keeps_devices() -> None:
    owner = Owner()
    owner.add("laptop")
    rotation = owner.rotate([Revocation(pub("laptop"), (Cut("blog", 3, HASH),))])
    assert rotation.next_key == pub("next1") and rotation.root_key == pub("root1")
    assert rotation.est == owner.identity
    owner.add("phone")  # signed by root1 now
    state = owner.state()
    assert state.status == "active" and state.root_key == pub("root1")
    assert state.next_digest == kel.key_digest(pub("next2"))
    assert state.est == rotation.hash
    assert state.rotations == ((3, pub("root1")),)
    assert not state.devices[pub("laptop")].active
    assert state.devices[pub("phone")].active
    second = owner.rotate()
    assert second.est == rotation.hash and owner.state().root_key == pub("root2")


def test_events_encode_back_to_their_bytes() -> None:
    owner = Owner()
    owner.add("laptop")
    owner.revoke("laptop", [Cut("a", 1, HASH), Cut("b", 2, HASH)])
    owner.rotate()
    for event in owner.events:
        again = decode_event(event.raw)
        assert again == event and again.raw == event.raw
        assert cbor2.dumps(body_fields(event)) == event.body


def test_fold_ignores_order_and_repetition() -> None:
    owner = Owner()
    owner.add("laptop")
    owner.rotate()
    owner.add("phone")
    raws = owner.raws()
    assert fold(owner.identity, raws[::-1] + raws) == fold(owner.identity, raws)


# -- §5 rules, each refused with its name --------------------------------------------


def test_rule_oversize() -> None:
    owner = Owner()
    assert outcome(owner, b"\x00" * (kel.MAX_EVENT_SIZE + 1)) == "oversize"


@pytest.mark.parametrize("raw", [
    b"", b"\xff", b"\x01", cbor2.dumps([]), cbor2.dumps({"a": 1}),
])
def test_rule_malformed_bytes(raw: bytes) -> None:
    with pytest.raises(InvalidIdentityEvent) as caught:
        decode_event(raw)
    assert caught.value.rule == "malformed"


def test_rule_malformed_fields() -> None:
    owner = Owner()
    add = owner.add("laptop", keep=False)
    fields = body_fields(add)
    cases = [
        [*fields[:5], fields[5][:31], *fields[6:]],  # short device key
        [*fields[:1], 9, *fields[2:]],  # unknown kind
        [*fields, 0],  # extra field
        [*fields[:6], "", fields[7]],  # empty name
        [*fields[:6], "a\nb", fields[7]],  # control character in the name
        [*fields[:3], 1, *fields[4:]],  # seq 1 that is not an inception
    ]
    for bad in cases:
        assert outcome(owner, kel.resign(owner.root, bad)) == "malformed"
    revoke = owner.revoke("laptop", [Cut("a", 1, HASH), Cut("b", 1, HASH)], keep=False,
                          state=owner.state([*owner.events, add]))
    fields = body_fields(revoke)
    unsorted = [*fields[:6], [fields[6][1], fields[6][0]]]
    with pytest.raises(InvalidIdentityEvent) as caught:
        decode_event(kel.resign(owner.root, unsorted))
    assert caught.value.rule == "malformed"
    unsigned = revoke.body  # no signature after the body
    with pytest.raises(InvalidIdentityEvent):
        decode_event(unsigned)


def test_rule_unknown_version() -> None:
    owner = Owner()
    fields = body_fields(owner.add("laptop", keep=False))
    assert outcome(owner, kel.resign(owner.root, [2, *fields[1:]])) == "unknown-version"


def test_rule_non_canonical() -> None:
    owner = Owner()
    add = owner.add("laptop", keep=False)
    body = add.body
    # seq 2 with a one-byte head (18 02) instead of 02: same value, longer bytes
    at = 3 + 34  # array head, version, kind, identity (58 20 + 32 bytes); then seq
    assert body[at] == 2
    longer = body[:at] + b"\x18\x02" + body[at + 1:]
    raw = longer + kel.SIG_HEAD + owner.root.sign(longer)
    assert outcome(owner, raw) == "non-canonical"


def test_rule_kel_full() -> None:
    owner = Owner()
    fields = body_fields(owner.add("laptop", keep=False))
    fields[3] = kel.MAX_KEL_SEQ + 1
    assert outcome(owner, kel.resign(owner.root, fields)) == "kel-full"


def test_rule_wrong_identity() -> None:
    owner, other = Owner(), Owner("other-")
    foreign = other.add("laptop", keep=False)
    assert outcome(owner, foreign.raw) == "wrong-identity"
    assert outcome(owner, other.events[0].raw) == "wrong-identity"


def test_rule_wrong_seq() -> None:
    owner = Owner()
    owner.add("laptop")
    fields = body_fields(owner.add("phone", keep=False))
    fields[4] = owner.identity  # names seq 1, but says seq 3
    assert outcome(owner, kel.resign(owner.root, fields)) == "wrong-seq"


def test_rule_invalid_ancestor() -> None:
    owner = Owner()
    bad = owner.add("laptop", signer=key("mallory"), keep=False)
    child = owner.add("phone", state=owner.state([*owner.events]), keep=False)
    fields = body_fields(child)
    fields[4] = bad.hash
    fields[3] = 3
    child_raw = kel.resign(owner.root, fields)
    state = fold(owner.identity, [*owner.raws(), bad.raw, child_raw])
    assert state.outcomes[bad.hash] == "bad-signature"
    assert state.outcomes[kel.event_hash(child_raw)] == "invalid-ancestor"


def test_rule_wrong_establishment_and_next_key_mismatch() -> None:
    owner = Owner()
    owner.add("laptop")
    rotation = owner.rotate(keep=False)
    fields = body_fields(rotation)
    wrong_est = [*fields[:5], HASH, *fields[6:]]
    assert outcome(owner, kel.resign(owner.next, wrong_est)) == "wrong-establishment"
    # A thief with the current root key cannot rotate: it has no committed next key.
    thief = [*fields[:6], pub("root0"), *fields[7:]]
    assert outcome(owner, kel.resign(owner.root, thief)) == "next-key-mismatch"
    # The right key revealed, but the signature is another's.
    assert outcome(owner, kel.resign(owner.root, fields)) == "bad-signature"


def test_rule_stale_key_a_device_certified_by_a_rotated_away_root() -> None:
    owner = Owner()
    owner.rotate()
    stale = owner.add("laptop", signer=key("root0"), keep=False)
    assert outcome(owner, stale.raw) == "stale-key"


def test_rule_bad_signature_a_forged_certificate() -> None:
    owner = Owner()
    forged = owner.add("laptop", signer=key("mallory"), keep=False)
    assert outcome(owner, forged.raw) == "bad-signature"
    inception = kel.make_inception(key("root0"), pub("next1"))
    fields = body_fields(inception)
    stolen_id = kel.resign(key("mallory"), fields)  # someone else signs the same body
    assert fold(kel.event_hash(stolen_id), [stolen_id]).outcomes[
        kel.event_hash(stolen_id)] == "bad-signature"


def test_rule_bad_key() -> None:
    owner = Owner()
    fields = body_fields(owner.rotate(keep=False))
    fields[7] = bytes([1]) + bytes(31)  # the identity point: no one holds it
    assert outcome(owner, kel.resign(owner.next, fields)) == "bad-key"


def test_rule_key_reuse() -> None:
    owner = Owner()
    root_as_device = kel.make_device_add(
        owner.root, owner.state(), pub("root0"), "root",
        kel.sign_device_claim(key("root0"), owner.identity, "root"))
    assert outcome(owner, root_as_device.raw) == "key-reuse"
    next_as_device = kel.make_device_add(
        owner.root, owner.state(), pub("next1"), "next",
        kel.sign_device_claim(key("next1"), owner.identity, "next"))
    assert outcome(owner, next_as_device.raw) == "key-reuse"
    back_to_old_root = kel.make_rotation(owner.next, owner.state(), pub("root0"), pub("next2"))
    assert outcome(owner, back_to_old_root.raw) == "key-reuse"
    next_is_root = kel.make_rotation(owner.next, owner.state(), pub("root1"), pub("root1"))
    assert outcome(owner, next_is_root.raw) == "key-reuse"
    same = kel.make_inception(key("root0"), pub("root0"))
    assert fold(same.hash, [same.raw]).outcomes[same.hash] == "key-reuse"


def test_rule_bad_device_signature() -> None:
    owner, other = Owner(), Owner("other-")
    # The device agreed to join another identity: its claim does not name this one.
    elsewhere = kel.sign_device_claim(key("laptop"), other.identity, "laptop")
    event = kel.make_device_add(owner.root, owner.state(), pub("laptop"), "laptop", elsewhere)
    assert outcome(owner, event.raw) == "bad-device-signature"
    # Someone else's key, enrolled without its holder: no signature from it.
    unsigned = kel.make_device_add(owner.root, owner.state(), pub("alice-device"), "alice",
                                   bytes(64))
    assert outcome(owner, unsigned.raw) == "bad-device-signature"


def test_rules_device_exists_device_revoked_not_a_device_already_revoked() -> None:
    owner = Owner()
    owner.add("laptop")
    assert outcome(owner, owner.add("laptop", keep=False).raw) == "device-exists"
    assert outcome(owner, owner.revoke("phone", keep=False).raw) == "not-a-device"
    owner.revoke("laptop")
    assert outcome(owner, owner.add("laptop", keep=False).raw) == "device-revoked"
    assert outcome(owner, owner.revoke("laptop", keep=False).raw) == "already-revoked"
    twice = owner.rotate([Revocation(pub("laptop"), ())], keep=False)
    assert outcome(owner, twice.raw) == "already-revoked"


def test_rule_too_many_devices() -> None:
    owner = Owner()
    raws = owner.raws()
    prev, root = owner.identity, owner.root
    for seq in range(2, kel.MAX_DEVICES + 3):
        device = key(f"device{seq}")
        name = f"d{seq}"
        fields = [1, kel.DEVICE_ADD, owner.identity, seq, prev, kel.public_bytes(device), name,
                  kel.sign_device_claim(device, owner.identity, name)]
        raw = kel.resign(root, fields)
        raws.append(raw)
        prev = kel.event_hash(raw)
    state = fold(owner.identity, raws)
    assert sum(d.active for d in state.devices.values()) == kel.MAX_DEVICES
    assert state.outcomes[prev] == "too-many-devices"


# -- §5.4 forks, supersession, death --------------------------------------------------


def test_a_rotation_supersedes_what_a_thief_signed_with_the_current_root() -> None:
    owner = Owner()
    owner.add("laptop")
    thief_add = owner.add("thief-device", keep=False)  # root0 stolen
    thief_more = owner.revoke("laptop", state=owner.state([*owner.events, thief_add]),
                              keep=False)
    robbed = fold(owner.identity, [*owner.raws(), thief_add.raw, thief_more.raw])
    assert robbed.status == "active" and pub("thief-device") in robbed.devices
    assert not robbed.devices[pub("laptop")].active
    # The owner rotates from the last event it trusts: seq 2.
    rotation = owner.rotate(after_seq=2)
    assert rotation.seq == 3
    state = fold(owner.identity, [*owner.raws(), thief_add.raw, thief_more.raw])
    assert state.status == "active" and state.chain[-1] == rotation.hash
    assert pub("thief-device") not in state.devices
    assert state.devices[pub("laptop")].active
    assert state.outcomes[thief_add.hash] == SUPERSEDED
    assert state.outcomes[thief_more.hash] == SUPERSEDED
    # The thief cannot go on: root0 is rotated away on the chain.
    late = owner.add("thief-2", signer=key("root0"), keep=False)
    assert outcome(owner, late.raw) == "stale-key"


def test_a_rotation_vouches_for_the_branch_it_follows() -> None:
    owner = Owner()
    mine = owner.add("laptop")
    thief = owner.add("thief-device", state=owner.state(owner.events[:1]), keep=False)
    forked = fold(owner.identity, [*owner.raws(), thief.raw])
    assert forked.status == "forked" and forked.fork_seq == 2 and forked.seq == 1
    assert forked.fork_proof == tuple(sorted([mine.hash, thief.hash]))
    assert forked.devices == {}
    assert {forked.outcomes[mine.hash], forked.outcomes[thief.hash]} == {DISPUTED}
    with pytest.raises(ValueError):
        forked.position()
    # A rotation after the owner's own branch keeps it.
    owner.rotate()
    state = fold(owner.identity, [*owner.raws(), thief.raw])
    assert state.status == "active" and state.seq == 3
    assert state.outcomes[thief.hash] == SUPERSEDED
    assert list(state.devices) == [pub("laptop")]


def test_a_forked_log_is_decided_by_a_rotation_after_its_last_undisputed_event() -> None:
    owner = Owner()
    a = owner.add("laptop", keep=False)
    b = owner.add("phone", keep=False)
    forked = fold(owner.identity, [*owner.raws(), a.raw, b.raw])
    rotation = kel.make_rotation(owner.next, forked, pub("root1"), pub("next2"))
    state = fold(owner.identity, [*owner.raws(), a.raw, b.raw, rotation.raw])
    assert state.status == "active" and state.chain == (owner.identity, rotation.hash)
    assert state.outcomes[a.hash] == state.outcomes[b.hash] == SUPERSEDED


def test_two_rotations_revealing_one_next_key_kill_the_identity() -> None:
    owner = Owner()
    owner.add("laptop")
    first = owner.rotate(keep=False)
    second = kel.make_rotation(owner.next, owner.state(), pub("thief-root"), pub("thief-next"))
    state = fold(owner.identity, [*owner.raws(), first.raw, second.raw])
    assert state.status == "dead" and state.dead_seq == 1
    assert state.dead_proof == tuple(sorted([first.hash, second.hash]))
    assert state.seq == 1 and state.devices == {}
    with pytest.raises(ValueError):
        state.position(rotation=True)


def test_a_doubled_next_key_is_dead_even_when_one_rotation_hangs_off_an_unknown_event() -> None:
    owner = Owner()
    hidden = owner.add("thief-device", keep=False)
    rotation_after_hidden = kel.make_rotation(
        owner.next, owner.state([*owner.events, hidden]), pub("thief-root"), pub("thief-next"))
    owner.rotate()
    state = fold(owner.identity, [*owner.raws(), rotation_after_hidden.raw])
    assert state.status == "dead"
    assert kel.event_hash(rotation_after_hidden.raw) in state.dead_proof


def test_pending_events_wait_for_the_event_they_name() -> None:
    owner = Owner()
    owner.add("laptop")
    owner.add("phone")
    early = fold(owner.identity, [owner.raws()[0], owner.raws()[2]])
    assert early.seq == 1 and early.outcomes[owner.events[2].hash] == PENDING
    assert fold(owner.identity, owner.raws()[1:]).status == "unknown"
    assert fold(owner.identity, owner.raws()).seq == 3


def test_the_stolen_laptop_recovery() -> None:
    """The root key was on a stolen laptop: rotate with the offline next key,
    revoke the laptop with cuts at what it wrote before the theft."""
    owner = Owner()
    owner.add("laptop")
    owner.add("phone")
    cut = Cut("blog", 12, HASH)
    owner.rotate([Revocation(pub("laptop"), (cut,))])
    state = owner.state()
    assert state.devices[pub("laptop")].limit("blog") == cut
    assert state.devices[pub("phone")].active and state.root_key == pub("root1")


def test_the_log_a_node_keeps_and_serves() -> None:
    owner = Owner()
    owner.add("laptop")
    thief = owner.add("thief-device", state=owner.state(owner.events[:1]), keep=False)
    orphan_fields = body_fields(owner.add("phone", keep=False))
    orphan_fields[4] = HASH  # names an event nobody has
    orphan = kel.resign(owner.root, orphan_fields)
    log = IdentityLog(owner.identity, [*owner.raws(), thief.raw, orphan])
    assert log.state.status == "forked"
    assert set(log.events()) == {*owner.raws(), thief.raw, orphan}
    assert orphan not in log.state.served()
    owner.rotate()
    log.add(owner.raws())
    assert log.state.status == "active"
    assert thief.raw not in log.events()  # superseded: never needed again


# -- Hypothesis: one answer for one set of events -------------------------------------

ACTIONS = ["add", "add", "revoke", "rotate", "thief", "stale", "double", "orphan"]


def build_history(actions: list[str]) -> tuple[bytes, list[bytes]]:
    """An owner's log with adversaries' events mixed in, from a list of actions."""
    owner = Owner()
    others: list[bytes] = []
    devices = itertools.count()
    before_rotation: kel.IdentityState | None = None
    for action in actions:
        state = owner.state()
        if action == "add":
            owner.add(f"d{next(devices)}")
        elif action == "revoke":
            active = sorted(k for k, d in state.devices.items() if d.active)
            if active:
                event = kel.make_device_revoke(owner.root, state, active[0],
                                               [Cut("blog", 5, HASH)])
                owner.events.append(event)
        elif action == "rotate":
            before_rotation = state
            owner.rotate([Revocation(k, ()) for k in sorted(state.devices)
                          if state.devices[k].active][:1])
        elif action == "thief":  # the current root key, stolen
            others.append(owner.add(f"t{next(devices)}", keep=False).raw)
        elif action == "stale" and before_rotation is not None:  # a rotated-away root
            device = f"s{next(devices)}"
            others.append(kel.make_device_add(
                key(f"root{owner.epoch - 1}"), before_rotation, pub(device), "s",
                kel.sign_device_claim(key(device), owner.identity, "s")).raw)
        elif action == "double":  # the next key, stolen
            others.append(kel.make_rotation(owner.next, state, pub(f"x{len(others)}"),
                                            pub(f"y{len(others)}")).raw)
        elif action == "orphan":
            fields = body_fields(owner.add(f"o{next(devices)}", keep=False))
            fields[4] = bytes([len(others)]) * 32
            others.append(kel.resign(owner.root, fields))
    return owner.identity, [*owner.raws(), *others]


histories = st.lists(st.sampled_from(ACTIONS), max_size=10).map(build_history)


@settings(deadline=None, max_examples=examples(60), suppress_health_check=[HealthCheck.too_slow])
@given(histories, st.randoms(use_true_random=False))
def test_fold_is_a_function_of_the_set_of_events(
    history: tuple[bytes, list[bytes]], rnd: random.Random
) -> None:
    identity, raws = history
    expected = fold(identity, raws)
    shuffled = raws + rnd.sample(raws, k=len(raws) // 2)
    rnd.shuffle(shuffled)
    again = fold(identity, shuffled)
    assert again == expected
    assert again.outcomes == expected.outcomes


@settings(deadline=None, max_examples=examples(60), suppress_health_check=[HealthCheck.too_slow])
@given(histories, st.randoms(use_true_random=False))
def test_a_node_fed_any_partition_ends_with_the_state_of_the_union(
    history: tuple[bytes, list[bytes]], rnd: random.Random
) -> None:
    identity, raws = history
    batches: list[list[bytes]] = [[] for _ in range(rnd.randint(1, 5))]
    for raw in rnd.sample(raws, k=len(raws)):
        rnd.choice(batches).append(raw)
    log = IdentityLog(identity)
    for batch in batches:
        log.add(batch)
    assert log.state == fold(identity, raws)


@settings(deadline=None, max_examples=examples(40), suppress_health_check=[HealthCheck.too_slow])
@given(histories, st.randoms(use_true_random=False))
def test_nodes_that_exchange_what_they_serve_agree(
    history: tuple[bytes, list[bytes]], rnd: random.Random
) -> None:
    identity, raws = history
    held: list[list[bytes]] = [[], [], []]
    for raw in raws:
        for node in rnd.sample(range(3), k=rnd.randint(1, 3)):
            held[node].append(raw)
    nodes = [IdentityLog(identity, events) for events in held]
    for _ in range(4):  # every pair, both ways, until nothing changes
        before = [n.events() for n in nodes]
        for a, b in itertools.permutations(nodes, 2):
            b.add(a.state.served())
        if [n.events() for n in nodes] == before:
            break
    expected = fold(identity, raws)
    for log in nodes:
        assert log.state == expected


def test_an_honest_history_is_applied_whole() -> None:
    identity, raws = build_history(["add", "add", "revoke", "rotate", "add", "rotate"])
    state = fold(identity, raws)
    assert state.status == "active" and state.seq == len(raws)
    assert all(state.outcomes[kel.event_hash(r)] == APPLIED for r in raws)
