"""The local HTTP API as an app sees it: real nodes, real TCP, the token from the home.

The nodes run in-process (:func:`open_node` with ``api=``); the requests go over
loopback TCP through ``tests/http_client.py``, which can send what a browser, a
hostile web page or a broken client would. Where the point is the daemon
(``tidings up`` writing the token, the default address) a real process runs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import feedparser
import pytest
import trio

from tests.embed_helpers import PATIENCE, address_of, eventually
from tests.http_client import EventStream, Reply, collected, raw_request, read_events, request
from tests.nodes import running, wait_for
from tests.test_cli import _env, ok, tidings
from tidings import FeedId
from tidings import content as content_types
from tidings.content import Follow, Post, Replace, Retract
from tidings.embed import EmbeddedNode, open_node
from tidings.http import server as server_module
from tidings.http.server import MAX_BODY_BYTES
from tidings.node.home import DEFAULT_API_LISTEN

ALLOWED_ORIGIN = "http://app.example"
#: Longer than any wait here should take; reaching it means a hang.
CURSOR = re.compile(r"[0-9]+-[0-9]+")


@dataclass
class Api:
    """A running node with its local API, and a client for it."""

    node: EmbeddedNode
    address: tuple[str, int]
    token: str

    @property
    def auth(self) -> list[tuple[str, str]]:
        return [("Authorization", f"Bearer {self.token}")]

    async def get(self, target: str, *, headers: Sequence[tuple[str, str]] = (),
                  auth: bool = True) -> Reply:
        return await request(self.address, "GET", target,
                             headers=[*(self.auth if auth else []), *headers])

    async def post(self, target: str, body: object, *, auth: bool = True,
                   headers: Sequence[tuple[str, str]] = ()) -> Reply:
        sent = [*(self.auth if auth else []), *headers]
        if not any(name.lower() == "content-type" for name, _ in sent):
            sent.append(("Content-Type", "application/json"))
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await request(self.address, "POST", target, headers=sent, body=data)

    async def events(self, target: str, until: Callable[[EventStream], bool], *,
                     headers: Sequence[tuple[str, str]] = (), auth: bool = True,
                     started: Callable[[], Any] | None = None) -> EventStream:
        return await read_events(self.address, target,
                                 headers=[*(self.auth if auth else []), *headers],
                                 until=until, timeout=PATIENCE, started=started)


def error_code(reply: Reply) -> str:
    assert reply.media_type == "application/json", reply.headers
    code: str = reply.json()["error"]["code"]
    assert reply.json()["error"]["message"]
    return code


@contextlib.asynccontextmanager
async def api_node(home: Path, **options: Any) -> AsyncIterator[Api]:
    async with open_node(home, api="127.0.0.1:0", **options) as node:
        assert node.api_url is not None
        host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
        yield Api(node, (host, int(port)), node.home.api_token())


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """A node that listens for peers, with the API on a free port and one web origin."""
    async with api_node(tmp_path / "a", listen="127.0.0.1:0",
                        cors_origins=(ALLOWED_ORIGIN,)) as running_api:
        yield running_api


@pytest.fixture
async def author(tmp_path: Path) -> AsyncIterator[EmbeddedNode]:
    async with open_node(tmp_path / "author", listen="127.0.0.1:0") as node:
        yield node






def entries_of(stream: EventStream) -> list[dict[str, Any]]:
    return [event.json() for event in stream.of("entry")]


# -- the token ------------------------------------------------------------------------


async def test_requests_without_the_token_are_refused(api: Api) -> None:
    for headers in ([], [("Authorization", "Bearer not-the-token-but-long-enough")],
                    [("Authorization", f"Basic {api.token}")],
                    [("Authorization", api.token)]):
        reply = await api.get("/v1/status", headers=headers, auth=False)
        assert reply.status == 401, headers
        assert error_code(reply) == "unauthorized"
        assert reply.headers["www-authenticate"].startswith("Bearer")
    # The token of another home is not this one's.
    assert (await api.get("/v1/status?token=" + "x" * 43, auth=False)).status == 401
    # GET takes it as a query parameter (EventSource, feed readers)...
    reply = await api.get(f"/v1/status?token={api.token}", auth=False)
    assert reply.status == 200
    assert reply.json()["author"] == str(api.node.author)
    # ...but a POST does not: a token in a URL must not be able to change anything.
    reply = await api.post(f"/v1/publish?token={api.token}", {"payload_base64": "aGk="},
                           auth=False)
    assert reply.status == 401 and error_code(reply) == "unauthorized"
    assert api.node.store.head(api.node.feed()) is None
    # The scheme's case does not matter (RFC 9110), the token's does.
    assert (await api.get("/v1/status", headers=[("Authorization", f"bearer {api.token}")],
                          auth=False)).status == 200
    assert (await api.get("/v1/status", headers=[
        ("Authorization", f"Bearer {api.token.swapcase()}")], auth=False)).status == 401


async def test_state_changes_only_by_a_json_post(api: Api) -> None:
    own = api.node.feed()
    followed = FeedId(bytes(range(32)), "blog")
    attempts = [
        ("application/x-www-form-urlencoded", b"payload_base64=aGk%3D"),
        ("multipart/form-data; boundary=x",
         b'--x\r\nContent-Disposition: form-data; name="payload_base64"\r\n\r\naGk=\r\n--x--\r\n'),
        # A page can send text/plain without CORS; the body is valid JSON all the same.
        ("text/plain", json.dumps({"payload_base64": "aGk="}).encode()),
        ("text/plain;charset=UTF-8", json.dumps({"content": {"type": "post",
                                                             "text": "x"}}).encode()),
    ]
    for media, body in attempts:
        reply = await api.post("/v1/publish", body, headers=[("Content-Type", media)])
        assert reply.status == 415, (media, reply.body)
        assert error_code(reply) == "unsupported_media_type"
        follow = await api.post("/v1/follow", json.dumps({"feed": str(followed)}).encode(),
                                headers=[("Content-Type", media)])
        assert follow.status == 415
    # No Content-Type at all.
    reply = await request(api.address, "POST", "/v1/publish", headers=api.auth,
                          body=b'{"payload_base64": "aGk="}')
    assert reply.status == 415
    assert api.node.store.head(own) is None
    assert await api.node.following() == []
    # The same with the right type works (so the refusals above were about the type).
    assert (await api.post("/v1/publish", {"payload_base64": "aGk="})).status == 201
    assert (await api.node.entries(own))[0].payload == b"hi"


async def test_a_foreign_host_or_origin_is_refused_and_cors_lets_one_app_in(api: Api) -> None:
    port = api.address[1]
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}",
                 f"localhost.evil.example:{port}", "10.0.0.1"):
        reply = await api.get("/v1/status", headers=[("Host", host)])
        assert reply.status == 403, host
        assert error_code(reply) == "host_not_allowed"
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST", f"127.1.2.3:{port}",
                 f"[::1]:{port}"):
        assert (await api.get("/v1/status", headers=[("Host", host)])).status == 200, host

    for origin in ("http://evil.example", "null", "http://app.example:8080",
                   "https://app.example", f"http://127.0.0.1:{port}"):
        reply = await api.get("/v1/status", headers=[("Origin", origin)])
        assert reply.status == 403, origin
        assert error_code(reply) == "origin_not_allowed"
        assert "access-control-allow-origin" not in reply.headers
        preflight = await request(api.address, "OPTIONS", "/v1/publish", headers=[
            ("Origin", origin), ("Access-Control-Request-Method", "POST")])
        assert preflight.status == 403
        # A refused origin cannot publish even with the token (a page that stole it).
        reply = await api.post("/v1/publish", {"payload_base64": "aGk="},
                               headers=[("Origin", origin)])
        assert reply.status == 403
    assert api.node.store.head(api.node.feed()) is None

    preflight = await request(api.address, "OPTIONS", "/v1/publish", headers=[
        ("Origin", ALLOWED_ORIGIN), ("Access-Control-Request-Method", "POST")])
    assert preflight.status == 204 and preflight.body == b""
    reply = await api.get("/v1/status", headers=[("Origin", ALLOWED_ORIGIN)])
    assert reply.status == 200
    assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    # The allowed app still needs the token.
    reply = await api.get("/v1/status", headers=[("Origin", ALLOWED_ORIGIN)], auth=False)
    assert reply.status == 401
    assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    reply = await api.post("/v1/publish", {"content": {"type": "post", "text": "from the app"}},
                           headers=[("Origin", ALLOWED_ORIGIN)])
    assert reply.status == 201
    assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


async def test_a_preflight_from_an_allowed_origin_says_it_is_allowed(api: Api) -> None:
    preflight = await request(api.address, "OPTIONS", "/v1/publish", headers=[
        ("Origin", ALLOWED_ORIGIN), ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "authorization, content-type")])
    assert preflight.status == 204
    allowed_headers = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers and "content-type" in allowed_headers
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


async def test_without_cors_origins_a_browser_origin_is_always_refused(tmp_path: Path) -> None:
    async with api_node(tmp_path / "h") as plain:
        reply = await request(plain.address, "OPTIONS", "/v1/status",
                              headers=[("Origin", ALLOWED_ORIGIN)])
        assert reply.status == 403 and error_code(reply) == "origin_not_allowed"
        assert (await plain.get("/v1/status")).status == 200


# -- Server-Sent Events ---------------------------------------------------------------


async def test_events_resume_after_a_disconnect_without_losing_an_entry(
        author: EmbeddedNode, tmp_path: Path) -> None:
    total = 40
    blog = author.feed("blog")
    async with api_node(tmp_path / "reader", peers=[address_of(author)]) as reader:
        await reader.node.follow(blog)
        done = trio.Event()

        async def keep_publishing() -> None:
            for index in range(1, total + 1):
                await author.publish(Post(f"post {index}"), log="blog")
                await trio.sleep(0.005)  # pacing only: a stream, not one burst
            done.set()

        async with trio.open_nursery() as nursery:
            first = await reader.events(
                "/v1/events", lambda s: len(s.of("entry")) >= 8,
                started=lambda: nursery.start_soon(keep_publishing))
            assert first.status == 200
            assert first.headers["content-type"].startswith("text/event-stream")
            [ready] = first.of("ready")
            assert CURSOR.fullmatch(ready.id or "") and ready.json() == {"cursor": ready.id}
            got = entries_of(first)
            # Hung up mid-stream; the author goes on meanwhile.
            await eventually(lambda: reader.node.entry(blog, len(got) + 5),
                             "entries to arrive while no stream runs")
            last_id = first.of("entry")[-1].id
            assert last_id is not None
            second = await reader.events(
                "/v1/events", lambda s: len(got) + len(s.of("entry")) >= total,
                headers=[("Last-Event-ID", last_id)])
            got += entries_of(second)
            await done.wait()
        assert [(e["feed"], e["seq"]) for e in got] == [(str(blog), n)
                                                        for n in range(1, total + 1)]
        assert [e["content"] for e in got] == [{"type": "post", "text": f"post {n}"}
                                               for n in range(1, total + 1)]
        # Every entry event's id is the cursor in its data.
        for event in first.of("entry") + second.of("entry"):
            assert event.id == event.json()["cursor"]
        # ?after= does what Last-Event-ID does; the token may come in the query too.
        replay = await reader.events(
            f"/v1/events?after={ready.id}&token={reader.token}",
            lambda s: len(s.of("entry")) >= total, auth=False)
        assert [e["seq"] for e in entries_of(replay)] == list(range(1, total + 1))
        # Last-Event-ID wins over ?after= (it is where the browser really got to).
        tail = await reader.events(f"/v1/events?after={ready.id}",
                                   lambda s: len(s.of("entry")) >= 3,
                                   headers=[("Last-Event-ID", got[-4]["cursor"])])
        assert [e["seq"] for e in entries_of(tail)] == [total - 2, total - 1, total]


async def test_the_ready_event_gives_a_cursor_before_any_entry(api: Api) -> None:
    stream = await api.events("/v1/events?own=true", lambda s: bool(s.of("ready")))
    assert stream.events[0].retry is not None  # the reconnect delay comes first
    [ready] = stream.of("ready")
    assert ready.id is not None and CURSOR.fullmatch(ready.id)
    assert not stream.of("entry")
    # An entry published after that stream was dropped is not lost to a reconnect.
    await api.node.publish(Post("while nobody listened"), log="blog")
    again = await api.events("/v1/events?own=true", lambda s: bool(s.of("entry")),
                             headers=[("Last-Event-ID", ready.id)])
    [entry] = entries_of(again)
    assert entry["seq"] == 1 and entry["content"]["text"] == "while nobody listened"


async def test_a_bad_cursor_is_refused_before_the_stream_starts(api: Api) -> None:
    for headers, target in (([("Last-Event-ID", "not-a-cursor")], "/v1/events"),
                            ([("Last-Event-ID", "1-2-3")], "/v1/events"),
                            ([], "/v1/events?after=x"),
                            ([], "/v1/events?after=999-0"),  # beyond the newest arrival
                            ([], "/v1/events?feeds=tf1nope_blog")):
        stream = await api.events(target, lambda s: False, headers=headers)
        assert stream.status == 400, (headers, target)
        [error] = stream.of("error")
        assert error.json()["error"]["code"] in ("invalid_request", "invalid_feed")


# -- publishing and reading -----------------------------------------------------------


async def test_publish_content_and_free_bytes_and_read_them_back(api: Api) -> None:
    post = {"type": "post", "text": "hello over HTTP", "tags": ["http"]}
    reply = await api.post("/v1/publish", {"log": "blog", "content": post})
    assert reply.status == 201
    made = reply.json()
    blog = api.node.feed("blog")
    assert made["feed"] == str(blog) and made["seq"] == 1 and made["content"] == post
    stored = await api.node.entry(blog, 1)
    assert stored is not None and stored.content == Post("hello over HTTP", tags=("http",))
    assert made["hash"] == stored.entry.hash.hex()

    raw = bytes(range(256))
    reply = await api.post("/v1/publish", {"log": "blog",
                                           "payload_base64": base64.b64encode(raw).decode()})
    assert reply.status == 201 and reply.json()["seq"] == 2 and reply.json()["content"] is None
    payload = await api.get(f"/v1/feeds/{blog}/entries/2/payload")
    assert payload.status == 200
    assert payload.media_type == "application/octet-stream"
    assert payload.body == raw
    assert payload.headers["x-content-type-options"] == "nosniff"
    # The default log.
    reply = await api.post("/v1/publish", {"payload_base64": ""})
    assert reply.status == 201 and reply.json()["feed"] == str(api.node.feed())

    listed = await api.get(f"/v1/feeds/{blog}/entries?since=1&limit=1")
    assert listed.status == 200
    assert [e["seq"] for e in listed.json()["entries"]] == [1]
    assert listed.json()["next_since"] == 2
    one = await api.get(f"/v1/feeds/{blog}/entries/1")
    assert one.json()["content"] == post
    assert base64.b64decode(one.json()["payload_base64"]) == content_types.encode(
        Post("hello over HTTP", tags=("http",)))


async def test_listings_show_entries_with_their_authors_corrections(api: Api) -> None:
    for text in ("helo", "second", "third"):
        await api.node.publish(Post(text), log="blog")
    await api.node.publish(Replace(1, Post("hello")), log="blog")
    await api.node.publish(Retract(2), log="blog")
    blog = api.node.feed("blog")
    listed = (await api.get(f"/v1/feeds/{blog}/entries")).json()["entries"]
    assert [(e["seq"], e["state"], e["corrected_by"]) for e in listed] == [
        (1, "replaced", 4), (2, "retracted", 5), (3, "original", None),
        (4, "correction", None), (5, "correction", None)]
    assert listed[0]["content"]["text"] == "helo"  # the entry's own, as it is
    assert listed[0]["shown"] == {"type": "post", "text": "hello"}  # what a reader shows
    assert listed[1]["shown"] is None and listed[2]["shown"]["text"] == "third"
    # A page of one entry still sees the corrections after it, and so does one entry.
    page = (await api.get(f"/v1/feeds/{blog}/entries?since=1&limit=1")).json()["entries"]
    assert page[0]["shown"] == {"type": "post", "text": "hello"}
    one = (await api.get(f"/v1/feeds/{blog}/entries/2")).json()
    assert one["state"] == "retracted" and one["corrected_by"] == 5


async def test_publish_names_what_is_wrong(api: Api) -> None:
    cases: list[tuple[object, str, str]] = [
        ({"content": {"type": "post", "text": "hi", "tags": ["a", "b" * 65]}},
         "invalid_content", "post.tags[1]"),
        ({"content": {"type": "post"}}, "invalid_content", "text"),
        ({"content": {"type": "link", "url": "javascript:alert(1)"}}, "invalid_content", "url"),
        ({"content": "just text"}, "invalid_content", ""),
        ({"payload_base64": "aGk=", "colour": "red"}, "invalid_request", "colour"),
        ({"content": {"type": "post", "text": "x"}, "payload_base64": "aGk="},
         "invalid_request", "exactly one"),
        ({}, "invalid_request", "exactly one"),
        ({"payload_base64": "not base64!"}, "invalid_request", "base64"),
        ({"payload_base64": "aGk=", "log": "no spaces allowed"}, "invalid_request", ""),
        ({"payload_base64": "aGk=", "log": 7}, "invalid_request", "log"),
        ([1, 2], "invalid_request", "object"),
    ]
    for body, code, needle in cases:
        reply = await api.post("/v1/publish", body)
        assert reply.status == 400, (body, reply.body)
        assert error_code(reply) == code, (body, reply.body)
        assert needle in reply.json()["error"]["message"], (body, reply.body)
    reply = await api.post("/v1/publish", b'{"payload_base64": ')
    assert reply.status == 400 and error_code(reply) == "invalid_json"
    assert api.node.store.head(api.node.feed()) is None
    assert api.node.store.head(api.node.feed("blog")) is None


async def test_a_body_over_the_bound_is_refused_and_nothing_published(api: Api) -> None:
    head = (f"POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {api.token}\r\nContent-Type: application/json\r\n")
    # Said up front: refused before a byte of the body is read.
    reply = await raw_request(api.address, (
        head + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n").encode())
    assert reply.status == 413 and error_code(reply) == "payload_too_large"
    # Chunked, so the server finds out only while reading.
    body = json.dumps({"payload_base64": "A" * MAX_BODY_BYTES}).encode()
    reply = await _send_chunked_while_reading(api.address, (
        head + "Transfer-Encoding: chunked\r\n\r\n").encode(), body)
    assert reply.status == 413 and error_code(reply) == "payload_too_large"
    assert api.node.store.head(api.node.feed()) is None
    # A body just under the bound is read (and then refused for what it says).
    fits = json.dumps({"payload_base64": "A" * (MAX_BODY_BYTES - 100)}).encode()
    assert len(fits) <= MAX_BODY_BYTES
    reply = await api.post("/v1/publish", fits)
    assert reply.status == 400, reply.body  # 1.5 MiB is over the payload bound
    assert error_code(reply) == "invalid_request"


async def _send_chunked_while_reading(address: tuple[str, int], head: bytes,
                                      body: bytes) -> Reply:
    """Send ``body`` chunked after ``head``, reading the reply all the while (the server
    may answer and close before the body is all sent)."""
    import h11

    with trio.fail_after(PATIENCE):
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            client = h11.Connection(h11.CLIENT)
            client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
            client.send(h11.EndOfMessage())
            reply: list[Reply] = []

            async def send() -> None:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.send_all(head)
                    for start in range(0, len(body), 64 * 1024):
                        part = body[start:start + 64 * 1024]
                        await stream.send_all(b"%x\r\n%s\r\n" % (len(part), part))
                    await stream.send_all(b"0\r\n\r\n")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                head_seen: h11.Response | None = None
                data = bytearray()
                while not reply:
                    event = client.next_event()
                    if event is h11.NEED_DATA:
                        client.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Response):
                        head_seen = event
                    elif isinstance(event, h11.Data):
                        data += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        assert head_seen is not None
                        headers = {k.decode().lower(): v.decode() for k, v in head_seen.headers}
                        reply.append(Reply(head_seen.status_code, headers, bytes(data)))
                nursery.cancel_scope.cancel()
            return reply[0]


async def test_malformed_http_gets_400_and_the_server_serves_the_next_client(api: Api) -> None:
    for garbage in (b"GARBAGE\r\n\r\n", b"GET /v1/status HTTP/1.1\r\nno colon here\r\n\r\n",
                    b"POST /v1/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n",
                    b"GET /v1/status HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40) + b"\r\n\r\n"):
        reply = await raw_request(api.address, garbage)
        assert reply.status == 400, garbage
        assert error_code(reply) == "bad_request", garbage
        assert reply.headers["connection"] == "close"
        # ...and the next client is served.
        assert (await api.get("/v1/status")).status == 200, garbage


async def test_unknown_paths_and_methods_are_json_errors(api: Api) -> None:
    blog = api.node.feed("blog")
    for target in ("/index.html", "/v1/nothing", "/v1/status/extra", "/v2/status",
                   f"/v1/feeds/{blog}/entries/1", f"/v1/feeds/{blog}/entries/1/payload"):
        reply = await api.get(target)
        assert reply.status == 404, target
        assert error_code(reply) == "not_found"
    reply = await api.get("/v1/publish")
    assert reply.status == 405 and error_code(reply) == "method_not_allowed"
    assert reply.headers["allow"] == "POST"
    reply = await request(api.address, "DELETE", "/v1/status", headers=api.auth, body=b"")
    assert reply.status == 405 and reply.headers["allow"] == "GET"
    reply = await api.post("/v1/status", {})
    assert reply.status == 405
    # A payload that was deleted: the entry stays, the payload is a distinct 404.
    await api.node.publish(b"soon gone", log="blog")
    await api.node.publish(b"kept", log="blog")
    api.node._node.logbook.delete_payload(blog, 1)
    reply = await api.get(f"/v1/feeds/{blog}/entries/1/payload")
    assert reply.status == 404 and error_code(reply) == "payload_not_held"
    entry = (await api.get(f"/v1/feeds/{blog}/entries/1")).json()
    assert entry["payload_held"] is False and entry["payload_base64"] is None
    assert (await api.get(f"/v1/feeds/{blog}/entries/2/payload")).body == b"kept"


async def test_follow_unfollow_following_and_peers(api: Api, author: EmbeddedNode) -> None:
    blog = author.feed("blog")
    await author.publish(Post("from the author"), log="blog")
    assert (await api.get("/v1/following")).json() == {"following": []}
    reply = await api.post("/v1/follow", {"feed": str(blog), "public": True})
    assert reply.status == 200
    assert reply.json() == {"feed": str(blog), "following": True, "changed": True}
    assert (await api.post("/v1/follow", {"feed": str(blog)})).json()["changed"] is False
    assert (await api.get("/v1/following")).json() == {"following": [str(blog)]}
    [follow_entry] = await api.node.entries(api.node.feed("follows"))
    assert follow_entry.content == Follow(blog)
    for bad, code in (({"feed": "tf1nope_blog"}, "invalid_feed"), ({"feed": 3}, "invalid_request"),
                      ({}, "invalid_request"), ({"feed": str(blog), "public": "yes"},
                                                "invalid_request")):
        reply = await api.post("/v1/follow", bad)
        assert reply.status == 400 and error_code(reply) == code, bad

    # A peer added by address is dialed, and the followed feed comes from it.
    assert (await api.get("/v1/peers")).json() == {"peers": []}
    reply = await api.post("/v1/peers", {"address": address_of(author)})
    assert reply.status == 202 and reply.json()["dialing"] is True

    async def connected() -> bool:
        return bool((await api.get("/v1/peers")).json()["peers"])

    await eventually(connected, "the added peer to connect")
    [peer] = (await api.get("/v1/peers")).json()["peers"]
    assert peer["address"] == address_of(author) and peer["direction"] == "out"
    await eventually(lambda: api.node.entry(blog, 1), "the followed feed to arrive")
    for bad in ({"address": "no port here:x"}, {"address": 7654}, {"address": ""}, {}):
        reply = await api.post("/v1/peers", bad)
        assert reply.status == 400 and error_code(reply) == "invalid_request", bad

    reply = await api.post("/v1/unfollow", {"feed": str(blog)})
    assert reply.json() == {"feed": str(blog), "following": False, "changed": True}
    assert (await api.get("/v1/following")).json() == {"following": []}
    # Unfollowing keeps what is stored.
    assert (await api.get(f"/v1/feeds/{blog}/entries/1")).status == 200


async def test_idle_connections_do_not_stop_others_being_served(api: Api) -> None:
    idle: list[trio.SocketStream] = []
    try:
        for index in range(50):
            stream = await trio.open_tcp_stream(*api.address)
            if index % 10 == 0:  # some start a request and never finish it
                await stream.send_all(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-")
            idle.append(stream)
        with trio.fail_after(PATIENCE):
            reply = await api.get("/v1/status")
            assert reply.status == 200
            await api.node.publish(b"x", log="blog")
            events = await api.events("/v1/events?after=0-0&own=true",
                                      lambda s: bool(s.of("entry")))
            assert len(events.of("entry")) == 1
    finally:
        for stream in idle:
            await stream.aclose()


async def test_silent_connections_up_to_the_cap_do_not_shut_others_out(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # The cap lowered so the test opens a handful of sockets, not 512.
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 16)
    idle = [await trio.open_tcp_stream(*api.address) for _ in range(16)]
    try:
        await eventually(lambda: server_module_open(api) >= 16, "the server to take them")
        reply = await api.get("/v1/status")
        assert reply.status == 200
    finally:
        for stream in idle:
            await stream.aclose()


def server_module_open(api: Api) -> int:
    """How many connections the node's API server holds open now."""
    import gc
    import weakref

    # (a dead weak proxy, which a parser earlier in this process may leave, raises on
    # isinstance: proxies are skipped by their type first)
    servers = [o for o in gc.get_objects() if not isinstance(o, weakref.ProxyTypes)
               and isinstance(o, server_module.HttpServer)
               and getattr(o.handler, "node", None) is api.node]
    return sum(server.open_connections for server in servers)


