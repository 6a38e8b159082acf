"""spec/openapi.json and spec/http-api.md: the document is valid, and the server does what it says.

The agreement tests start a real node with the local API and walk every path
and method of the document over TCP, exercising each documented status that is
practical, and validate every JSON body against the schema the document gives
for that status. Response schemas are checked strictly here (no property the
document does not name), although the document leaves them open so that the API
may add fields without a new prefix.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import re
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import trio
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.http_client import EventStream, Reply, raw_request, read_events, request
from tidings import content as content_types
from tidings.core.ids import FeedId
from tidings.embed import EmbeddedNode, open_node
from tidings.http import api as api_module
from tidings.http import server as server_module
from tidings.node.home import Home

ROOT = Path(__file__).resolve().parent.parent
SPEC_COPY = ROOT / "spec" / "openapi.json"
DOCUMENT: dict[str, Any] = json.loads(SPEC_COPY.read_text())
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: A web app allowed by the node under test, and one that is not.
ALLOWED_ORIGIN = "http://app.example"
OTHER_ORIGIN = "http://evil.example"
#: Path parameters as the tests fill them in when only the shape matters.
EXAMPLE_FEED = "tf1hnvcppgow2sc2yvdvdicu3ynonsteflxdxrehjr2ybekdc2z3iuvnua_blog"
EXAMPLE_AUTHOR = "ti16ec4byclbdycdghgmrw6bojo5qcg4aznx7pxlntqpybcvdlrdsx5d2i"
#: Has the shape the routes match (so it reaches the handler) but does not parse.
BAD_FEED = "tf1abcdef_blog"
#: Statuses the walk cannot provoke cheaply: a peer that accepts TCP and never
#: answers makes the node wait out its 10 s handshake timeout.
NOT_WALKED = {("/v1/feeds/{feed}/latest", "get", "504"), ("/v1/blobs/{blob}", "get", "504")} | {
    # A node whose chunk store another process holds.
    (path, method, "503") for path, item in DOCUMENT["paths"].items() for method in item
    if "503" in item[method]["responses"]} | {
    # A full disk: tests/test_http_api.py fills a store's page limit and checks the
    # 507 of a publish against the same component (test_a_full_disk_answers_507...).
    (path, method, "507") for path, item in DOCUMENT["paths"].items() for method in item
    if "507" in item[method]["responses"]}


# -- the document -----------------------------------------------------------------


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` wherever it names properties and
    says nothing about others. Not inside ``if``/``not``: that would change their meaning."""
    if isinstance(schema, dict):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in ("properties", "$defs"):
                out[key] = {name: _strict(sub) for name, sub in value.items()}
            elif key in ("items", "then", "else"):
                out[key] = _strict(value)
            elif key in ("allOf", "anyOf", "oneOf"):
                out[key] = [_strict(sub) for sub in value]
            else:
                out[key] = value
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    return schema


def _registry(document: dict[str, Any]) -> Registry[Any]:
    return Registry().with_resource(  # type: ignore[no-any-return]
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )


_STRICT_DOCUMENT = copy.deepcopy(DOCUMENT)
_STRICT_DOCUMENT["components"]["schemas"] = {
    name: _strict(schema) for name, schema in DOCUMENT["components"]["schemas"].items()
}
REGISTRY = _registry(DOCUMENT)
STRICT_REGISTRY = _registry(_STRICT_DOCUMENT)


def validator(pointer: str, *, strict: bool = True) -> jsonschema.Draft202012Validator:
    """A validator for the schema at ``pointer`` in the document, its $refs resolved."""
    return jsonschema.Draft202012Validator(
        {"$ref": f"urn:openapi#{pointer}"},
        registry=STRICT_REGISTRY if strict else REGISTRY,
    )


