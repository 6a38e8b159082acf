"""The session's state table (tidings.replication.session, spec/09 §3, spec/10 §3).

Every message of the wire protocol is sent in every state a peer can reach:
it either moves the session as :data:`TRANSITIONS` says (or keeps its state,
where the table names no move), or, where :data:`ACCEPTS` does not allow it,
the session fails with :class:`UnexpectedMessage`, queues the spec's
``error`` message for the peer itself, and from then on every call raises.

The sessions here are real: a Noise handshake between two channels, in
memory (the h11 way: no sockets, no clocks).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from tidings.core.blob import blob_id_of
from tidings.errors import ClosedByPeer, LocalProtocolError, UnexpectedMessage
from tidings.replication.clock import LocalClock
from tidings.replication.session import (
    ACCEPTS,
    TERMINAL,
    TRANSITIONS,
    Authenticated,
    ClockExchanged,
    Failed,
    PeerReady,
    Session,
    SessionState,
)
from tidings.transport.channel import Channel
from tidings.transport.network import DEFAULT_NETWORK_KEY
from tidings.wire.compact import compact_run
from tidings.wire.messages import (
    VERSIONS,
    BlobCancel,
    BlobData,
    BlobHave,
    BlobQuery,
    BlobRequest,
    Clock,
    CompactEntries,
    Entries,
    ErrorMessage,
    ForkProofMessage,
    Hello,
    IdentityEvents,
    IdentityNote,
    IdentityNotes,
    IdentityRequest,
    Message,
    PartialRequest,
    PartialResponse,
    Peers,
    Ping,
    SeqRequest,
    SeqResponse,
)

from .helpers import author, make_log

FEED = author(1).author.feed("blog")
BLOB = blob_id_of(b"an episode")
ENTRIES, PAYLOADS = make_log(1)


def key(name: str) -> bytes:
    return hashlib.blake2b(b"test_session " + name.encode(), digest_size=32).digest()


def authenticated() -> tuple[Channel, Session]:
    """A peer's channel and our session (the responder), the handshake just done."""
    peer = Channel(initiator=True, static_private=key("peer"), network_key=DEFAULT_NETWORK_KEY)
    ours = Channel(initiator=False, static_private=key("node"), network_key=DEFAULT_NETWORK_KEY)
    session = Session(ours, LocalClock())
    assert session.state is SessionState.HANDSHAKE
    peer.start()
    assert session.receive_data(peer.data_to_send()) == []  # message 1
    peer.receive_data(session.data_to_send())  # message 2; the peer writes message 3
    assert session.receive_data(peer.data_to_send()) == [Authenticated(peer.local_static)]
    assert session.state is SessionState.AUTHENTICATED
    return peer, session


def deliver(peer: Channel, session: Session, *messages: Message) -> list[object]:
    for message in messages:
        peer.send(message)
    events: list[object] = list(session.receive_data(peer.data_to_send()))
    peer.receive_data(session.data_to_send())
    peer.messages()
    return events


def session_in(state: SessionState) -> tuple[Channel, Session]:
    """A session brought to ``state`` by a real peer; requests of ours are open in
    OPENING and LIVE, so that answers to them are expected."""
    peer, session = authenticated()
    if state is SessionState.AUTHENTICATED:
        return peer, session
    session.start()
    if state is SessionState.HELLO:
        return peer, session
    deliver(peer, session, Hello(VERSIONS, False, None))
    session.request_partial(FEED, 5)  # request 0
    session.request_seqs(FEED, (1,), payloads=False)  # request 1
    session.blobs.request(BLOB, ((0, 1),))  # blob request 0
    session.blobs.query(BLOB, subscribe=False)  # blob query 1
    if state is SessionState.OPENING:
        return peer, session
    deliver(peer, session, Clock(True, (), True))
    assert state is SessionState.LIVE
    return peer, session


#: One message of each type, as a peer may send it.
SAMPLES: dict[type[Message], Callable[[], Message]] = {
    Hello: lambda: Hello(VERSIONS, False, None),
    Clock: lambda: Clock(True, (), True),
    Entries: lambda: Entries(FEED, ((ENTRIES[0].raw, PAYLOADS[0]),)),
    PartialRequest: lambda: PartialRequest(7, FEED, 3),
    PartialResponse: lambda: PartialResponse(0, ()),
    SeqRequest: lambda: SeqRequest(8, FEED, (1, 2), False),
    SeqResponse: lambda: SeqResponse(1, ()),
    ForkProofMessage: lambda: ForkProofMessage(b"\x82\x02\x80"),
    Peers: lambda: Peers((("192.0.2.1", 7654),)),
    Ping: lambda: Ping(),
    ErrorMessage: lambda: ErrorMessage("flood", "too much"),
    IdentityNotes: lambda: IdentityNotes((IdentityNote(bytes(32), 0, None, 0),)),
    IdentityRequest: lambda: IdentityRequest(9, bytes(32), 1),
    IdentityEvents: lambda: IdentityEvents(None, bytes(32), (), 0),
    BlobRequest: lambda: BlobRequest(4, BLOB, ((0, 1),)),
    BlobData: lambda: BlobData(0, (), True),
    BlobQuery: lambda: BlobQuery(5, BLOB, True),
    BlobHave: lambda: BlobHave(1, BLOB, None),
    BlobCancel: lambda: BlobCancel(4),
    CompactEntries: lambda: compact_run(FEED, [(ENTRIES[0].raw, PAYLOADS[0])]),  # type: ignore
}
REACHABLE = [SessionState.HELLO, SessionState.OPENING, SessionState.LIVE]


