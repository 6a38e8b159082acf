"""Corrections: what a feed shows once its author retracted or replaced entries
(spec/content.md §12).

An author corrects an entry with a later entry of the same feed whose content
is :class:`~tidings.content.Retract` or :class:`~tidings.content.Replace`.
Entries are immutable, so the correction never changes the entry; it changes
what readers *show*. :func:`effective_view` is that reading, as a pure
function of a feed's entries and the payloads held, for every renderer: the
feed gateway and syndication use it; ``tidings show``, subscriptions and the
HTTP API can use it the same way.

>>> from tidings.core.content import Post, Replace, Retract, encode
>>> view = effective_view([
...     (Seq(1), encode(Post("helo"))),
...     (Seq(2), encode(Post("second"))),
...     (Seq(3), encode(Replace(1, Post("hello")))),
...     (Seq(4), encode(Retract(2))),
... ])
>>> [(shown.entry.seq, shown.state, shown.by) for shown in view]
[(1, 'replaced', 3), (2, 'retracted', 4), (3, 'correction', None), (4, 'correction', None)]
>>> view[0].content
Post(text='hello', title=None, links=(), tags=(), reply_to=None, attachments=())
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, NamedTuple, Protocol, TypeAlias, TypeVar

from tidings.core.content import (
    About,
    Content,
    Follow,
    LinkShare,
    Post,
    Replace,
    Retract,
    Unfollow,
    decode,
    encode,
)
from tidings.errors import InvalidContent, UsageError

#: A correction reaches at most this many entries back (spec/content.md §12, K2).
#: So a reader finds every correction of an entry among the 1024 entries after
#: it: a page of a feed costs a bounded read, however long the feed is.
MAX_CORRECTION_DISTANCE = 1024

State: TypeAlias = Literal["original", "replaced", "retracted", "correction"]
ORIGINAL: State = "original"
REPLACED: State = "replaced"
RETRACTED: State = "retracted"
#: The entry is itself a retract or a replace: it is never shown as an entry of its own.
CORRECTION: State = "correction"


class HasSeq(Protocol):
    @property
    def seq(self) -> int: ...


E = TypeVar("E", bound=HasSeq)


class Seq(NamedTuple):
    """The least an entry needs to be viewed: its seq (tests and vectors use it)."""

    seq: int


@dataclass(frozen=True, slots=True)
class Shown(Generic[E]):
    """What one entry shows, corrections applied.

    ``payload`` is what to render: the entry's own payload (original), the
    replacement content's bytes (replaced), or None (retracted, or not held).
    ``content`` is that payload read as content (or None). ``by`` is the seq of
    the correction in effect: the newest replace, or the retract.
    """

    entry: E
    state: State
    payload: bytes | None
    content: Content | None
    by: int | None = None

    @property
    def shown(self) -> bool:
        """Whether a renderer shows the entry as an entry: every state but a correction's."""
        return self.state != CORRECTION


#: Content that corrections leave alone: corrections themselves (no un-retracting,
#: no replacing a replace), and entries that newer entries of their own kind
#: supersede (about, §6.3; follows, §7.3), so that a correction never changes
#: what a node replicates or who an author says they are.
_NOT_CORRECTABLE = (Retract, Replace, Follow, Unfollow, About)


