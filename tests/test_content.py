"""Content conventions (spec/content.md): types, bounds, the JSON form, reading rules.

The published vectors (spec/vectors/content.json) are loaded, never copied; the
rest checks each bound at and past its value, that writers name the bad field,
and that reading never fails on any bytes.
"""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tidings.core.content
from tidings.content import (
    MAX_CONTENT_SIZE,
    MAX_FOLLOW_PAYLOAD,
    About,
    Attachment,
    Content,
    EntryRef,
    Follow,
    LinkShare,
    Post,
    Replace,
    Retract,
    Unfollow,
    Unknown,
    decode,
    describe,
    encode,
    follow_payload,
    follows_in,
    from_json,
    parse_follow,
    to_json,
    validate,
)
from tidings.core.ids import FeedId
from tidings.errors import InvalidContent, UsageError

from .helpers import author, examples

VECTORS = json.loads((Path(__file__).resolve().parents[1] / "spec" / "vectors"
                      / "content.json").read_text(encoding="utf-8"))
FEED = FeedId.parse(VECTORS["feed"])
OTHER = author(2).author.feed("podcast")
URL = "https://example.org/"


def by_name(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in cases]


def refused(value: object, field: str) -> InvalidContent:
    """``value`` (JSON, or content to encode) is refused, naming ``field``."""
    with pytest.raises(InvalidContent) as raised:
        if isinstance(value, dict | list) or value is None:
            from_json(value)
        else:
            encode(value)  # type: ignore[arg-type]
    assert raised.value.field == field, str(raised.value)
    assert str(raised.value).startswith(f"{field}: ")
    return raised.value


# -- the vectors --------------------------------------------------------------------


@pytest.mark.parametrize("case", by_name(VECTORS["valid"]))
def test_valid_vectors(case: dict[str, Any]) -> None:
    content = from_json(case["json"])
    assert encode(content).hex() == case["hex"]
    decoded = decode(bytes.fromhex(case["hex"]))
    assert decoded == content
    assert to_json(decoded) == case["json"]


@pytest.mark.parametrize("case", by_name(VECTORS["read"]))
def test_read_vectors(case: dict[str, Any]) -> None:
    decoded = decode(bytes.fromhex(case["hex"]))
    assert decoded is not None
    assert to_json(decoded) == case["json"]


@pytest.mark.parametrize("case", by_name(VECTORS["not_content"]))
def test_not_content_vectors(case: dict[str, Any]) -> None:
    payload = bytes.fromhex(case["hex"])
    assert decode(payload) is None
    describe(payload)  # still describable


@pytest.mark.parametrize("case", by_name(VECTORS["invalid_json"]))
def test_invalid_json_vectors(case: dict[str, Any]) -> None:
    refused(case["json"], case["field"])


@pytest.mark.parametrize("case", by_name(VECTORS["follows"]))
def test_follow_reading_vectors(case: dict[str, Any]) -> None:
    """spec/content.md §7.2: what a node reads as a follow decides what hops replicate."""
    from tidings.content import parse_follow

    parsed = parse_follow(bytes.fromhex(case["hex"]))
    if case["reads_as"] is None:
        assert parsed is None
    else:
        assert parsed == (case["reads_as"]["type"] == "follow",
                          FeedId.parse(case["reads_as"]["feed"]))


def test_the_vectors_cover_every_type_and_reading_step() -> None:
    types = {case["json"]["type"] for case in VECTORS["valid"]}
    assert {"post", "link", "follow", "unfollow", "about", "retract", "replace",
            "org.example.quiz"} <= types
    assert {case["step"] for case in VECTORS["not_content"]} == {
        "C2", "C3", "C4", "C5", "C6", "C7", "C9"}


# -- follow and unfollow: the node's bytes -------------------------------------------


def test_follow_payloads_are_unchanged() -> None:
    """The bytes of spec/content.md §7.1, which the replicator reads and writes."""
    example = next(case for case in VECTORS["valid"] if case["name"] == "follow")
    assert follow_payload(FEED).hex() == example["hex"]
    assert len(follow_payload(FEED)) == 83 and len(follow_payload(FEED, follow=False)) == 85
    assert encode(Follow(FEED)) == follow_payload(FEED)
    assert encode(Unfollow(FEED)) == follow_payload(FEED, follow=False)
    assert parse_follow(encode(Follow(FEED))) == (True, FEED)
    assert parse_follow(encode(Unfollow(FEED))) == (False, FEED)
    follows: set[FeedId] = set()
    for payload in (encode(Follow(FEED)), encode(Follow(OTHER)), encode(Unfollow(FEED))):
        follows_in(payload, follows)
    assert follows == {OTHER}