def test_every_message_type_has_a_sample() -> None:
    from tidings.wire import messages

    kinds = {cls for cls in vars(messages).values() if isinstance(cls, type)
             and hasattr(cls, "TYPE") and cls.__module__ == messages.__name__}
    assert kinds == set(SAMPLES)


def test_the_table_covers_every_state() -> None:
    assert set(ACCEPTS) == set(SessionState)
    assert all(ACCEPTS[state] == frozenset() for state in TERMINAL)
    for (state, kind), target in TRANSITIONS.items():
        assert kind in ACCEPTS[state], (state, kind)
        assert target is not state


@pytest.mark.parametrize("kind", list(SAMPLES), ids=lambda k: k.__name__)
@pytest.mark.parametrize("state", REACHABLE, ids=lambda s: s.value)
def test_a_message_moves_the_session_as_the_table_says(state: SessionState,
                                                        kind: type[Message]) -> None:
    peer, session = session_in(state)
    events = deliver(peer, session, SAMPLES[kind]())
    if kind not in ACCEPTS[state]:
        assert isinstance(events[-1], Failed)
        error = events[-1].error
        assert isinstance(error, UnexpectedMessage) and error.code == "unexpected"
        assert session.state is SessionState.FAILED
        return
    expected = TRANSITIONS.get((state, kind), state)
    assert session.state is expected
    if kind is ErrorMessage:
        assert isinstance(events[-1], Failed) and isinstance(events[-1].error, ClosedByPeer)
        assert events[-1].error.remote_code == "flood"
        return
    assert not any(isinstance(event, Failed) for event in events)
    if (state, kind) == (SessionState.HELLO, Hello):
        assert PeerReady(VERSIONS[-1], False) in events
    if (state, kind) == (SessionState.OPENING, Clock):
        assert ClockExchanged() in events


def test_a_clock_that_is_not_final_keeps_the_session_opening() -> None:
    peer, session = session_in(SessionState.OPENING)
    deliver(peer, session, Clock(True, (), False))
    assert session.state is SessionState.OPENING
    deliver(peer, session, Clock(False, (), True))
    assert session.state is SessionState.LIVE


def test_messages_that_come_before_start_wait_for_it() -> None:
    """AUTHENTICATED: the driver decides whether to accept the peer before any of
    its messages is read; then they are read in order, as in HELLO."""
    peer, session = authenticated()
    assert deliver(peer, session, Ping()) == []  # held in the channel
    assert session.state is SessionState.AUTHENTICATED
    session.start()
    events = session.receive_data(b"")
    assert isinstance(events[-1], Failed) and isinstance(events[-1].error, UnexpectedMessage)


def test_start_is_only_for_an_authenticated_session() -> None:
    _, session = session_in(SessionState.HELLO)
    with pytest.raises(LocalProtocolError):
        session.start()


@pytest.mark.parametrize("ending", ["unexpected", "closed-by-peer", "refused"])
def test_after_a_failure_every_call_raises_and_the_goodbye_is_queued(ending: str) -> None:
    peer, session = session_in(SessionState.LIVE)
    if ending in ("unexpected", "closed-by-peer"):
        peer.send(Hello(VERSIONS, False, None) if ending == "unexpected"
                  else ErrorMessage("flood", "too much"))
        events = session.receive_data(peer.data_to_send())
        assert isinstance(events[-1], Failed)
    else:
        from tidings.errors import PeerRefused

        session.fail(PeerRefused("refused for a while"))
    assert session.state in TERMINAL and session.failed
    goodbye = session.data_to_send()
    peer.receive_data(goodbye)
    sent = peer.messages()
    if ending == "closed-by-peer":
        assert session.state is SessionState.CLOSED and sent == []  # never answer an error
    else:
        assert session.state is SessionState.FAILED
        assert isinstance(sent[-1], ErrorMessage)
        assert sent[-1].code == ("unexpected" if ending == "unexpected" else "refused")
    calls: list[Callable[[], object]] = [
        lambda: session.receive_data(b""),
        lambda: session.start(),
        lambda: session.request_partial(FEED, 3),
        lambda: session.request_seqs(FEED, (1,), payloads=False),
        lambda: session.send_partial(0, []),
        lambda: session.send_seqs(0, []),
        lambda: session.send_fork_proof(b""),
        lambda: session.send_peers([("192.0.2.1", 7654)]),
        lambda: session.ping(),
    ]
    for call in calls:
        with pytest.raises(LocalProtocolError, match="open a new one"):
            call()
    assert session.data_to_send() == b""  # the goodbye went once
    session.fail(UnexpectedMessage("again"))  # a second failure changes nothing
    assert session.data_to_send() == b""


def test_a_broken_frame_during_the_handshake_fails_without_a_word() -> None:
    """Before the channel is up there is nobody to tell: no error message."""
    ours = Channel(initiator=False, static_private=key("node"), network_key=DEFAULT_NETWORK_KEY)
    session = Session(ours, LocalClock())
    events = session.receive_data(b"\x00\x05hello")
    assert isinstance(events[-1], Failed) and session.state is SessionState.FAILED
    assert session.data_to_send() == b""