async def test_the_feed_gateway_through_the_api(api: Api) -> None:
    blog = api.node.feed("blog")
    for index in range(1, 4):
        await api.node.publish(Post(f"post {index}", title=f"Title {index}"), log="blog")
    assert (await api.get(f"/feeds/{blog}.atom", auth=False)).status == 401
    reply = await api.get(f"/feeds/{blog}.atom?token={api.token}", auth=False)
    assert reply.status == 200 and reply.media_type == "application/atom+xml"
    assert reply.headers["cache-control"] == "private, no-store"  # its links hold the token
    parsed = feedparser.parse(reply.body)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert [e.title for e in parsed.entries] == ["Title 3", "Title 2", "Title 1"]
    reply = await api.get(f"/feeds/{blog}.json")
    assert reply.status == 200 and reply.media_type == "application/feed+json"
    # feedparser 6 does not read JSON Feed: check the JSON Feed 1.1 shape itself.
    feed = reply.json()
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert [item["title"] for item in feed["items"]] == ["Title 3", "Title 2", "Title 1"]
    assert [item["content_text"] for item in feed["items"]] == ["post 3", "post 2", "post 1"]
    assert len({item["id"] for item in feed["items"]}) == 3


# -- the token file and the default address (real `tidings up`) ------------------------