@settings(max_examples=examples(300), deadline=None, derandomize=True)
@given(st.binary(max_size=MAX_FOLLOW_PAYLOAD + 8)
       | st.dictionaries(st.sampled_from(["type", "feed", "v", "x"]),
                         st.sampled_from(["follow", "unfollow", str(FEED), 2, b"", None]),
                         ).map(cbor2.dumps))
def test_decode_agrees_with_the_node_on_follows(payload: bytes) -> None:
    decoded = decode(payload)
    parsed = parse_follow(payload)
    if parsed is None:
        assert not isinstance(decoded, Follow | Unfollow)
    else:
        assert decoded == (Follow(parsed[1]) if parsed[0] else Unfollow(parsed[1]))


# -- round trips ----------------------------------------------------------------------

lines = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
urls = st.builds(
    lambda scheme, host, rest: f"{scheme}://{host}{rest}", st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True),
    st.from_regex(r"(/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,10}){0,3}(\?[a-z=&]{0,8})?", fullmatch=True),
)
feeds = st.sampled_from([FEED, OTHER, author(3).author.feed("x" * 64)])
refs = st.builds(EntryRef, feeds, st.integers(1, 2**63 - 1))
attachments = st.builds(
    Attachment, urls, st.sampled_from(["audio/mpeg", "video/mp4", "application/pdf"]),
    st.none() | st.integers(0, 2**63 - 1), st.none() | lines)
posts = st.builds(
    Post, st.text(max_size=200), st.none() | lines, st.lists(urls, max_size=3).map(tuple),
    st.lists(lines, max_size=4).map(tuple), st.none() | refs,
    st.lists(attachments, max_size=3).map(tuple))
shares = st.builds(LinkShare, urls, st.none() | lines, st.none() | st.text(max_size=100),
                   st.lists(lines, max_size=3).map(tuple))
abouts = st.builds(About, lines, st.none() | st.text(max_size=100), st.none() | refs | urls)
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
app_types = st.builds(
    Unknown, st.from_regex(r"[a-z0-9_-]{1,8}(\.[a-z0-9_-]{1,8}){1,3}", fullmatch=True),
    st.dictionaries(st.text(max_size=6).filter(lambda key: key not in ("type", "v")), values,
                    max_size=4))
seqs = st.integers(1, 2**63 - 1)
corrections = st.builds(Retract, seqs) | st.builds(Replace, seqs, posts | shares)
contents = (posts | shares | abouts | app_types | feeds.map(Follow) | feeds.map(Unfollow)
            | corrections)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@settings(max_examples=examples(400), deadline=None, derandomize=True)
@given(contents)
def test_content_round_trips_through_bytes_and_json(content: Content) -> None:
    if isinstance(content, Unknown) and depth(content.fields) > 16:
        with pytest.raises(InvalidContent, match="nested more than 16 levels"):
            encode(content)
        return
    data = encode(content)
    assert decode(data) == content
    assert from_json(to_json(content)) == content
    assert from_json(json.loads(json.dumps(to_json(content)))) == content
    assert encode(decode(data)) == data  # type: ignore[arg-type]
    assert data[1:5] == b"dtyp"  # "type" is the first key


def test_json_form_names_keys_like_the_map() -> None:
    post = Post("hi", title="T", reply_to=EntryRef(FEED, 7),
                attachments=(Attachment(URL, "audio/mpeg", 10),))
    assert to_json(post) == {
        "type": "post", "text": "hi", "title": "T", "reply_to": {"feed": str(FEED), "seq": 7},
        "attachments": [{"url": URL, "media_type": "audio/mpeg", "size": 10}],
    }
    assert list(to_json(post)) == list(cbor2.loads(encode(post)))
    assert to_json(About("A", avatar=URL)) == {"type": "about", "name": "A", "avatar": URL}
    assert to_json(Unfollow(FEED)) == {"type": "unfollow", "feed": str(FEED)}


