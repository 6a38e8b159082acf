"""The merged view (spec/12 §7): one blog from the laptop's and the phone's feeds."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import examples
from tests.identity_helpers import Owner, key, pub
from tidings.core.entry import Entry, sign_entry
from tidings.core.kel import Cut, IdentityLog, Revocation
from tidings.core.lipmaa import link_target
from tidings.core.merge import merge

T0 = 1_700_000_000_000_000


def write(device: str, log_id: str, timestamps: list[int], *, tag: bytes = b"",
          tag_from: int = 1) -> list[Entry]:
    """A device feed whose entry i has timestamps[i]; every entry signed. Entries
    from ``tag_from`` on have ``tag`` in their payload (another history)."""
    entries: list[Entry] = []
    for seq, timestamp in enumerate(timestamps, start=1):
        target = link_target(seq)
        entries.append(sign_entry(
            key(device), log_id=log_id, seq=seq, timestamp=timestamp,
            payload=(tag if seq >= tag_from else b"") + f"{device} {seq}".encode(),
            backlink=entries[-1].hash if seq > 1 else None,
            lipmaa_link=entries[target - 1].hash if target is not None else None))
    return entries


def test_two_devices_make_one_blog_in_timestamp_order() -> None:
    owner = Owner()
    owner.add("laptop")
    owner.add("phone")
    laptop = write("laptop", "blog", [T0 + 10, T0 + 30, T0 + 30])
    phone = write("phone", "blog", [T0 + 20, T0 + 30])
    notes = write("phone", "notes", [T0])
    stranger = write("stranger", "blog", [T0 + 15])
    view = merge(owner.state(), "blog", [*phone, *notes, *stranger, *laptop])
    order = [(item.device_key, item.seq) for item in view]
    tie = sorted([(pub("laptop"), 2), (pub("laptop"), 3), (pub("phone"), 2)])
    assert order == [(pub("laptop"), 1), (pub("phone"), 1), *tie]
    assert all(item.feed.log_id == "blog" for item in view)
    assert view[0].entry == laptop[0] and view[0].timestamp == T0 + 10


def test_a_revoked_device_counts_up_to_its_cut_and_only_with_the_pinned_entry() -> None:
    owner = Owner()
    owner.add("laptop")
    owner.add("phone")
    phone = write("phone", "blog", [T0 + i for i in range(5)])
    owner.rotate([Revocation(pub("phone"), (Cut("blog", 3, phone[2].hash),))])
    state = owner.state()
    assert [i.seq for i in merge(state, "blog", phone)] == [1, 2, 3]
    # Only the entries below the cut held: they count until the cut's entry says otherwise.
    assert [i.seq for i in merge(state, "blog", phone[:2])] == [1, 2]
    # The reader holds another entry at the cut's seq: another history, none of it counts.
    other = write("phone", "blog", [T0 + i for i in range(5)], tag=b"other ")
    assert merge(state, "blog", other) == []
    # Two histories below the cut, the cut's own entry not held: none of it counts.
    forked = write("phone", "blog", [T0 + i for i in range(5)], tag=b"y", tag_from=2)
    assert merge(state, "blog", [*phone[:2], *forked[:2]]) == []
    # A feed without a cut: nothing of it counts.
    assert merge(state, "notes", write("phone", "notes", [T0])) == []


def test_a_devices_forked_feed_counts_below_the_fork() -> None:
    owner = Owner()
    owner.add("laptop")
    mine = write("laptop", "blog", [T0, T0 + 1, T0 + 2])
    other = write("laptop", "blog", [T0, T0 + 1, T0 + 5], tag=b"x", tag_from=3)
    assert other[:2] == mine[:2] and other[2] != mine[2]
    view = merge(owner.state(), "blog", [*mine, *other])
    assert [i.seq for i in view] == [1, 2]


def test_devices_added_by_a_superseded_event_do_not_count() -> None:
    owner = Owner()
    thief = owner.add("thief", keep=False)
    owner.rotate()
    state = owner.state([*owner.events, thief])
    assert merge(state, "blog", write("thief", "blog", [T0])) == []


@settings(deadline=None, max_examples=examples(50))
@given(st.lists(st.tuples(st.sampled_from(["laptop", "phone", "tablet"]),
                          st.integers(0, 5)), min_size=1, max_size=12),
       st.randoms(use_true_random=False))
def test_the_merged_view_is_the_same_on_every_node_holding_the_same_entries(
    writes: list[tuple[str, int]], rnd: random.Random
) -> None:
    owner = Owner()
    for device in ("laptop", "phone", "tablet"):
        owner.add(device)
    feeds: dict[str, list[int]] = {}
    for device, offset in writes:
        feeds.setdefault(device, []).append(T0 + offset)
    entries = [e for device, times in feeds.items() for e in write(device, "blog", times)]
    cut_at = rnd.randint(1, len(feeds.get("phone", [0])))
    if "phone" in feeds:
        phone = [e for e in entries if e.author == pub("phone")]
        owner.revoke("phone", [Cut("blog", cut_at, phone[cut_at - 1].hash)])
    state = owner.state()
    expected = merge(state, "blog", entries)
    again = entries + rnd.sample(entries, k=len(entries) // 2)
    rnd.shuffle(again)
    assert merge(state, "blog", again) == expected
    keys = [(i.timestamp, i.device_key, i.seq) for i in expected]
    assert keys == sorted(keys)
    phone_seqs = [i.seq for i in expected if i.device_key == pub("phone")]
    assert all(s <= cut_at for s in phone_seqs)


def test_a_node_that_learns_of_a_revocation_later_drops_what_it_must() -> None:
    """Node B holds the phone's entries while the phone is a device; the
    revocation reaches it later, from a third node: the entries past the cut
    leave the merged view at once, whatever B held."""
    owner = Owner()
    owner.add("laptop")
    owner.add("phone")
    phone = write("phone", "blog", [T0 + i for i in range(6)])
    reader = IdentityLog(owner.identity, owner.raws())
    assert [i.seq for i in merge(reader.state, "blog", phone)] == [1, 2, 3, 4, 5, 6]
    owner.revoke("phone", [Cut("blog", 2, phone[1].hash)])
    third = IdentityLog(owner.identity, owner.raws())
    reader.add(third.state.served())
    assert [i.seq for i in merge(reader.state, "blog", phone)] == [1, 2]