async def test_the_api_token_is_private_and_written_by_open_node(tmp_path: Path) -> None:
    async with api_node(tmp_path / "fresh") as fresh:
        token_file = tmp_path / "fresh" / "api.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert token_file.read_text().strip() == fresh.token and len(fresh.token) >= 32
        assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700
        assert fresh.address[0] == "127.0.0.1"


@pytest.mark.system
def test_up_creates_the_token_and_says_where_its_api_is(tmp_path: Path) -> None:
    home = tmp_path / "h"
    ok(tidings(home, "init"))
    (home / "api.token").unlink()
    with running(home) as node:
        wait_for(lambda: (home / "api.json").exists(), what="api.json")
        token_file = home / "api.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        url = json.loads((home / "api.json").read_text())["url"]
        assert url.startswith("http://127.0.0.1:")
        assert "event=ready" in node.log() and f"api={url}" in node.log()
        reply = trio.run(_status_with_token, url, token_file.read_text().strip())
        assert reply.status == 200
    assert not (home / "api.json").exists()
    assert token_file.exists()  # the token stays for the next run


async def _status_with_token(url: str, token: str) -> Reply:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return await request((host, int(port)), "GET", "/v1/status",
                         headers=[("Authorization", f"Bearer {token}")])


@pytest.mark.system
def test_up_serves_the_api_on_loopback_by_default(tmp_path: Path) -> None:
    host, port = DEFAULT_API_LISTEN.rsplit(":", 1)
    assert host == "127.0.0.1"
    probe = socket.socket()
    try:
        probe.bind((host, int(port)))
    except OSError:
        pytest.skip(f"{DEFAULT_API_LISTEN} is in use on this machine")
    finally:
        probe.close()
    home = tmp_path / "h"
    ok(tidings(home, "init"))
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tidings", "--home", str(home), "up",
             "--listen", "127.0.0.1:0", "--no-lan"],
            stdout=subprocess.DEVNULL, stderr=log, env=_env())
        try:
            wait_for(lambda: (home / "api.json").exists() or proc.poll() is not None,
                     what="api.json")
            assert proc.poll() is None, log_path.read_text()
            assert json.loads((home / "api.json").read_text())["url"] == \
                f"http://{DEFAULT_API_LISTEN}"
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0, log_path.read_text()
    assert "Traceback" not in log_path.read_text()