def effective_view(entries: Iterable[tuple[E, bytes | None]]) -> list[Shown[E]]:
    """Every entry of ``entries`` (of one feed, any order, each seq once) as it is
    shown once the corrections among them are applied, in seq order.

    ``entries`` are ``(entry, payload or None)``; an entry only needs a ``seq``
    (a :class:`~tidings.core.entry.Entry` does; so does :class:`Seq`). Entries
    that are not given are not held: a correction of an entry that is not given
    is not shown, and neither is its target. To view a page of a feed, pass the
    page and the :data:`MAX_CORRECTION_DISTANCE` entries after it (fewer at the
    head); the entries of the page are then shown exactly as the whole feed
    would show them. Never fails on a payload.
    """
    items = sorted(entries, key=lambda item: item[0].seq)
    feeds = {getattr(entry, "feed", None) for entry, _ in items}
    if len(feeds) > 1:
        raise UsageError("effective_view takes the entries of one feed")
    seqs = [entry.seq for entry, _ in items]
    if len(set(seqs)) != len(seqs):
        raise UsageError("effective_view takes each seq once")
    contents = {entry.seq: decode(payload) for entry, payload in items}
    # Per target: the entry's state so far and the correction in effect (K4).
    state: dict[int, tuple[State, int, Post | LinkShare | None]] = {}
    for entry, _ in items:
        correction = contents[entry.seq]
        if not isinstance(correction, Retract | Replace):
            continue
        target = correction.target
        if not 0 < entry.seq - target <= MAX_CORRECTION_DISTANCE:  # K2
            continue
        if target not in contents or isinstance(contents[target], _NOT_CORRECTABLE):
            continue  # K1 (a target not given is not shown), K3
        if state.get(target, (ORIGINAL,))[0] == RETRACTED:
            continue  # K4: a retraction is final
        if isinstance(correction, Retract):
            state[target] = (RETRACTED, entry.seq, None)
        else:
            state[target] = (REPLACED, entry.seq, correction.content)
    shown: list[Shown[E]] = []
    for entry, payload in items:
        content = contents[entry.seq]
        if isinstance(content, Retract | Replace):
            shown.append(Shown(entry, CORRECTION, payload, content))
        elif entry.seq not in state:
            shown.append(Shown(entry, ORIGINAL, payload, content))
        else:
            _, by, replacement = state[entry.seq]
            if replacement is None:
                shown.append(Shown(entry, RETRACTED, None, None, by))
            else:
                shown.append(Shown(entry, REPLACED, _payload_of(replacement), replacement, by))
    return shown


def _payload_of(content: Post | LinkShare) -> bytes | None:
    try:
        return encode(content)
    except InvalidContent:  # (read by the writer's rules, so it always encodes)
        return None


def check_correction(target: int, next_seq: int,
                     window: Iterable[tuple[E, bytes | None]]) -> Shown[E]:
    """Refuse (:class:`UsageError`, saying why) a correction of entry ``target`` that
    the author's next entry, at ``next_seq``, could not make take effect; else give
    what ``target`` shows now.

    ``window`` is the feed's entries from ``target`` to its head, with payloads.
    Writers (``tidings retract``, ``tidings edit``) call this before publishing.
    """
    if not 1 <= target < next_seq:
        raise UsageError(f"entry {target} is not an earlier entry of this log "
                         f"(its entries are 1 to {next_seq - 1})")
    if next_seq - target > MAX_CORRECTION_DISTANCE:
        raise UsageError(
            f"entry {target} is {next_seq - 1 - target} entries back; a correction reaches "
            f"the {MAX_CORRECTION_DISTANCE} entries before it (spec/content.md §12)")
    current = next((shown for shown in effective_view(window) if shown.entry.seq == target),
                   None)
    if current is None:
        raise UsageError(f"entry {target} is not held here")
    content = current.content
    if current.state == CORRECTION:
        raise UsageError(f"entry {target} is itself a correction: corrections are final; "
                         "correct the entry it corrects instead")
    if current.state == RETRACTED:
        raise UsageError(f"entry {target} was retracted (by entry {current.by}); a retraction "
                         "is final")
    if isinstance(content, Follow | Unfollow | About):
        kind = "an about entry" if isinstance(content, About) else "a follow entry"
        raise UsageError(f"entry {target} is {kind}: publish a new one instead of correcting it")
    return current


def describe_state(shown: Shown[Any]) -> str:
    """A few words on what corrections did to an entry, for listings.

    >>> describe_state(Shown(Seq(1), "replaced", None, None, 3))
    'edited by entry 3'
    """
    if shown.state == REPLACED:
        return f"edited by entry {shown.by}"
    if shown.state == RETRACTED:
        return f"retracted by entry {shown.by}"
    if shown.state == CORRECTION:
        return "a correction"
    return ""


__all__ = [
    "CORRECTION", "MAX_CORRECTION_DISTANCE", "ORIGINAL", "REPLACED", "RETRACTED", "Seq",
    "Shown", "State", "check_correction", "describe_state", "effective_view",
]