def test_app_types_are_written_in_core_deterministic_order() -> None:
    data = encode(Unknown("org.example.x", {"bb": 1, "a": {"zz": 2, "y": 3}, "ccc": [1.5]}))
    assert list(cbor2.loads(data)) == ["type", "a", "bb", "ccc"]
    assert list(cbor2.loads(data)["a"]) == ["y", "zz"]
    assert data.endswith(bytes.fromhex("81fb3ff8000000000000"))  # floats are 64-bit


# -- reading ---------------------------------------------------------------------------


@settings(max_examples=examples(1000), deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_decode_never_raises_on_random_bytes(payload: bytes) -> None:
    decode(payload)
    line = describe(payload)
    assert "\n" not in line and "\x1b" not in line


cbor_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8) | st.sampled_from(["type", "post", "text", "follow", "v"]))
cbor_values = st.recursive(
    cbor_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(cbor_scalars.filter(lambda v: v == v), inner, max_size=4)
    | st.builds(cbor2.CBORTag, st.integers(0, 300), inner),
    max_leaves=12,
)


@settings(max_examples=examples(1000), deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(["type", "text", "title", "links", "tags", "reply_to",
                                        "attachments", "url", "name", "avatar", "feed", "v"]),
                       cbor_values, max_size=6),
       st.sampled_from(["post", "link", "about", "follow", "org.x.y", None]))
def test_decode_never_raises_on_random_cbor(fields: dict[str, Any], kind: str | None) -> None:
    if kind is not None:
        fields["type"] = kind
    payload = cbor2.dumps(fields)
    decoded = decode(payload)
    describe(payload)
    if decoded is not None and not isinstance(decoded, Unknown):
        assert decode(encode(decoded)) == decoded  # what a reader takes, a writer can write