async def test_public_feeds_link_from_the_base_url_not_the_host_header(tmp_path: Path) -> None:
    from tidings import Identity, Logbook, SqliteStore
    from tidings.http.gateway import PublicFeeds
    from tidings.http.server import Request

    book = Logbook(SqliteStore(tmp_path / "s.sqlite3"), Identity.generate())
    for index in range(3):
        book.publish(f"{index}".encode(), "blog")
    feed = book.feed("blog")
    request = Request("GET", f"/feeds/{feed}.atom?limit=2", f"/feeds/{feed}.atom",
                      {"limit": ["2"]}, {"host": "evil.example"}, b"", ("127.0.0.1", 1))
    for base, expected in ((None, ".."),  # relative to the document
                           ("https://feeds.example.org/", "https://feeds.example.org")):
        handler = PublicFeeds(book.store, base)
        reply = await collected(await handler(request))
        assert b"evil.example" not in reply.body
        # Atom's media type follows Accept (a browser gets XML it renders); nothing else varies.
        assert [value for name, value in reply.headers if name.lower() == "vary"] == ["Accept"]
        parsed = feedparser.parse(reply.body)
        links = {link.rel: link.href for link in parsed.feed.links}
        assert links["self"] == f"{expected}/feeds/{feed}.atom?limit=2"
        assert links["next"] == f"{expected}/feeds/{feed}.atom?before=2&limit=2"
        assert links["alternate"] == f"{expected}/feeds/{feed}"
        assert parsed.entries[0].link == f"{expected}/feeds/{feed}/3"
    book.store.close()