def resolve(node: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """An OpenAPI object with a local $ref followed: ``(object, its pointer)``."""
    pointer = ""
    while "$ref" in node and len(node) == 1:
        pointer = node["$ref"].removeprefix("#")
        node = DOCUMENT
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node, pointer


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def concrete(path: str, **values: str) -> str:
    """A documented path with its parameters filled in."""
    values = {"feed": EXAMPLE_FEED, "seq": "7", "author": EXAMPLE_AUTHOR, "upload": "0" * 32,
              "blob": "tb156tr4mqk74yn6djsdkah4l7y45e77jva7xnuqtnylvsijui6iv2rkjq_12", **values}
    return re.sub(r"\{(\w+)\}", lambda m: values[m[1]], path)


def _all_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _all_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _all_refs(value)


def _schemas(node: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    """Every schema object the document holds, with its pointer (outside components too)."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = pointer + _pointer(key)
            if key == "schema" or (pointer == "/components/schemas"):
                yield where, value
            elif key != "example" and key != "examples":
                yield from _schemas(value, where)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _schemas(value, f"{pointer}/{index}")


# -- the document is valid ---------------------------------------------------------


def test_the_shipped_copy_is_the_spec_copy() -> None:
    shipped = resources.files("tidings.http").joinpath("openapi.json").read_bytes()
    assert shipped == SPEC_COPY.read_bytes()
    assert api_module.openapi_document() == SPEC_COPY.read_bytes()


def test_document_has_the_openapi_31_shape() -> None:
    assert re.fullmatch(r"3\.1\.\d+", DOCUMENT["openapi"])
    assert {"title", "version"} <= set(DOCUMENT["info"])
    assert DOCUMENT["paths"]
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["token"] == {**schemes["token"], "type": "apiKey", "in": "query",
                                "name": "token"}
    for path, method, op in operations():
        assert path.startswith("/"), path
        assert op["responses"], (path, method)
        assert re.fullmatch(r"[a-z][A-Za-z]+", op["operationId"])
        for status in op["responses"]:
            assert re.fullmatch(r"[1-5][0-9][0-9]", status), (path, method, status)
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), (path, method)
        for parameter in op.get("parameters", []):
            assert parameter["in"] in ("path", "query", "header"), parameter
            assert parameter.get("required", False) or parameter["in"] != "path", parameter
        # A token in the query is offered on GET only, as the server accepts it.
        offered = {name for alternative in op.get("security", DOCUMENT["security"])
                   for name in alternative}
        assert offered == ({"bearer", "token"} if method == "get" else {"bearer"}), path
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids))


def test_every_ref_resolves() -> None:
    refs = set(_all_refs(DOCUMENT))
    assert refs
    for target in refs:
        assert target.startswith("#/"), target
        resolve({"$ref": target})  # raises KeyError if it points nowhere


def test_every_schema_is_valid_json_schema() -> None:
    found = list(_schemas(DOCUMENT))
    assert len(found) > 30
    for pointer, schema in found:
        jsonschema.Draft202012Validator.check_schema(schema)
        validator(pointer, strict=False)  # every $ref inside it resolves when used
    for name in DOCUMENT["components"]["schemas"]:
        jsonschema.Draft202012Validator.check_schema(
            _STRICT_DOCUMENT["components"]["schemas"][name])


def test_examples_match_their_schemas() -> None:
    for name, schema in DOCUMENT["components"]["schemas"].items():
        for example in schema.get("examples", []):
            validator(_pointer("components", "schemas", name)).validate(example)
    for path, method, op in operations():
        body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            where = _pointer("paths", path, method, "requestBody", "content",
                             "application/json", "schema")
            validator(where, strict=False).validate(body["example"])
        for status, response in op["responses"].items():
            media = response.get("content", {}).get("application/json", {})
            if "example" in media:
                where = _pointer("paths", path, method, "responses", status, "content",
                                 "application/json", "schema")
                validator(where).validate(media["example"])


def test_the_content_schema_matches_what_content_to_json_gives() -> None:
    feed = FeedId.parse(EXAMPLE_FEED)
    ref = content_types.EntryRef(feed, 3)
    samples: list[content_types.Content] = [
        content_types.Post("hi"),
        content_types.Post("", title="Episode 1", links=("https://example.org/a",),
                           tags=("a", "b"), reply_to=ref, attachments=(
                               content_types.Attachment("https://example.org/1.mp3",
                                                        "audio/mpeg", 12, "One"),)),
        content_types.LinkShare("https://example.org/", title="t", comment="c", tags=("x",)),
        content_types.About("Ada", description="d", avatar=ref),
        content_types.About("Ada", avatar="https://example.org/a.png"),
        content_types.Follow(feed),
        content_types.Unfollow(feed),
        content_types.Unknown("org.example.quiz", {"q": "2 + 2?", "answers": [3, 4]}),
    ]
    shown = validator(_pointer("components", "schemas", "Content"))
    written = validator(_pointer("components", "schemas", "ContentInput"))
    for sample in samples:
        form = content_types.to_json(sample)
        shown.validate(form)
        written.validate(form)
        assert content_types.from_json(form) == sample
    # A newer version of a library type keeps every key: a reader sees it as is.
    newer = content_types.decode(bytes.fromhex("a3647479706564706f73746176026474657874f6"))
    assert newer is not None
    shown.validate(content_types.to_json(newer))
    # The shapes are checked: a post without text is not a post.
    assert not shown.is_valid({"type": "post", "title": "no text"})


CONTENT_VECTORS: dict[str, Any] = json.loads(
    (ROOT / "spec" / "vectors" / "content.json").read_text())


def test_the_content_schemas_take_the_content_vectors() -> None:
    shown = validator(_pointer("components", "schemas", "Content"))
    written = validator(_pointer("components", "schemas", "ContentInput"))
    for vector in CONTENT_VECTORS["valid"]:
        written.validate(vector["json"])
        shown.validate(vector["json"])
    for vector in CONTENT_VECTORS["read"]:
        shown.validate(vector["json"])


# -- the document, the prose and the server name the same errors -----------------------

HTTP_SOURCES = [ROOT / "src" / "tidings" / "http" / name
                for name in ("api.py", "server.py", "gateway.py", "blobs.py")]
SPEC_PROSE = ROOT / "spec" / "http-api.md"


def _codes_in_source() -> set[tuple[str, str]]:
    """(status, code) of every HttpError the server raises; status "*" when computed."""
    found = set()
    for source in HTTP_SOURCES:
        for status, code in re.findall(r'HttpError\(\s*([0-9]{3}|[\w.]+),\s*"([a-z_]+)"',
                                        source.read_text()):
            found.add((status if status.isdigit() else "*", code))
    return found


def _codes_in_document() -> set[tuple[str, str]]:
    """(status, code) of every error response the document lists."""
    listed = [(status, response) for _, _, op in operations()
              for status, response in op["responses"].items()]
    listed += [("404", {"$ref": "#/components/responses/NoSuchEndpoint"}),
               ("405", {"$ref": "#/components/responses/MethodNotAllowed"})]
    found = set()
    for status, response in listed:
        schema = resolve(response)[0].get("content", {}).get("application/json", {}) \
            .get("schema", {})
        codes = schema.get("properties", {}).get("error", {}).get("properties", {}) \
            .get("code", {}).get("enum", [])
        found |= {(status, code) for code in codes}
    return found


def _codes_in_prose() -> dict[str, set[str]]:
    text = SPEC_PROSE.read_text()
    table = text[text.index("| Code | Status | When |"):]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([0-9, ]+) \|", table, re.M)
    return {code: set(statuses.replace(" ", "").split(",")) for code, statuses in rows}


def test_every_error_code_the_server_raises_is_documented() -> None:
    source = _codes_in_source()
    document = _codes_in_document()
    prose = _codes_in_prose()
    source_codes = {code for _, code in source}
    assert source_codes == {code for _, code in document} == set(prose)
    for status, code in source:
        if status != "*":
            assert (status, code) in document, (status, code)
            assert status in prose[code], (status, code)
    for status, code in document:
        assert status in prose[code], (status, code)


def test_the_json_examples_of_the_prose_are_valid() -> None:
    blocks = re.findall(r"```json\n(.*?)```", SPEC_PROSE.read_text(), re.S)
    assert len(blocks) >= 4
    by_shape = [("error", "Error"), ("uptime", "Status"), ("hash", "Entry")]
    for block in blocks:
        value = json.loads(block)
        for key, name in by_shape:
            if key in value:
                validator(_pointer("components", "schemas", name)).validate(value)
                break
        else:
            assert set(value) in ({"url", "pid"}, {"url", "pid", "socket"}), value  # HOME/api.json


# -- the document names every route, and nothing else --------------------------------


def test_every_route_of_the_server_is_documented() -> None:
    documented = [(method.upper(), concrete(path)) for path, method, _ in operations()]
    for route in api_module._ROUTES:
        hits = [target for method, target in documented
                if method == route.method and route.pattern.fullmatch(target)]
        assert hits, f"{route.method} {route.pattern.pattern} is not in spec/openapi.json"


def test_every_documented_operation_is_a_route() -> None:
    for path, method, _ in operations():
        target = concrete(path)
        hits = [r for r in api_module._ROUTES
                if r.method == method.upper() and r.pattern.fullmatch(target)]
        assert len(hits) == 1, f"{method.upper()} {path} matches {len(hits)} routes"


# -- a node to talk to ------------------------------------------------------------------


@dataclass
class Client:
    """Requests to one node's local API, checked against the document."""

    node: EmbeddedNode
    address: tuple[str, int]
    token: str
    #: (path, method, status) seen, for the walk's coverage.
    seen: set[tuple[str, str, str]] = field(default_factory=set)

    @property
    def auth(self) -> list[tuple[str, str]]:
        return [("Authorization", f"Bearer {self.token}")]

    async def call(self, method: str, target: str, body: Any = None, *,
                   headers: list[tuple[str, str]] | None = None, auth: bool = True,
                   raw_body: bytes | None = None) -> Reply:
        sent = [*(self.auth if auth else []), *(headers or [])]
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
            if not any(name.lower() == "content-type" for name, _ in sent):
                sent.append(("Content-Type", "application/json"))
        if data is None and method == "POST":
            data = b""
        return await request(self.address, method, target, headers=sent, body=data)

    async def check(self, path: str, method: str, target: str, status: int,
                    code: str | None = None, **kwargs: Any) -> Reply:
        """One request whose answer must be ``status`` (and error ``code``) and what the
        document says ``path`` answers with it."""
        reply = await self.call(method.upper(), target, **kwargs)
        assert reply.status == status, (method, target, reply.status, reply.body[:300])
        conforms(path, method, reply)
        if code is not None:
            assert reply.json()["error"]["code"] == code, (target, reply.body)
        self.seen.add((path, method, str(status)))
        return reply

    async def check_raw(self, path: str, method: str, status: int, code: str,
                        data: bytes) -> None:
        """:meth:`check` for a request sent as raw bytes."""
        reply = await raw_request(self.address, data)
        assert reply.status == status, (data[:100], reply.status, reply.body)
        conforms(path, method, reply)
        assert reply.json()["error"]["code"] == code
        self.seen.add((path, method, str(status)))


def conforms(path: str, method: str, reply: Reply) -> None:
    """Raise unless the document lists ``reply``'s status for this operation, with its
    media type, headers and body schema."""
    op = DOCUMENT["paths"][path][method]
    listed = op["responses"].get(str(reply.status))
    assert listed is not None, f"{method.upper()} {path}: {reply.status} is not documented"
    response, pointer = resolve(listed)
    if not pointer:
        pointer = _pointer("paths", path, method, "responses", str(reply.status))
    conforms_to(response, pointer, reply)


def conforms_to(response: dict[str, Any], pointer: str, reply: Reply) -> None:
    for header in response.get("headers", {}):
        assert header.lower() in reply.headers, (pointer, header, reply.headers)
    media = response.get("content", {})
    if not media:
        assert reply.body == b"", pointer
        return
    assert reply.media_type in media, (pointer, reply.headers.get("content-type"))
    if reply.media_type.endswith("json"):
        where = pointer + _pointer("content", reply.media_type, "schema")
        validator(where).validate(reply.json())


@pytest.fixture
async def a(tmp_path: Path) -> AsyncIterator[Client]:
    """A node with the local API on a free port, which allows one web origin."""
    async with open_node(tmp_path / "a", listen="127.0.0.1:0", api="127.0.0.1:0",
                         cors_origins=[ALLOWED_ORIGIN]) as node:
        assert node.api_url is not None
        host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
        token = (tmp_path / "a" / "api.token").read_text().strip()
        yield Client(node, (host, int(port)), token)


@pytest.fixture
async def b(tmp_path: Path) -> AsyncIterator[EmbeddedNode]:
    """A peer without an API, holding a feed of its own."""
    async with open_node(tmp_path / "b", listen="127.0.0.1:0") as node:
        for index in range(5):
            await node.publish(content_types.Post(f"b{index}"), "blog")
        yield node


def address_text(node: EmbeddedNode) -> str:
    assert node.listen_address is not None
    host, port = node.listen_address
    return f"{host}:{port}"


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound here, so nobody listens on it."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


async def wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> None:
    """Poll an async ``condition`` until it is true (fails after ``timeout`` seconds)."""
    with trio.fail_after(timeout):
        while not await condition():
            await trio.sleep(0.01)


# -- the walk -------------------------------------------------------------------------


async def test_every_path_answers_as_documented(a: Client, b: EmbeddedNode) -> None:
    own = a.node.feed("blog")
    post = {"type": "post", "text": "hello", "tags": ["x"]}

    # publish: content and free bytes, and each way to get it wrong.
    first = await a.check("/v1/publish", "post", "/v1/publish", 201,
                          body={"log": "blog", "content": post})
    assert first.json()["content"] == post and first.json()["seq"] == 1
    second = await a.check("/v1/publish", "post", "/v1/publish", 201,
                           body={"log": "blog", "payload_base64": base64.b64encode(b"\x00\xff")
                                 .decode()})
    assert second.json()["content"] is None and second.json()["payload_size"] == 2
    await a.check("/v1/publish", "post", "/v1/publish", 201, body={"log": "blog",
                  "content": {"type": "org.example.quiz", "q": [1, {"x": None}]}})
    main = await a.check("/v1/publish", "post", "/v1/publish", 201,
                         body={"payload_base64": ""})
    assert main.json()["log"] == "main"
    for body, code in [
        ({"content": post, "payload_base64": "AA=="}, "invalid_request"),
        ({"log": "blog"}, "invalid_request"),
        ({"content": post, "extra": 1}, "invalid_request"),
        ({"log": 7, "content": post}, "invalid_request"),
        ({"log": "Not A Log", "content": post}, "invalid_request"),
        ({"payload_base64": "not base64!"}, "invalid_request"),
        ({"payload_base64": 12}, "invalid_request"),
        ({"content": {"type": "post"}}, "invalid_content"),
        ({"content": {"type": "post", "text": "x", "tags": ["b" * 65]}}, "invalid_content"),
        ({"content": "a post"}, "invalid_content"),
        ({"content": {"type": "quiz"}}, "invalid_content"),
        ([post], "invalid_request"),
    ]:
        await a.check("/v1/publish", "post", "/v1/publish", 400, code, body=body)
    await a.check("/v1/publish", "post", "/v1/publish", 400, "invalid_json",
                  raw_body=b'{"content": ', headers=[("Content-Type", "application/json")])
    await a.check("/v1/publish", "post", "/v1/publish", 400, "invalid_json",
                  raw_body=b'"\xff"', headers=[("Content-Type", "application/json")])
    await a.check("/v1/publish", "post", "/v1/publish", 415, "unsupported_media_type",
                  raw_body=json.dumps({"content": post}).encode())
    await a.check("/v1/publish", "post", "/v1/publish", 415, "unsupported_media_type",
                  body={"content": post}, headers=[("Content-Type", "text/plain")])
    await a.check("/v1/publish", "post", "/v1/publish", 201, body={"content": post},
                  headers=[("Content-Type", "Application/JSON; charset=utf-8")])
    await trio.to_thread.run_sync(a.node.store.delete_payload, own, 3)

    # Reading what is stored.
    entries = f"/v1/feeds/{own}/entries"
    page = (await a.check("/v1/feeds/{feed}/entries", "get", entries, 200)).json()
    assert [e["seq"] for e in page["entries"]] == [1, 2, 3] and page["next_since"] is None
    assert page["entries"][2]["payload_held"] is False
    page = (await a.check("/v1/feeds/{feed}/entries", "get", entries + "?since=2&limit=1",
                          200)).json()
    assert [e["seq"] for e in page["entries"]] == [2] and page["next_since"] == 3
    page = (await a.check("/v1/feeds/{feed}/entries", "get",
                          f"/v1/feeds/{EXAMPLE_FEED}/entries", 200)).json()
    assert page == {"entries": [], "next_since": None}
    for query in ("limit=0", "limit=1001", "since=0", "since=x", "limit=-1"):
        await a.check("/v1/feeds/{feed}/entries", "get", f"{entries}?{query}", 400,
                      "invalid_request")
    await a.check("/v1/feeds/{feed}/entries", "get", f"/v1/feeds/{BAD_FEED}/entries", 400,
                  "invalid_feed")
    authored = (await a.check("/v1/authors/{author}/entries", "get",
                              f"/v1/authors/{EXAMPLE_AUTHOR}/entries?log=blog", 200)).json()
    assert authored == {"entries": []}  # an author this node holds no log of
    await a.check("/v1/authors/{author}/entries", "get",
                  f"/v1/authors/{EXAMPLE_AUTHOR}/entries?limit=0", 400, "invalid_request")
    await a.check("/v1/authors/{author}/entries", "get", "/v1/authors/nope/entries", 404,
                  "not_found")
    await a.check("/v1/feeds/{feed}/entries", "get", "/v1/feeds/nope/entries", 404,
                  "not_found")

    one = (await a.check("/v1/feeds/{feed}/entries/{seq}", "get", f"{entries}/1", 200)).json()
    assert one == first.json() | {"state": "original", "corrected_by": None,
                                  "shown": first.json()["content"]}
    await a.check("/v1/feeds/{feed}/entries/{seq}", "get", f"{entries}/9", 404, "not_found")
    await a.check("/v1/feeds/{feed}/entries/{seq}", "get", f"{entries}/0", 404, "not_found")
    await a.check("/v1/feeds/{feed}/entries/{seq}", "get", f"/v1/feeds/{BAD_FEED}/entries/1",
                  400, "invalid_feed")

    payload = await a.check("/v1/feeds/{feed}/entries/{seq}/payload", "get",
                            f"{entries}/2/payload", 200)
    assert payload.body == b"\x00\xff"
    await a.check("/v1/feeds/{feed}/entries/{seq}/payload", "get", f"{entries}/3/payload",
                  404, "payload_not_held")
    await a.check("/v1/feeds/{feed}/entries/{seq}/payload", "get", f"{entries}/9/payload",
                  404, "not_found")
    await a.check("/v1/feeds/{feed}/entries/{seq}/payload", "get",
                  f"/v1/feeds/{BAD_FEED}/entries/1/payload", 400, "invalid_feed")

    # Following.
    theirs = b.feed("blog")
    for verb, following in (("follow", True), ("unfollow", False), ("follow", True)):
        for changed in (True, False):
            result = (await a.check(f"/v1/{verb}", "post", f"/v1/{verb}", 200,
                                    body={"feed": str(theirs)})).json()
            assert result == {"feed": str(theirs), "following": following, "changed": changed}
    result = (await a.check("/v1/follow", "post", "/v1/follow", 200,
                            body={"feed": EXAMPLE_FEED, "public": True})).json()
    assert result["changed"] is True
    public = (await a.call("GET", f"/v1/feeds/{a.node.feed('follows')}/entries")).json()
    assert public["entries"][0]["content"] == {"type": "follow", "feed": EXAMPLE_FEED}
    for verb in ("follow", "unfollow"):
        path = f"/v1/{verb}"
        for body, code in [({}, "invalid_request"), ({"feed": 1}, "invalid_request"),
                           ({"feed": EXAMPLE_FEED, "public": "yes"}, "invalid_request"),
                           ({"feed": EXAMPLE_FEED, "x": 1}, "invalid_request"),
                           ({"feed": BAD_FEED}, "invalid_feed")]:
            await a.check(path, "post", path, 400, code, body=body)
        await a.check(path, "post", path, 400, "invalid_json", raw_body=b"{",
                      headers=[("Content-Type", "application/json")])
        await a.check(path, "post", path, 415, "unsupported_media_type",
                      raw_body=b'{"feed": "x"}',
                      headers=[("Content-Type", "application/x-www-form-urlencoded")])
    following = (await a.check("/v1/following", "get", "/v1/following", 200)).json()
    assert following == {"following": sorted([str(theirs), EXAMPLE_FEED])}
    feeds = (await a.check("/v1/feeds", "get", "/v1/feeds", 200)).json()["feeds"]
    assert {f["feed"] for f in feeds} >= {str(own), str(theirs), EXAMPLE_FEED}

    # The latest entries from a peer: none connected, then one.
    latest = f"/v1/feeds/{theirs}/latest"
    await a.check("/v1/feeds/{feed}/latest", "get", latest, 409, "no_peer")
    await a.check("/v1/peers", "get", "/v1/peers", 200)
    got = (await a.check("/v1/feeds/{feed}/latest", "get",
                         f"{latest}?peer={address_text(b)}", 200)).json()
    assert [e["seq"] for e in got["entries"]] == [1, 2, 3, 4, 5]
    await a.check("/v1/peers", "post", "/v1/peers", 202, body={"address": address_text(b)})
    for body, code in [({}, "invalid_request"), ({"address": 7654}, "invalid_request"),
                       ({"address": "host:port"}, "invalid_request"),
                       ({"address": "h:1", "via": "x"}, "invalid_request")]:
        await a.check("/v1/peers", "post", "/v1/peers", 400, code, body=body)
    await a.check("/v1/peers", "post", "/v1/peers", 400, "invalid_json", raw_body=b"[",
                  headers=[("Content-Type", "application/json")])
    await a.check("/v1/peers", "post", "/v1/peers", 415, "unsupported_media_type",
                  raw_body=b"")

    async def connected() -> bool:
        reply = await a.check("/v1/peers", "get", "/v1/peers", 200)
        return bool(reply.json()["peers"])

    await wait_for(connected)
    status = (await a.check("/v1/status", "get", "/v1/status", 200)).json()
    assert status["author"] == str(a.node.author) and status["api"] == a.node.api_url
    got = (await a.check("/v1/feeds/{feed}/latest", "get", latest + "?count=2", 200)).json()
    assert [e["seq"] for e in got["entries"]] == [4, 5]
    for query in ("count=0", "count=1001", "count=x"):
        await a.check("/v1/feeds/{feed}/latest", "get", f"{latest}?{query}", 400,
                      "invalid_request")
    await a.check("/v1/feeds/{feed}/latest", "get", f"/v1/feeds/{BAD_FEED}/latest", 400,
                  "invalid_feed")
    await a.check("/v1/feeds/{feed}/latest", "get", "/v1/feeds/x/latest", 404, "not_found")
    with closed_port() as port:
        await a.check("/v1/feeds/{feed}/latest", "get", f"{latest}?peer=127.0.0.1:{port}",
                      502, "peer_unreachable")
    async with trio.open_nursery() as nursery:
        # A "peer" that hangs up at once: the handshake fails.
        listeners = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), _hang_up, 0)
        port = listeners[0].socket.getsockname()[1]
        await a.check("/v1/feeds/{feed}/latest", "get", f"{latest}?peer=127.0.0.1:{port}",
                      502, "peer_error")
        nursery.cancel_scope.cancel()

    # The event stream: its errors, and its start (test_events_* test the rest).
    events = "/v1/events"
    for query, code in [("after=12", "invalid_request"), ("after=1-2-3", "invalid_request"),
                        (f"feeds={BAD_FEED}", "invalid_feed"),
                        (f"feeds={own},", "invalid_feed"),
                        ("feeds=" + ",".join([str(own)] * 101), "invalid_request")]:
        await a.check(events, "get", f"{events}?{query}", 400, code)
    await a.check(events, "get", events, 400, "invalid_request",
                  headers=[("Last-Event-ID", "yesterday")])
    stream = await read_events(a.address, f"{events}?after=0-0&own=true", headers=a.auth,
                               until=lambda s: len(s.of("entry")) >= 3)
    stream_conforms(stream)
    a.seen.add((events, "get", "200"))

    # This document, and the feed gateway.
    spec = await a.check("/v1/openapi.json", "get", "/v1/openapi.json", 200)
    assert spec.body == SPEC_COPY.read_bytes()
    for kind in ("atom", "json"):
        path = f"/feeds/{{feed}}.{kind}"
        target = f"/feeds/{own}.{kind}"
        await a.check(path, "get", target, 200)
        await a.check(path, "get", f"{target}?limit=1&before=3", 200)
        reply = await a.call("GET", f"{target}?token={a.token}", auth=False)
        assert reply.status == 200
        conforms(path, "get", reply)
        for query in ("before=1", "before=x", "limit=0", "limit=201"):
            await a.check(path, "get", f"{target}?{query}", 400, "invalid_request")
        await a.check(path, "get", f"/feeds/{BAD_FEED}.{kind}", 400, "invalid_feed")
        await a.check(path, "get", f"/feeds/{EXAMPLE_FEED}.{kind}", 404, "not_found")
        await a.check(path, "get", f"/feeds/nope.{kind}", 404, "not_found")
    reply = await a.call("GET", f"/feeds/{own}.atom", headers=[("Accept", "text/html,*/*")])
    assert reply.media_type == "application/xml"  # what a browser renders, with the XSLT
    conforms("/feeds/{feed}.atom", "get", reply)

    # The gateway's pages, for people.
    await a.check("/", "get", "/", 200)
    await a.check("/", "get", f"/?after={EXAMPLE_FEED}", 200)
    await a.check("/", "get", "/?after=nope", 400, "invalid_request")
    page_path = "/feeds/{feed}"
    await a.check(page_path, "get", f"/feeds/{own}", 200)
    await a.check(page_path, "get", f"/feeds/{own}?limit=1&before=3", 200)
    for query in ("before=1", "before=x", "limit=0", "limit=201"):
        await a.check(page_path, "get", f"/feeds/{own}?{query}", 400, "invalid_request")
    await a.check(page_path, "get", f"/feeds/{BAD_FEED}", 400, "invalid_feed")
    await a.check(page_path, "get", f"/feeds/{EXAMPLE_FEED}", 404, "not_found")
    entry_path = "/feeds/{feed}/{seq}"
    await a.check(entry_path, "get", f"/feeds/{own}/1", 200)
    await a.check(entry_path, "get", f"/feeds/{own}/0", 404, "not_found")
    await a.check(entry_path, "get", f"/feeds/{own}/99999", 404, "not_found")
    await a.check(entry_path, "get", f"/feeds/{BAD_FEED}/1", 400, "invalid_feed")
    await a.node.publish(content_types.Retract(2), log="blog")
    await a.check(entry_path, "get", f"/feeds/{own}/2", 410)
    await a.check("/assets/atom.xsl", "get", "/assets/atom.xsl", 200)

    await a.check("/feeds/{feed}.rss", "get", f"/feeds/{own}.rss", 200)
    await a.check("/feeds/{feed}.rss", "get", f"/feeds/{EXAMPLE_FEED}.rss", 404, "not_found")

    # Blobs (spec/13): the document's example blob is "hello, world".
    store = a.node.blob_store
    assert store is not None
    blob = await trio.to_thread.run_sync(store.import_bytes, b"hello, world")
    other = await trio.to_thread.run_sync(store.import_bytes, b"another")
    # The gateway serves only blobs its feeds attach (the local API serves any).
    await a.check("/feeds/{feed}/blobs/{blob}", "get", f"/feeds/{own}/blobs/{blob}", 404,
                  "not_found")
    await a.node.publish(content_types.Post("hello", attachments=(content_types.Attachment(
        None, "text/plain", 12, blob=blob),)), log="blog")
    bad_blob = "tb1" + "a" * 55 + "_12"
    unknown = "tb1b2ff5fbhjzjmfmg6pk7r22de7u4zpblxtahbg2wzbolbnu2ndi7ht2a_0"
    await a.check("/v1/blobs", "get", "/v1/blobs", 200)
    for path, target in (("/v1/blobs/{blob}", f"/v1/blobs/{blob}"),
                         ("/feeds/{feed}/blobs/{blob}", f"/feeds/{own}/blobs/{blob}")):
        assert (await a.check(path, "get", target, 200)).body == b"hello, world"
        ranged = await a.check(path, "get", target, 206, headers=[("Range", "bytes=0-4")])
        assert ranged.body == b"hello" and ranged.headers["content-range"] == "bytes 0-4/12"
        await a.check(path, "get", target, 304, headers=[("If-None-Match", f'"{blob}"')])
        await a.check(path, "get", target, 416, "range_not_satisfiable",
                      headers=[("Range", "bytes=12-")])
        await a.check(path, "get", target.replace(str(blob), bad_blob), 400, "invalid_blob")
        await a.check(path, "get", target.replace(str(blob), unknown), 404, "not_found")
    await a.check("/feeds/{feed}/blobs/{blob}", "get", f"/feeds/{BAD_FEED}/blobs/{blob}", 400,
                  "invalid_feed")
    info = (await a.check("/v1/blobs/{blob}/info", "get", f"/v1/blobs/{blob}/info", 200)).json()
    assert info["complete"] and info["size"] == 12
    await a.check("/v1/blobs/{blob}/info", "get", f"/v1/blobs/{bad_blob}/info", 400,
                  "invalid_blob")
    for action in ("fetch", "pin", "unpin"):
        path = f"/v1/blobs/{{blob}}/{action}"
        await a.check(path, "post", f"/v1/blobs/{blob}/{action}", 200)
        await a.check(path, "post", f"/v1/blobs/{bad_blob}/{action}", 400, "invalid_blob")
        if action != "fetch":
            await a.check(path, "post", f"/v1/blobs/{unknown}/{action}", 404, "not_found")
    removed = await a.check("/v1/blobs/{blob}", "delete", f"/v1/blobs/{other}", 200)
    assert removed.json() == {"blob": str(other), "removed": True}
    await a.check("/v1/blobs/{blob}", "delete", f"/v1/blobs/{bad_blob}", 400, "invalid_blob")
    started = (await a.check("/v1/uploads", "post", "/v1/uploads", 201)).json()
    piece = "/v1/uploads/{upload}"
    upload = f"/v1/uploads/{started['upload']}"
    await a.check(piece, "put", upload, 200, raw_body=b"hello, ",
                  headers=[("Content-Range", "bytes 0-6/*")])
    await a.check(piece, "put", upload, 409, "wrong_offset", raw_body=b"world",
                  headers=[("Content-Range", "bytes 3-7/*")])
    await a.check(piece, "put", upload, 400, "invalid_request", raw_body=b"world")
    await a.check(piece, "put", "/v1/uploads/" + "0" * 32, 404, "not_found", raw_body=b"x",
                  headers=[("Content-Range", "bytes 0-0/*")])
    done = await a.check(piece, "put", upload, 200, raw_body=b"world",
                         headers=[("Content-Range", "bytes 7-11/*")])
    assert done.json()["offset"] == 12
    finished = await a.check("/v1/uploads/{upload}/finish", "post", upload + "/finish", 200)
    assert finished.json()["blob"] == str(blob)
    await a.check("/v1/uploads/{upload}/finish", "post", upload + "/finish", 404, "not_found")

    # What every operation answers before its handler runs.
    for path, method, _ in operations():
        # Latest asks the peer, which holds only its own feed.
        target = concrete(path, feed=str(theirs if "latest" in path else own), seq="1")
        verb = method.upper()
        await a.check(path, method, target, 401, "unauthorized", auth=False)
        await a.check(path, method, target, 401, "unauthorized", auth=False,
                      headers=[("Authorization", "Bearer wrong-token-of-some-length")])
        await a.check(path, method, target, 401, "unauthorized", auth=False,
                      headers=[("Authorization", f"Basic {a.token}")])
        await a.check(path, method, target, 403, "host_not_allowed",
                      headers=[("Host", f"evil.example:{a.address[1]}")])
        await a.check(path, method, target, 403, "origin_not_allowed",
                      headers=[("Origin", OTHER_ORIGIN)])
        await a.check_raw(path, method, 413, "payload_too_large", (
            f"{verb} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3000000\r\n\r\n"
        ).encode())
        # One byte over the bound, in a header that never ends: the server reads it all,
        # so its answer is not lost to a reset.
        start = f"{verb} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: ".encode()
        await a.check_raw(path, method, 431, "bad_request",
                          start.ljust(server_module.MAX_HEADER_BYTES + 1, b"x"))
        many = "&".join(f"f{i}=1" for i in range(65))
        await a.check(path, method, f"{target}?{many}", 400, "bad_request")
        await a.check_raw(path, method, 501, "bad_request", (
            f"{verb} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n"
        ).encode())
        if method == "get":
            # The token as a query parameter, for EventSource and feed readers.
            if path != "/v1/events":
                reply = await a.call(verb, f"{target}?token={a.token}", auth=False)
                assert reply.status < 300, (target, reply.status, reply.body)
        else:
            await a.check(path, method, f"{target}?token={a.token}", 401, "unauthorized",
                          auth=False, body={})
        # Every other method of a documented path is refused, and says which it takes.
        taken = {m.upper() for m in METHODS if m in DOCUMENT["paths"][path]}
        for other in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"):
            if other in taken or (other == "HEAD" and "GET" in taken):
                continue
            reply = await a.call(other, target, raw_body=b"" if other != "HEAD" else None)
            assert reply.status == 405, (other, target, reply.status)
            if other != "HEAD":  # an answer to HEAD has no body
                conforms_to(*_component("MethodNotAllowed"), reply)
            assert set(reply.headers["allow"].split(", ")) == taken

    for target in ("/index.html", "/v1", "/v1/", "/v2/status", "/v1/status/", "/feeds/x.rss",
                   f"/v1/feeds/{own}", f"/v1/feeds/{own}/entries/x"):
        reply = await a.call("GET", target)
        assert reply.status == 404, target
        conforms_to(*_component("NoSuchEndpoint"), reply)

    documented = {(path, method, status) for path, method, op in operations()
                  for status in op["responses"]}
    unprovokable = {(path, method, "500") for path, method, _ in documented}  # a bug's answer
    assert documented - a.seen == NOT_WALKED | unprovokable, sorted(
        (documented - a.seen) ^ (NOT_WALKED | unprovokable))
    assert a.seen <= documented