@settings(max_examples=examples(300), deadline=None, derandomize=True)
@given(contents, st.data())
def test_decode_never_raises_on_damaged_content(content: Content, data: st.DataObject) -> None:
    payload = bytearray(encode(content))
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(payload) - 1))
        payload[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    decode(bytes(payload))
    decode(bytes(payload[:cut]))
    describe(bytes(payload[:cut]))


def test_unknown_and_app_types_decode_to_unknown() -> None:
    app = cbor2.dumps({"type": "org.example.quiz", "v": 3, "q": "?"})
    assert decode(app) == Unknown("org.example.quiz", {"v": 3, "q": "?"})
    assert decode(cbor2.dumps({"type": "poll"})) == Unknown("poll", {})
    future_post = cbor2.dumps({"type": "post", "v": 2, "text": 7})
    assert decode(future_post) == Unknown("post", {"v": 2, "text": 7})
    assert decode(cbor2.dumps({"type": "post", "v": 1, "text": "x"})) == Post("x")
    assert decode(cbor2.dumps({"type": "post", "v": 0, "text": "x"})) is None
    assert decode(cbor2.dumps({"type": "post", "v": True, "text": "x"})) is None


def test_absent_and_oversized_payloads_are_not_content() -> None:
    assert decode(None) is None
    empty = len(encode(Unknown("org.example.x", {"t": ""})))
    fits = "x" * (MAX_CONTENT_SIZE - empty - 2)  # its length head takes 2 bytes more
    at_bound = Unknown("org.example.x", {"t": fits})
    assert len(encode(at_bound)) == MAX_CONTENT_SIZE and decode(encode(at_bound)) == at_bound
    past = Unknown("org.example.x", {"t": fits + "x"})
    assert "65537 bytes" in str(refused(past, "org.example.x"))
    assert decode(cbor2.dumps({"type": "org.example.x", "t": fits + "x"})) is None


def test_content_nested_16_levels_is_read_and_17_is_not() -> None:
    def arrays(count: int) -> Any:
        value: Any = 1
        for _ in range(count):
            value = [value]
        return value

    ok = Unknown("org.example.x", {"d": arrays(15)})  # the top map is level 1
    assert decode(encode(ok)) == ok
    deep = {"type": "org.example.x", "d": arrays(16)}
    assert decode(cbor2.dumps(deep)) is None
    with pytest.raises(InvalidContent, match="nested more than 16 levels"):
        from_json(deep)
    assert decode(b"\xa1\x64type" + b"\x81" * 5000 + b"\x01") is None  # no RecursionError


def test_readers_ignore_unknown_keys_and_accept_nulls_but_writers_do_not() -> None:
    payload = cbor2.dumps({"type": "post", "text": "x", "lang": "en", "title": None})
    assert decode(payload) == Post("x")
    refused({"type": "post", "text": "x", "lang": "en"}, "post.lang")
    assert from_json({"type": "post", "text": "x", "title": None, "tags": []}) == Post("x")
    refused({"type": "post", "text": "x", "reply_to": {"feed": str(FEED), "seq": 1, "h": 0}},
            "post.reply_to.h")


# -- bounds ----------------------------------------------------------------------------

BOUNDS = [  # (name, content at the bound, content just past it, the field named)
    ("text", Post("x" * 32768), Post("x" * 32769), "post.text"),
    ("title", Post("", title="t" * 300), Post("", title="t" * 301), "post.title"),
    ("empty-title", Post("", title="t"), Post("", title=""), "post.title"),
    ("links", Post("", links=(URL,) * 32), Post("", links=(URL,) * 33), "post.links"),
    ("tags", Post("", tags=("t",) * 32), Post("", tags=("t",) * 33), "post.tags"),
    ("tag-length", Post("", tags=("a", "t" * 64)), Post("", tags=("a", "b", "t" * 65)),
     "post.tags[2]"),
    ("url-length", Post("", links=(URL + "x" * (2048 - len(URL)),)),
     Post("", links=(URL + "x" * (2049 - len(URL)),)), "post.links[0]"),
    ("attachments", Post("", attachments=(Attachment(URL, "a/b"),) * 16),
     Post("", attachments=(Attachment(URL, "a/b"),) * 17), "post.attachments"),
    ("media-type", Post("", attachments=(Attachment(URL, "a/" + "b" * 125),)),
     Post("", attachments=(Attachment(URL, "a/" + "b" * 126),)),
     "post.attachments[0].media_type"),
    ("size", Post("", attachments=(Attachment(URL, "a/b", 2**63 - 1),)),
     Post("", attachments=(Attachment(URL, "a/b", 2**63),)), "post.attachments[0].size"),
    ("size-zero", Post("", attachments=(Attachment(URL, "a/b", 0),)),
     Post("", attachments=(Attachment(URL, "a/b", -1),)), "post.attachments[0].size"),
    ("attachment-title", Post("", attachments=(Attachment(URL, "a/b", title="t" * 300),)),
     Post("", attachments=(Attachment(URL, "a/b", title="t" * 301),)),
     "post.attachments[0].title"),
    ("seq", Post("", reply_to=EntryRef(FEED, 2**63 - 1)), Post("", reply_to=EntryRef(FEED, 2**63)),
     "post.reply_to.seq"),
    ("seq-zero", Post("", reply_to=EntryRef(FEED, 1)), Post("", reply_to=EntryRef(FEED, 0)),
     "post.reply_to.seq"),
    ("comment", LinkShare(URL, comment="c" * 4096), LinkShare(URL, comment="c" * 4097),
     "link.comment"),
    ("link-title", LinkShare(URL, title="t" * 300), LinkShare(URL, title="t" * 301),
     "link.title"),
    ("link-tags", LinkShare(URL, tags=("t",) * 32), LinkShare(URL, tags=("t",) * 33),
     "link.tags"),
    ("name", About("n" * 100), About("n" * 101), "about.name"),
    ("description", About("n", "d" * 4096), About("n", "d" * 4097), "about.description"),
    ("type-name", Unknown("o." + "x" * 126, {}), Unknown("o." + "x" * 127, {}), "type"),
    ("app-integer", Unknown("o.x", {"n": 2**64 - 1}), Unknown("o.x", {"n": 2**64}), "o.x.n"),
    ("app-negative", Unknown("o.x", {"n": -(2**64)}), Unknown("o.x", {"n": -(2**64) - 1}),
     "o.x.n"),
]


@pytest.mark.parametrize(("at", "past", "field"), [pytest.param(*case[1:], id=case[0])
                                                   for case in BOUNDS])
def test_bounds(at: Content, past: Content, field: str) -> None:
    assert decode(encode(at)) == at
    refused(past, field)
    # A reader of a payload past the bound finds no content (or, for app types, any value).
    if not isinstance(past, Unknown) and field != "type":
        payload = cbor2.dumps(to_json(past))
        assert decode(payload) is None


def test_characters_not_bytes_are_counted() -> None:
    assert decode(encode(Post("", title="水" * 300))) == Post("", title="水" * 300)
    refused(Post("", tags=("🎉" * 65,)), "post.tags[0]")


def test_the_payload_bound_holds_for_valid_fields() -> None:
    """Each field within its bound, the whole over 64 KiB: the writer refuses it."""
    error = refused(Post("🎉" * 32768), "post")
    assert "the bound is 65536" in str(error)
    validate(Post("x" * 32768, links=(URL + "x" * 2000,) * 15))


@pytest.mark.parametrize(("content", "field", "problem"), [
    (Post(""), None, None),
    (Post("", links=("ftp://example.org/",)), "post.links[0]", "http or https"),
    (Post("", links=("HTTPS://example.org/",)), "post.links[0]", "http or https"),
    (Post("", links=("https://",)), "post.links[0]", "http or https"),
    (Post("", links=("https://exa mple.org/",)), "post.links[0]", "http or https"),
    (Post("", links=("https://bücher.example/",)), "post.links[0]", "http or https"),
    (LinkShare("javascript:alert(1)"), "link.url", "http or https"),
    (Post("", tags=("a\nb",)), "post.tags[0]", "one line"),
    (Post("", title="a\x00b"), "post.title", "one line"),
    (Post("\ud800"), "post.text", "lone surrogate"),
    (Post("", attachments=(Attachment(URL, "audio/MPEG"),)), "post.attachments[0].media_type",
     "lower-case media type"),
    (Post("", attachments=(Attachment(URL, "audio/mpeg; q=1"),)),
     "post.attachments[0].media_type", "media type"),
    (Post("", attachments=(Attachment("ftp://x/a", "a/b"),)), "post.attachments[0].url", "http"),
    (Post("", reply_to=EntryRef(str(OTHER.author), 1)),  # type: ignore[arg-type]
     "post.reply_to.feed", "feed id"),
    (Post(None), "post.text", "required"),  # type: ignore[arg-type]
    (Post("", tags="abc"), "post.tags", "array"),  # type: ignore[arg-type]
    (Post("", attachments=(URL,)), "post.attachments[0]", "map"),  # type: ignore[arg-type]
    (About("A", avatar=7), "about.avatar", "URL"),  # type: ignore[arg-type]
    (About("A", avatar="data:image/png;base64,AA=="), "about.avatar", "http"),
    (Unknown("poll", {}), "type", "namespaced"),
    (Unknown("Org.Example", {}), "type", "namespaced"),
    (Unknown("org..x", {}), "type", "namespaced"),
    (Unknown("org.x", {"type": "y"}), "org.x.type", "Unknown.type"),
    (Unknown("org.x", {"v": 0}), "org.x.v", "at least 1"),
    (Unknown("org.x", {"b": b"\x00"}), "org.x.b", "null, a boolean"),
    (Unknown("org.x", {"f": float("nan")}), "org.x.f", "finite"),
    (Unknown("org.x", {"m": {1: 2}}), "org.x.m", "keys must be text"),
    (Unknown("org.x", {"l": [1, {"x": {2}}]}), "org.x.l[1].x", "null, a boolean"),
    (Unknown("post", {"v": 2}), "post.v", "version 1"),
    ("not content", "content", "not a content type"),
])
def test_writers_name_the_bad_field(content: Any, field: str | None, problem: str | None) -> None:
    if field is None:
        validate(content)
        return
    error = refused(content, field)
    assert problem is not None and problem in error.problem


def test_invalid_content_is_a_usage_error_with_a_code() -> None:
    error = refused({"type": "post", "text": "hi", "tags": ["a", "b", "c" * 65]}, "post.tags[2]")
    assert isinstance(error, UsageError) and isinstance(error, ValueError)
    assert error.code == "invalid-content"
    assert str(error) == "post.tags[2]: must be text of 1 to 64 characters"


def test_from_json_refuses_values_json_cannot_hold() -> None:
    refused(None, "content")  # type: ignore[arg-type]
    refused({"type": 3}, "type")
    refused({"type": "org.x", "s": {1, 2}}, "org.x.s")
    refused({"type": "post", "text": "x", "reply_to": {"feed": str(FEED), "seq": 1.0}},
            "post.reply_to.seq")
    refused({"type": "post", "text": "x", "reply_to": {"feed": str(FEED), "seq": True}},
            "post.reply_to.seq")


# -- describe ---------------------------------------------------------------------------


@pytest.mark.parametrize(("payload", "line"), [
    (None, "<payload not held>"),
    (b"", "<0 bytes>"),
    (b"\x00", "<1 byte>"),
    (bytes(range(256)), "<256 bytes>"),
    (b"hello, world", "hello, world"),
    (b"\n  \nfirst   real line\nsecond", "first real line"),
    (b"\x1b[2Jclear screen", "<16 bytes>"),
    ("a\u202eb".encode(), "a b"),
    (b"x" * 200, "x" * 79 + "…"),
    (encode(Post("text first\nthen more", title="The title")), "The title"),
    (encode(Post("text first\nthen more")), "text first"),
    (encode(Post("", attachments=(Attachment(URL, "a/b", title="Ep 1"),))), "Ep 1"),
    (encode(Post("")), "<post>"),
    (encode(LinkShare(URL, "A page")), f"link: A page ({URL})"),
    (encode(LinkShare(URL)), f"link: {URL}"),
    (encode(Follow(FEED)), f"follows {FEED}"),
    (encode(Unfollow(FEED)), f"unfollows {FEED}"),
    (encode(About("Alice")), "about: Alice"),
    (encode(Unknown("org.example.quiz", {})), "<org.example.quiz>"),
    (encode(Unknown("org.example.quiz", {"v": 4})), "<org.example.quiz v4>"),
    (encode(Retract(3)), "retracts 3"),
    (encode(Replace(3, Post("new\ntext"))), "replaces 3: new"),
    (encode(Replace(3, LinkShare(URL, "A page"))), f"replaces 3: link: A page ({URL})"),
    (cbor2.dumps({"type": "evil\x1b[2J"}), "<evil [2J>"),
    (cbor2.dumps({"type": "post"}), "<invalid post, 11 bytes>"),
])
def test_describe(payload: bytes | None, line: str) -> None:
    assert describe(payload) == line


# -- retract and replace (spec/content.md §6.4, §6.5) ---------------------------------


def test_a_replace_holds_a_post_or_a_link_and_names_inner_fields_from_the_top() -> None:
    replaced = Replace(3, Post("fixed", title="T", tags=("a",)))
    assert to_json(replaced) == {"type": "replace", "target": 3, "content": {
        "type": "post", "text": "fixed", "title": "T", "tags": ["a"]}}
    assert list(cbor2.loads(encode(replaced))) == ["type", "target", "content"]
    assert list(cbor2.loads(encode(replaced))["content"]) == ["type", "text", "title", "tags"]
    refused(Replace(3, About("Alice")), "replace.content.type")  # type: ignore[arg-type]
    refused(Replace(3, Post("x", tags=("",))), "replace.content.tags[0]")
    refused(Replace(0, Post("x")), "replace.target")
    refused(Retract(2**63), "retract.target")
    refused({"type": "retract", "target": 1, "feed": str(FEED)}, "retract.feed")


def test_a_replace_of_a_newer_post_is_unknown_content_and_of_another_type_is_not_content() -> None:
    newer = cbor2.dumps({"type": "replace", "target": 1, "content": {"type": "post", "v": 2}})
    assert decode(newer) == Unknown("replace", {"target": 1, "content": {"type": "post",
                                                                         "v": 2}})
    nested = cbor2.dumps({"type": "replace", "target": 1, "content": {
        "type": "replace", "target": 1, "content": {"type": "post", "text": "x"}}})
    assert decode(nested) is None


def test_docstring_examples() -> None:
    failed, attempted = doctest.testmod(tidings.core.content)
    assert attempted > 5 and failed == 0