async def test_feed_pages_never_read_large_payloads_and_keep_tokens_off_public_links(
        tmp_path: Path) -> None:
    from tidings import Identity, Logbook, SqliteStore
    from tidings.http.gateway import PublicFeeds
    from tidings.http.server import Request
    from tidings.http.syndication import MAX_SHOWN_PAYLOAD

    book = Logbook(SqliteStore(tmp_path / "s.sqlite3"), Identity.generate())
    book.publish(b"a small one", "blog")
    book.publish(b"x" * (MAX_SHOWN_PAYLOAD + 1), "blog")  # a large plain text
    book.publish(b"the newest", "blog")
    feed = book.feed("blog")
    read: list[int] = []
    original = book.store.entries_at

    def counting(feed_: FeedId, seqs: Any, *, payloads: bool = True) -> Any:
        if payloads:
            read.extend(seqs)
        return original(feed_, seqs, payloads=payloads)

    book.store.entries_at = counting  # type: ignore[method-assign]
    request = Request("GET", "", f"/feeds/{feed}.atom", {"token": ["t0k3n"], "limit": ["2"]},
                      {"host": "127.0.0.1"}, b"", ("127.0.0.1", 1))
    reply = await collected(await PublicFeeds(book.store)(request))
    parsed = feedparser.parse(reply.body)
    assert parsed.bozo == 0
    assert [e.title for e in parsed.entries] == ["the newest", f"<{MAX_SHOWN_PAYLOAD + 1} bytes>"]
    assert 2 not in read  # the large payload was never read
    assert "t0k3n" not in reply.body.decode()  # the public gateway takes no token
    assert dict(reply.headers)["Cache-Control"] == "max-age=60"
    book.store.close()