def _component(name: str) -> tuple[dict[str, Any], str]:
    pointer = _pointer("components", "responses", name)
    return DOCUMENT["components"]["responses"][name], pointer


async def _hang_up(stream: trio.SocketStream) -> None:
    await stream.aclose()


def stream_conforms(stream: EventStream) -> None:
    """The stream's status, headers and every event's data are as the document says."""
    op = DOCUMENT["paths"]["/v1/events"]["get"]
    assert stream.status == 200
    media = op["responses"]["200"]["content"]
    assert stream.headers["content-type"] in media
    assert stream.headers["cache-control"] == "no-store"
    schemas = media["text/event-stream"]["x-events"]
    for event in stream.events:
        if event.comment is not None or not event.data:
            continue
        assert event.event in schemas, event
        validator(schemas[event.event]["$ref"].removeprefix("#")).validate(event.json())


async def test_publish_takes_the_valid_content_vectors_and_names_what_is_wrong(
        a: Client) -> None:
    for vector in CONTENT_VECTORS["valid"]:
        reply = await a.check("/v1/publish", "post", "/v1/publish", 201,
                              body={"content": vector["json"]})
        entry = reply.json()
        assert base64.b64decode(entry["payload_base64"]).hex() == vector["hex"], vector["name"]
    for vector in CONTENT_VECTORS["invalid_json"]:
        reply = await a.check("/v1/publish", "post", "/v1/publish", 400, "invalid_content",
                              body={"content": vector["json"]})
        assert reply.json()["error"]["message"].startswith(vector["field"] + ": ")