# -- a full disk ----------------------------------------------------------------------


async def test_a_full_disk_answers_507_and_publishing_resumes_when_space_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """spec/14 §4: a write that finds the disk full is a 507 that says what to do,
    reads are still answered, and once space returns the same request succeeds.
    The disk is the store's page limit (``TIDINGS_TEST_PAGE_LIMIT``), read at
    each write."""
    limit = tmp_path / "page-limit"
    limit.write_text("0")  # no limit yet
    monkeypatch.setenv("TIDINGS_TEST_PAGE_LIMIT", str(limit))
    async with api_node(tmp_path / "a") as full:
        big = {"log": "blog", "payload_base64": base64.b64encode(b"x" * 60_000).decode()}
        assert (await full.post("/v1/publish", big)).status == 201
        limit.write_text("1")  # SQLite keeps the pages it has: nothing more fits
        statuses = [(await full.post("/v1/publish", big)) for _ in range(8)]
        refused = [r for r in statuses if r.status != 201]
        assert refused, [r.status for r in statuses]
        assert {r.status for r in refused} == {507}
        assert error_code(refused[0]) == "storage_full"
        assert "free some space" in refused[0].json()["error"]["message"]
        feed = str(full.node.feed("blog"))
        listed = await full.get(f"/v1/feeds/{feed}/entries")
        assert listed.status == 200
        held = len(listed.json()["entries"])
        assert (await full.get("/v1/status")).status == 200
        limit.write_text("0")  # space returns
        again = await full.post("/v1/publish", big)
        assert again.status == 201, again.body
        assert again.json()["seq"] == held + 1