# -- access: tokens, hosts, origins ------------------------------------------------------


async def test_the_token_file_is_private_and_written_at_init(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    home.init()
    token_file = tmp_path / "h" / "api.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert len(token_file.read_text().strip()) >= 32


async def test_a_running_node_says_where_its_api_is(a: Client, tmp_path: Path) -> None:
    said = json.loads((tmp_path / "a" / "api.json").read_text())
    assert said["url"] == a.node.api_url
    assert said["url"] == f"http://{a.address[0]}:{a.address[1]}"
    assert isinstance(said["pid"], int)


async def test_loopback_host_names_are_accepted(a: Client) -> None:
    port = a.address[1]
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", "127.0.0.1",
                 f"[::1]:{port}", "[::1]", f"LOCALHOST:{port}", f"127.1.2.3:{port}"):
        reply = await a.call("GET", "/v1/status", headers=[("Host", host)])
        assert reply.status == 200, host
    for host in ("evil.example", f"127.0.0.1.evil.example:{port}", f"[::2]:{port}",
                 "localhost.:80", f"0.0.0.0:{port}"):
        reply = await a.call("GET", "/v1/status", headers=[("Host", host)])
        assert reply.status == 403, host
        assert reply.json()["error"]["code"] == "host_not_allowed"


async def preflight(client: Client, target: str) -> Reply:
    return await client.call("OPTIONS", target, auth=False, headers=[
        ("Origin", ALLOWED_ORIGIN), ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "authorization, content-type"),
    ])


async def test_cors_preflight_says_what_is_allowed(a: Client) -> None:
    for target in ("/v1/publish", "/v1/events", "/anything"):  # no token needed
        reply = await preflight(a, target)
        assert reply.status == 204 and reply.body == b""
        assert set(reply.headers["access-control-allow-methods"].split(", ")) == {"GET",
                                                                                  "POST"}
        allowed = {h.strip().lower() for h in
                   reply.headers["access-control-allow-headers"].split(",")}
        assert allowed >= {"authorization", "content-type", "last-event-id"}
        assert int(reply.headers["access-control-max-age"]) > 0


async def test_cors_preflight_allows_the_origin(a: Client) -> None:
    reply = await preflight(a, "/v1/publish")
    assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "origin" in reply.headers["vary"].lower()


async def test_cors_answers_carry_the_allowed_origin(a: Client) -> None:
    for method, target, body in (("GET", "/v1/status", None),
                                 ("POST", "/v1/publish", {"payload_base64": ""})):
        reply = await a.call(method, target, body, headers=[("Origin", ALLOWED_ORIGIN)])
        assert reply.status < 300
        assert reply.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert "origin" in reply.headers["vary"].lower()
    # Errors carry the header too, so the app can read them.
    refused = await a.call("GET", "/v1/status", auth=False, headers=[("Origin", ALLOWED_ORIGIN)])
    assert refused.status == 401
    assert refused.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    # Any other origin is refused outright, even for a preflight, and gets no CORS header.
    for method in ("OPTIONS", "GET"):
        reply = await a.call(method, "/v1/status", headers=[("Origin", OTHER_ORIGIN)])
        assert reply.status == 403 and reply.json()["error"]["code"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in reply.headers
    # OPTIONS without an Origin is not a preflight: a method like any other.
    reply = await a.call("OPTIONS", "/v1/status")
    assert reply.status == 405


async def test_without_cors_origins_every_origin_is_refused(tmp_path: Path) -> None:
    async with open_node(tmp_path / "n", api="127.0.0.1:0") as node:
        assert node.api_url is not None
        host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
        token = (tmp_path / "n" / "api.token").read_text().strip()
        for origin in (ALLOWED_ORIGIN, "null", node.api_url):
            reply = await request((host, int(port)), "GET", "/v1/status", headers=[
                ("Authorization", f"Bearer {token}"), ("Origin", origin)])
            assert reply.status == 403, origin
            assert reply.json()["error"]["code"] == "origin_not_allowed"


async def test_every_answer_says_nosniff_and_json_errors_have_a_message(a: Client) -> None:
    for target in ("/v1/status", "/v1/nothing"):
        reply = await a.call("GET", target)
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.media_type == "application/json"
    error = (await a.call("GET", "/v1/nothing")).json()["error"]
    assert error["message"]


async def test_a_connection_serves_several_requests(a: Client) -> None:
    """Keep-alive: two requests on one connection get two answers, in order."""
    stream = await trio.open_tcp_stream(*a.address)
    async with stream:
        one = (f"GET /v1/following HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {a.token}\r\n\r\n")
        await stream.send_all((one + one.replace("following", "peers")).encode())
        received = b""
        with trio.fail_after(30):
            while received.count(b"HTTP/1.1 200") < 2 or not received.endswith(b"}\n"):
                received += await stream.receive_some(65536)
        assert received.index(b"following") < received.index(b"peers")


# -- the event stream ------------------------------------------------------------------


async def publish(client: Client, log: str, text: str) -> dict[str, Any]:
    reply = await client.call("POST", "/v1/publish",
                              {"log": log, "content": {"type": "post", "text": text}})
    assert reply.status == 201, reply.body
    return dict(reply.json())


def entries_of(stream: EventStream) -> list[tuple[str, int, str]]:
    return [(e.json()["feed"], e.json()["seq"], e.id or "") for e in stream.of("entry")]


async def test_events_start_with_retry_and_ready_then_entries_with_cursor_ids(
        a: Client) -> None:
    for index in range(3):
        await publish(a, "blog", f"p{index}")
    stream = await read_events(a.address, "/v1/events?own=true&after=0-0", headers=a.auth,
                               until=lambda s: len(s.of("entry")) == 3)
    stream_conforms(stream)
    assert stream.events[0].retry == 2000 and not stream.events[0].data
    ready = stream.of("ready")
    assert len(ready) == 1 and stream.events.index(ready[0]) == 1
    assert ready[0].id == "0-0" == ready[0].json()["cursor"]
    for event in stream.of("entry"):
        assert event.id == event.json()["cursor"]
    assert [seq for _, seq, _ in entries_of(stream)] == [1, 2, 3]


async def test_events_resume_after_a_cursor_exactly_once(a: Client) -> None:
    """Hang up after each entry and resume from its id: every stored entry comes exactly
    once, each feed's in seq order, whichever way the cursor is given."""
    for index in range(4):
        await publish(a, "blog", f"b{index}")
        await publish(a, "notes", f"n{index}")
    wanted = 8
    everything = await read_events(a.address, "/v1/events?own=true&after=0-0",
                                   headers=a.auth, until=lambda s: len(s.of("entry")) == wanted)
    expected = entries_of(everything)
    assert len(expected) == len(set(expected)) == wanted
    for feed in {f for f, _, _ in expected}:
        assert [s for f, s, _ in expected if f == feed] == [1, 2, 3, 4]
    for how in ("header", "query", "both"):
        seen: list[tuple[str, int, str]] = []
        cursor = "0-0"
        while len(seen) < wanted:
            headers = list(a.auth)
            target = "/v1/events?own=true"
            if how in ("header", "both"):
                headers.append(("Last-Event-ID", cursor))
            if how == "query":
                target += f"&after={cursor}"
            if how == "both":  # the header wins over a stale query
                target += "&after=0-0"
            stream = await read_events(a.address, target, headers=headers,
                                       until=lambda s: bool(s.of("entry")))
            assert stream.of("ready")[0].id == cursor
            got = entries_of(stream)
            seen += got
            cursor = got[-1][2]
        assert seen == expected, how


async def test_events_from_now_include_entries_published_while_streaming(a: Client) -> None:
    await publish(a, "blog", "before")

    async def publish_two() -> None:
        await publish(a, "blog", "live 1")
        await publish(a, "blog", "live 2")

    stream = await read_events(a.address, "/v1/events?own=1", headers=a.auth,
                               until=lambda s: len(s.of("entry")) == 2, started=publish_two)
    stream_conforms(stream)
    assert [e.json()["content"]["text"] for e in stream.of("entry")] == ["live 1", "live 2"]


async def test_events_feeds_and_own_choose_what_comes(
        a: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_module, "KEEPALIVE_EVERY", 0.05)
    await publish(a, "blog", "b")
    await publish(a, "notes", "n")
    notes = str(a.node.feed("notes"))

    def keep_alive(stream: EventStream) -> bool:
        return any(e.comment == "keep-alive" for e in stream.events)

    # By default only followed feeds: none of this node's own entries, just keep-alives.
    stream = await read_events(a.address, "/v1/events?after=0-0", headers=a.auth,
                               until=keep_alive)
    assert not stream.of("entry")
    for query in ("own=false", "own=yes", "feeds="):
        stream = await read_events(a.address, f"/v1/events?after=0-0&{query}",
                                   headers=a.auth, until=keep_alive)
        assert not stream.of("entry"), query
    stream = await read_events(a.address, f"/v1/events?after=0-0&feeds={notes}",
                               headers=a.auth, until=keep_alive)
    assert [f for f, _, _ in entries_of(stream)] == [notes]
    # The token may come as a query parameter: EventSource cannot send headers.
    stream = await read_events(a.address, f"/v1/events?after=0-0&own=true&token={a.token}",
                               until=keep_alive)
    assert len(stream.of("entry")) == 2


async def test_events_skip_many_unwanted_arrivals_at_once(
        a: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry behind more than a page of other feeds' arrivals comes at once, not after
    a keep-alive. (The keep-alive interval is long enough for two page reads, short
    enough that a wait for the next store change would show.)"""
    monkeypatch.setattr(api_module, "KEEPALIVE_EVERY", 1.0)
    for index in range(70):  # one arrival each; a subscription reads 64 a page
        await a.node.publish(f"{index}".encode(), "other")
    await publish(a, "blog", "wanted")
    blog = a.node.feed("blog")
    stream = await read_events(
        a.address, f"/v1/events?after=0-0&feeds={blog}", headers=a.auth,
        until=lambda s: bool(s.of("entry")) or any(e.comment for e in s.events))
    assert stream.of("entry"), "a keep-alive came before the entry"


# -- what the server gets wrong (xfail until fixed) ----------------------------------------


async def test_events_miss_nothing_when_a_big_batch_arrives(
        a: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_module, "KEEPALIVE_EVERY", 1.0)
    count = 1500

    def publish_lines() -> None:
        """What `tidings publish --lines` does while the node runs: another writer."""
        book = Home(tmp_path / "a").open_logbook()
        try:
            book.publish_batch([b"%d" % i for i in range(count)], "blog")
        finally:
            book.store.close()

    async def publish() -> None:
        await trio.to_thread.run_sync(publish_lines)

    def done(stream: EventStream) -> bool:
        """All came, or some came and then the stream fell quiet (a keep-alive)."""
        kinds = [e.event if e.comment is None else ":" for e in stream.events]
        return kinds.count("entry") == count or ("entry" in kinds and kinds[-1] == ":")

    stream = await read_events(a.address, "/v1/events?own=true", headers=a.auth,
                               started=publish, until=done, timeout=20)
    assert [seq for _, seq, _ in entries_of(stream)] == list(range(1, count + 1))


def test_an_api_address_without_a_port_means_7655(tmp_path: Path) -> None:
    """open_node(api="127.0.0.1") and `tidings up --api 127.0.0.1` read it the same way."""
    home = Home(tmp_path / "p")
    for mode in ("embedded", "daemon"):
        assert home.node_options(mode, api_listen="127.0.0.1").api == ("127.0.0.1", 7655)


async def test_a_seq_beyond_the_largest_is_not_found(a: Client) -> None:
    own = a.node.feed("blog")
    await publish(a, "blog", "x")
    for suffix in ("", "/payload"):
        reply = await a.call("GET", f"/v1/feeds/{own}/entries/9999999999999999999{suffix}")
        assert reply.status == 404
        assert reply.json()["error"]["code"] == "not_found"


async def test_an_entry_from_the_far_future_can_be_read(tmp_path: Path) -> None:
    home = Home(tmp_path / "f")
    home.init()
    book = home.open_logbook(need_identity=True)
    book._clock = lambda: 2**64 - 1
    try:
        feed = book.publish(b"from the future", "future").feed
    finally:
        book.store.close()
    async with open_node(tmp_path / "f", api="127.0.0.1:0") as node:
        assert node.api_url is not None
        host, port = node.api_url.removeprefix("http://").rsplit(":", 1)
        token = (tmp_path / "f" / "api.token").read_text().strip()
        client = Client(node, (host, int(port)), token)
        reply = await client.check("/v1/feeds/{feed}/entries", "get",
                                   f"/v1/feeds/{feed}/entries", 200)
        assert reply.json()["entries"][0]["timestamp"] == 2**64 - 1


async def test_a_malformed_peer_address_is_an_invalid_request(a: Client) -> None:
    reply = await a.call("GET", f"/v1/feeds/{EXAMPLE_FEED}/latest?peer=no-port-here:x")
    assert reply.status == 400
    assert reply.json()["error"]["code"] == "invalid_request"


async def test_latest_from_a_connected_peer_by_address(a: Client, b: EmbeddedNode) -> None:
    reply = await a.call("POST", "/v1/peers", {"address": address_text(b)})
    assert reply.status == 202

    async def connected() -> bool:
        return bool((await a.call("GET", "/v1/peers")).json()["peers"])

    await wait_for(connected)
    reply = await a.call("GET", f"/v1/feeds/{b.feed('blog')}/latest?peer={address_text(b)}")
    assert reply.status == 200, reply.body
    assert [e["seq"] for e in reply.json()["entries"]] == [1, 2, 3, 4, 5]


async def test_headers_over_the_bound_are_refused_however_they_arrive(a: Client) -> None:
    reply = await a.call("GET", "/v1/status", headers=[("X-Filler", "x" * 20_000)])
    assert reply.status == 431
    assert reply.json()["error"]["code"] == "bad_request"


async def test_a_page_cut_short_by_size_still_links_to_the_next(a: Client) -> None:
    big = bytes(1 << 20)
    for _ in range(65):
        await a.node.publish(big, "big")
    reply = await a.call("GET", f"/v1/feeds/{a.node.feed('big')}/entries?limit=65")
    page = reply.json()
    seqs = [entry["seq"] for entry in page["entries"]]
    assert seqs == list(range(1, 66)) or page["next_since"] == seqs[-1] + 1


async def test_a_head_request_leaves_the_connection_usable(a: Client) -> None:
    stream = await trio.open_tcp_stream(*a.address)
    async with stream:
        head = f"Host: 127.0.0.1\r\nAuthorization: Bearer {a.token}\r\n\r\n"
        await stream.send_all(f"HEAD /v1/status HTTP/1.1\r\n{head}"
                              f"GET /v1/following HTTP/1.1\r\n{head}".encode())
        received = b""
        with trio.fail_after(30):
            while chunk := await stream.receive_some(65536):
                received += chunk
                if b"following" in received:
                    break
        assert received.startswith(b"HTTP/1.1 200")  # HEAD answers as GET, without a body
        assert received.count(b"HTTP/1.1 200") == 2 and b'{"following": []}' in received
        assert b'"author"' not in received




async def test_a_request_must_arrive_within_the_request_timeout(
        autojump_clock: trio.abc.Clock) -> None:
    async def handler(request: server_module.Request) -> server_module.Response:
        return server_module.json_response({})

    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(server_module.HttpServer(handler).serve,
                                         "127.0.0.1", 0)
        stream = await trio.open_tcp_stream(host, port)
        start = trio.current_time()
        closed_at: list[float] = []

        async def reader() -> None:
            try:
                while await stream.receive_some(1024):
                    pass
            except trio.BrokenResourceError:
                pass
            closed_at.append(trio.current_time())

        nursery.start_soon(reader)
        try:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            for _ in range(12):  # a byte every 5 s for a minute
                await trio.sleep(5)
                if closed_at:
                    break
                await stream.send_all(b"x")
        except trio.BrokenResourceError:
            pass
        with trio.fail_after(120):
            while not closed_at:
                await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert closed_at[0] - start <= server_module.REQUEST_TIMEOUT + 1


async def test_a_silent_connection_and_an_idle_kept_alive_one_are_closed(
        autojump_clock: trio.abc.Clock) -> None:
    """A new connection that sends nothing is closed after REQUEST_TIMEOUT; one kept
    alive after an answer, after KEEPALIVE_TIMEOUT idle (not before)."""
    async def handler(request: server_module.Request) -> server_module.Response:
        return server_module.json_response({})

    async def closed_after(stream: trio.SocketStream) -> float:
        start = trio.current_time()
        with trio.fail_after(300):
            while await stream.receive_some(1024):
                start = trio.current_time()  # (an answer: idle from here)
        return trio.current_time() - start

    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(server_module.HttpServer(handler).serve,
                                         "127.0.0.1", 0)
        silent = await trio.open_tcp_stream(host, port)
        waited = await closed_after(silent)
        assert server_module.REQUEST_TIMEOUT <= waited <= server_module.REQUEST_TIMEOUT + 1
        kept = await trio.open_tcp_stream(host, port)
        await kept.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        waited = await closed_after(kept)
        assert (server_module.KEEPALIVE_TIMEOUT <= waited
                <= server_module.KEEPALIVE_TIMEOUT + 1)
        nursery.cancel_scope.cancel()


async def test_a_failing_handler_gets_a_500_and_the_server_keeps_serving() -> None:
    calls = []

    async def handler(request: server_module.Request) -> server_module.Response:
        calls.append(request.path)
        if request.path == "/boom":
            raise RuntimeError("a bug")
        return server_module.json_response({"ok": True})

    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(server_module.HttpServer(handler).serve,
                                         "127.0.0.1", 0)
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            with trio.fail_after(30):
                while b'{"ok": true}' not in received:
                    received += await stream.receive_some(65536)
        assert received.startswith(b"HTTP/1.1 500")
        assert b'"code": "internal"' in received
        assert calls == ["/boom", "/fine"]
        nursery.cancel_scope.cancel()
