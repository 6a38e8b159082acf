"""Content conventions: what a payload means (spec/content.md).

Payloads are free bytes: verification, replication and storage never look
inside them. By convention, content is a CBOR map whose ``"type"`` names what
it is: a post, a shared link, a follow, an author's "about". Applications add
their own types under namespaced names (``"org.example.quiz"``).

>>> data = encode(Post("hello, world", tags=("intro",)))
>>> data.hex()
'a3647479706564706f737464746578746c68656c6c6f2c20776f726c6464746167738165696e74726f'
>>> decode(data) == Post("hello, world", tags=("intro",))
True
>>> decode(b"plain text") is None    # not content: skipped, never an error
True
>>> describe(data)
'hello, world'

The node itself reads only follow and unfollow entries (:func:`parse_follow`,
:func:`follows_in`), which decide what it replicates with hops.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

import cbor2

from tidings.core import cbor
from tidings.core.blob import BlobId
from tidings.core.entry import MAX_SEQ
from tidings.core.ids import LOG_ID_PATTERN, FeedId
from tidings.errors import InvalidContent, InvalidId

# -- follow and unfollow: read by the node (spec/content.md §7) -------------------

#: A follow entry is a few dozen bytes; larger payloads are not parsed for follows.
MAX_FOLLOW_PAYLOAD = 1024
FOLLOW = "follow"
UNFOLLOW = "unfollow"


def follow_payload(feed: FeedId, *, follow: bool = True) -> bytes:
    """The payload of a follow (or unfollow) entry for ``feed``."""
    encoded: bytes = cbor2.dumps({"type": FOLLOW if follow else UNFOLLOW, "feed": str(feed)})
    return encoded


def parse_follow(payload: bytes) -> tuple[bool, FeedId] | None:
    """``(True, feed)`` for a follow, ``(False, feed)`` for an unfollow, else None."""
    # CBOR maps of up to 23 pairs start with 0xa0..0xb7; anything else is not ours.
    if not payload or len(payload) > MAX_FOLLOW_PAYLOAD or not 0xA0 <= payload[0] <= 0xB7:
        return None
    # R3: one map of the content data model (byte strings allowed): no tags, no
    # indefinite lengths, text valid UTF-8, keys text and each once, nothing after.
    try:
        value, end = cbor.read_item(payload, 0, cbor.CONTENT_WITH_BYTES)
    except cbor.CborError:
        return None
    if end != len(payload) or not isinstance(value, dict):
        return None
    kind, feed = value.get("type"), value.get("feed")
    if kind not in (FOLLOW, UNFOLLOW) or not isinstance(feed, str):
        return None
    try:
        return kind == FOLLOW, FeedId.parse(feed)
    except InvalidId:
        return None


def follows_in(payload: bytes, follows: set[FeedId]) -> None:
    """Apply one payload, if it is a follow or unfollow, to ``follows``."""
    parsed = parse_follow(payload)
    if parsed is not None:
        followed, feed = parsed
        if followed:
            follows.add(feed)
        else:
            follows.discard(feed)


# -- bounds (spec/content.md §1, §5, §6) -------------------------------------------

#: Content is a short record, not a file: a reader parses at most this much and a
#: writer makes no more. Files travel at a URL, or as the payload of an entry of their own.
MAX_CONTENT_SIZE = 64 * 1024
#: Levels of arrays and maps, the top map being level 1. Library types use 3
#: (post, attachments, attachment); the rest is room for applications' types,
#: and the bound keeps a crafted payload from exhausting the stack.
MAX_DEPTH = cbor.MAX_DEPTH
MAX_TEXT = 32 * 1024  # characters of a post's text: a long essay
MAX_TITLE = 300
MAX_COMMENT = 4096
MAX_NAME = 100
MAX_DESCRIPTION = 4096
MAX_LINKS = 32
MAX_TAGS = 32
MAX_TAG = 64
MAX_ATTACHMENTS = 16
#: A language tag's length: BCP 47 tags in use are short ("en", "pt-BR",
#: "zh-Hant-TW"); 35 is the longest RFC 5646 asks implementations to support.
MAX_LANGUAGE = 35
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
#: Logs an about entry names: an author keeps a few logs, one per topic; 64
#: entries of a name and a short description fit the content bound.
MAX_ABOUT_LOGS = 64
MAX_URL = 2048  # what browsers and servers reliably handle
MAX_MEDIA_TYPE = 127
MAX_TYPE_NAME = 128
#: Attachment sizes, like seqs, fit a signed 64-bit integer.
MAX_ATTACHMENT_SIZE = MAX_SEQ
#: A playing time in whole seconds: 2^32 - 1 is 136 years, and fits every
#: 32-bit reader.
MAX_DURATION = 2**32 - 1
#: A text blob id has at most 69 characters; longer text is not parsed.
MAX_BLOB_ID_TEXT = 69
#: Characters of free text :func:`describe` keeps from a line.
DESCRIBE_WIDTH = 80

POST = "post"
LINK = "link"
ABOUT = "about"
RETRACT = "retract"
REPLACE = "replace"
#: The version of each library type that this implementation reads and writes.
VERSIONS = {POST: 1, LINK: 1, FOLLOW: 1, UNFOLLOW: 1, ABOUT: 1, RETRACT: 1, REPLACE: 1}


# -- the types --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntryRef:
    """Names one entry: ``EntryRef(feed, 3)`` is entry 3 of ``feed``."""

    feed: FeedId
    seq: int


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that goes with a post: a podcast episode is a post with an audio one.

    The file is at a URL, or is a blob (spec/13-blobs.md) that nodes fetch from
    each other and check chunk by chunk, or both (the URL is then a mirror of
    the blob's bytes).

    >>> episode = Attachment("https://example.org/ep1.mp3", "audio/mpeg", size=12_345_678)
    >>> decode(encode(Post("", title="Episode 1", attachments=(episode,)))).attachments[0].size
    12345678
    >>> from tidings.core.blob import blob_id_of
    >>> audio = Attachment.of_blob(blob_id_of(b"ID3..."), "audio/mpeg", duration=1800)
    >>> decode(encode(Post("", attachments=(audio,)))).attachments[0] == audio
    True
    """

    url: str | None
    media_type: str
    #: The file's length in bytes; with a blob, required and equal to the blob's size.
    size: int | None = None
    title: str | None = None
    blob: BlobId | None = None
    #: The playing time of audio or video, in whole seconds.
    duration: int | None = None

    @classmethod
    def of_blob(cls, blob: BlobId, media_type: str, *, title: str | None = None,
                duration: int | None = None, url: str | None = None) -> Attachment:
        """An attachment of a blob (its size filled in), with a URL mirror if given."""
        return cls(url, media_type, blob.size, title, blob, duration)


@dataclass(frozen=True, slots=True)
class Post:
    """Text, perhaps titled, tagged, linking out, replying, or with attachments (type "post").

    >>> to_json(Post("See you there.", title="Meetup", tags=("events",)))
    {'type': 'post', 'text': 'See you there.', 'title': 'Meetup', 'tags': ['events']}
    """

    text: str
    title: str | None = None
    links: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    reply_to: EntryRef | None = None
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class LinkShare:
    """A link to something elsewhere, with an optional comment (type "link").

    >>> describe(encode(LinkShare("https://example.org/", "Example", "worth a look")))
    'link: Example (https://example.org/)'
    """

    url: str
    title: str | None = None
    comment: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Follow:
    """The author follows ``feed`` (type "follow"); nodes replicating with hops read it."""

    feed: FeedId


@dataclass(frozen=True, slots=True)
class Unfollow:
    """The author no longer follows ``feed`` (type "unfollow")."""

    feed: FeedId


@dataclass(frozen=True, slots=True)
class LogAbout:
    """The name and description of one of the author's logs, in their about entry.

    >>> About("Alice", logs=(LogAbout("blog", "Alice's notebook"),)).log_about("blog").name
    "Alice's notebook"
    """

    log: str
    name: str | None = None
    description: str | None = None
    #: Podcast show fields (podcast apps read them from the gateway's RSS): the
    #: log's language (a BCP 47 tag such as "en" or "pt-BR"), its Apple Podcasts
    #: category ("Science", or "Science/Mathematics" with a subcategory), whether
    #: it is explicit, and its artwork (a blob id or an image's URL).
    language: str | None = None
    category: str | None = None
    explicit: bool | None = None
    artwork: BlobId | str | None = None


@dataclass(frozen=True, slots=True)
class About:
    """Who the author is (type "about"). ``avatar`` is an entry whose payload is the
    image, or the image's URL. ``logs`` names and describes the author's logs.
    Authors publish it in their log "about".

    >>> decode(encode(About("Alice", avatar="https://example.org/alice.png"))).name
    'Alice'
    """

    name: str
    description: str | None = None
    avatar: EntryRef | str | None = None
    logs: tuple[LogAbout, ...] = ()

    def log_about(self, log: str) -> LogAbout | None:
        """What this about says of the author's log ``log``, if anything."""
        return next((item for item in self.logs if item.log == log), None)


@dataclass(frozen=True, slots=True)
class Retract:
    """The author retracts entry ``target`` of the same feed (type "retract").

    Which corrections take effect, and what a reader shows, is spec/content.md
    §12 (:func:`tidings.core.corrections.effective_view`).

    >>> to_json(Retract(3))
    {'type': 'retract', 'target': 3}
    """

    target: int


@dataclass(frozen=True, slots=True)
class Replace:
    """The author replaces what entry ``target`` of the same feed shows with ``content``,
    a post or a link share (type "replace").

    >>> describe(encode(Replace(3, Post("fixed a typo", title="Week 1"))))
    'replaces 3: Week 1'
    """

    target: int
    content: Post | LinkShare


@dataclass(frozen=True, slots=True)
class Unknown:
    """Content of a type (or version) this library does not know: an application's own
    type, or a newer one. ``fields`` holds every key of the map but ``"type"``.

    >>> decode(encode(Unknown("org.example.quiz", {"question": "2 + 2?", "answers": [3, 4]})))
    Unknown(type='org.example.quiz', fields={'answers': [3, 4], 'question': '2 + 2?'})
    """

    type: str
    fields: dict[str, Any] = field(default_factory=dict, hash=False)


Content: TypeAlias = Post | LinkShare | Follow | Unfollow | About | Retract | Replace | Unknown
_TYPES = (Post, LinkShare, Follow, Unfollow, About, Retract, Replace, Unknown)


# -- the JSON form and writing (spec/content.md §3, §8) ------------------------------


def _seq_json(values: object, item: Callable[[Any], Any]) -> object:
    """A tuple field as a JSON array; anything else is left for the checks to name."""
    if isinstance(values, tuple | list):
        return [item(value) for value in values]
    return values


def _ref_json(ref: object) -> object:
    if isinstance(ref, EntryRef):
        return {"feed": str(ref.feed), "seq": ref.seq}
    return ref


def _log_about_json(item: object) -> object:
    if not isinstance(item, LogAbout):
        return item
    artwork = str(item.artwork) if isinstance(item.artwork, BlobId) else item.artwork
    return _omit_empty({"log": item.log, "name": item.name, "description": item.description,
                        "language": item.language, "category": item.category,
                        "explicit": item.explicit, "artwork": artwork})


def _attachment_json(attachment: object) -> object:
    if not isinstance(attachment, Attachment):
        return attachment
    blob = attachment.blob
    return _omit_empty({"url": attachment.url,
                        "blob": str(blob) if isinstance(blob, BlobId) else blob,
                        "media_type": attachment.media_type, "size": attachment.size,
                        "title": attachment.title, "duration": attachment.duration})


def _omit_empty(pairs: dict[str, Any]) -> dict[str, Any]:
    """Absent optional fields are left out: None and empty arrays."""
    return {key: value for key, value in pairs.items() if value is not None and value != []}


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(item) for item in value]
    return value


def to_json(content: Content) -> dict[str, Any]:
    """The JSON form of ``content``: the keys of its CBOR map, in the same order.

    >>> to_json(Post("hi", reply_to=EntryRef(FeedId(bytes(32), "blog"), 7)))["reply_to"]["seq"]
    7
    """
    if isinstance(content, Post):
        return _omit_empty({
            "type": POST, "text": content.text, "title": content.title,
            "links": _seq_json(content.links, str), "tags": _seq_json(content.tags, str),
            "reply_to": _ref_json(content.reply_to),
            "attachments": _seq_json(content.attachments, _attachment_json),
        })
    if isinstance(content, LinkShare):
        return _omit_empty({"type": LINK, "url": content.url, "title": content.title,
                            "comment": content.comment, "tags": _seq_json(content.tags, str)})
    if isinstance(content, Follow | Unfollow):
        return {"type": FOLLOW if isinstance(content, Follow) else UNFOLLOW,
                "feed": str(content.feed)}
    if isinstance(content, About):
        return _omit_empty({"type": ABOUT, "name": content.name,
                            "description": content.description,
                            "avatar": _ref_json(content.avatar),
                            "logs": _seq_json(content.logs, _log_about_json)})
    if isinstance(content, Retract):
        return {"type": RETRACT, "target": content.target}
    if isinstance(content, Replace):
        inner = content.content
        return {"type": REPLACE, "target": content.target,
                "content": to_json(inner) if isinstance(inner, _TYPES) else inner}
    if isinstance(content, Unknown):
        return {"type": content.type, **_copy(content.fields)}
    raise TypeError(f"not content: {type(content).__name__}")


def from_json(obj: object) -> Content:
    """Content from its JSON form, checked as a writer must check it.

    Raises :class:`InvalidContent` naming the bad field:

    >>> from_json({"type": "post", "text": "hi", "tags": ["a", "b" * 65]})
    Traceback (most recent call last):
    ...
    tidings.errors.InvalidContent: post.tags[1]: must be text of 1 to 64 characters
    """
    return _parse(obj, strict=True)


def encode(content: Content) -> bytes:
    """The payload bytes of ``content``, after checking it (raises :class:`InvalidContent`).

    >>> encode(Follow(FeedId(bytes(32), "blog"))) == follow_payload(FeedId(bytes(32), "blog"))
    True
    """
    checked = _checked(content)
    if isinstance(checked, Unknown):  # "type", then the rest in CBOR's core deterministic order
        value = {"type": checked.type, **_sorted_maps(checked.fields)}
    else:
        value = to_json(checked)
    data: bytes = cbor2.dumps(value)
    if len(data) > MAX_CONTENT_SIZE:
        raise InvalidContent(checked.type if isinstance(checked, Unknown) else value["type"],
                             f"encodes to {len(data)} bytes; the bound is {MAX_CONTENT_SIZE}")
    return data


def validate(content: Content) -> None:
    """Raise :class:`InvalidContent` unless :func:`encode` can write ``content``."""
    encode(content)


def _checked(content: object) -> Content:
    if isinstance(content, Unknown):
        if not isinstance(content.fields, dict):
            raise InvalidContent(str(content.type), "fields must be a dict")
        if "type" in content.fields:
            raise InvalidContent(f"{content.type}.type", "give the type as Unknown.type only")
    elif not isinstance(content, _TYPES):
        raise InvalidContent("content", f"not a content type: {type(content).__name__}")
    return _parse(to_json(content), strict=True)


def _text_order(key: str) -> tuple[int, bytes]:
    # RFC 8949 §4.2.1 orders keys by their encoded bytes; for text keys that is
    # shorter first, then bytewise.
    raw = key.encode()
    return len(raw), raw


def _sorted_maps(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_maps(value[key]) for key in sorted(value, key=_text_order)}
    if isinstance(value, list):
        return [_sorted_maps(item) for item in value]
    return value


# -- checks, shared by readers (strict=False) and writers (strict=True) --------------

_T = TypeVar("_T")
_Check = Callable[[Any, str, bool], _T]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_URL_CHARS = r"A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%"
_URL = re.compile(rf"https?://[{_URL_CHARS.replace('/?#', '')}]+(?:[/?#][{_URL_CHARS}]*)?")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_APP_TYPE = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)+")


def _text(value: Any, path: str, limit: int, *, line: bool = False) -> str:
    """Text of at most ``limit`` characters; a ``line`` is 1 or more, without control characters."""
    if not isinstance(value, str) or len(value) > limit or (line and not value):
        size = f"1 to {limit}" if line else f"at most {limit}"
        raise InvalidContent(path, f"must be text of {size} characters")
    if line and _CONTROL.search(value):
        raise InvalidContent(path, "must be one line, without control characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidContent(path, "must be Unicode text (it holds a lone surrogate)") from None
    return str(value)


def _url(value: Any, path: str, strict: bool = True) -> str:
    if not isinstance(value, str) or len(value) > MAX_URL or not _URL.fullmatch(value):
        raise InvalidContent(
            path, f"must be an absolute http or https URL of at most {MAX_URL} characters"
        )
    return str(value)


def is_url(text: object) -> bool:
    """Whether ``text`` is a URL by the content rules (spec/content.md §5): absolute,
    ``http`` or ``https``, at most 2048 characters. Only these become links.

    >>> is_url("https://example.org/a?b#c"), is_url("javascript:alert(1)")
    (True, False)
    """
    return isinstance(text, str) and len(text) <= MAX_URL and bool(_URL.fullmatch(text))


def _tag(value: Any, path: str, strict: bool) -> str:
    return _text(value, path, MAX_TAG, line=True)


def _feed(value: Any, path: str) -> FeedId:
    if isinstance(value, str) and len(value) <= 200:  # a feed id is at most 123 characters
        try:
            return FeedId.parse(value)
        except InvalidId as e:
            raise InvalidContent(path, f"must be a feed id ({e})") from None
    raise InvalidContent(path, "must be a feed id (text, tf1...)")


def _only(value: dict[Any, Any], path: str, keys: Sequence[str], strict: bool) -> None:
    """Writers use only the keys the spec lists; readers ignore others (a later
    revision may add some)."""
    if strict:
        for key in value:
            if key not in keys:
                raise InvalidContent(f"{path}.{key}", f"not a key of {path} ({', '.join(keys)})")


def _map(value: Any, path: str, what: str) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise InvalidContent(path, f"must be a map ({what})")
    return value


def _required(value: dict[Any, Any], key: str, path: str) -> Any:
    if value.get(key) is None:
        raise InvalidContent(f"{path}.{key}", "is required")
    return value[key]


def _optional(value: dict[Any, Any], key: str, path: str, strict: bool,
              check: _Check[_T]) -> _T | None:
    """A null value is the same as an absent key (writers leave both out)."""
    item = value.get(key)
    return None if item is None else check(item, f"{path}.{key}", strict)


def _array(value: dict[Any, Any], key: str, path: str, strict: bool, limit: int,
           check: _Check[_T]) -> tuple[_T, ...]:
    items = value.get(key)
    if items is None:
        return ()
    if not isinstance(items, list | tuple) or len(items) > limit:
        raise InvalidContent(f"{path}.{key}", f"must be an array of at most {limit} items")
    return tuple(check(item, f"{path}.{key}[{i}]", strict) for i, item in enumerate(items))


def _entry_ref(value: Any, path: str, strict: bool) -> EntryRef:
    ref = _map(value, path, "feed and seq")
    _only(ref, path, ("feed", "seq"), strict)
    seq = _required(ref, "seq", path)
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        raise InvalidContent(f"{path}.seq", "must be an integer from 1 to 2^63-1")
    return EntryRef(_feed(_required(ref, "feed", path), f"{path}.feed"), seq)


def _blob(value: Any, path: str, strict: bool) -> BlobId:
    if isinstance(value, str) and len(value) <= MAX_BLOB_ID_TEXT:
        try:
            return BlobId.parse(value)  # exactly, as ids in signed data are read
        except InvalidId as e:
            raise InvalidContent(path, f"must be a blob id ({e})") from None
    raise InvalidContent(path, "must be a blob id (text, tb1...)")


def _attachment(value: Any, path: str, strict: bool) -> Attachment:
    item = _map(value, path, "url or blob, media_type, size, title, duration")
    _only(item, path, ("url", "blob", "media_type", "size", "title", "duration"), strict)
    media_type = _required(item, "media_type", path)
    if (not isinstance(media_type, str) or len(media_type) > MAX_MEDIA_TYPE
            or not _MEDIA_TYPE.fullmatch(media_type)):
        raise InvalidContent(f"{path}.media_type", "must be a lower-case media type such as "
                             f"audio/mpeg, of at most {MAX_MEDIA_TYPE} characters")
    size = item.get("size")
    if size is not None and (type(size) is not int or not 0 <= size <= MAX_ATTACHMENT_SIZE):
        raise InvalidContent(f"{path}.size", "must be an integer from 0 to 2^63-1")
    url = _optional(item, "url", path, strict, _url)
    blob = _optional(item, "blob", path, strict, _blob)
    if url is None and blob is None:
        raise InvalidContent(f"{path}.url", "is required when there is no blob")
    if blob is not None and size != blob.size:
        raise InvalidContent(f"{path}.size", f"must be given with a blob, and equal the "
                             f"blob's size ({blob.size})")
    title = _optional(item, "title", path, strict,
                      lambda v, p, s: _text(v, p, MAX_TITLE, line=True))
    duration = item.get("duration")
    if duration is not None and (type(duration) is not int
                                 or not 0 <= duration <= MAX_DURATION):
        raise InvalidContent(f"{path}.duration", "must be a whole number of seconds from 0 "
                             "to 2^32-1")
    return Attachment(url, str(media_type), size, title, blob, duration)


def _post(value: dict[Any, Any], strict: bool) -> Post:
    _only(value, POST, ("type", "v", "text", "title", "links", "tags", "reply_to",
                        "attachments"), strict)
    return Post(
        _text(_required(value, "text", POST), "post.text", MAX_TEXT),
        _optional(value, "title", POST, strict, lambda v, p, s: _text(v, p, MAX_TITLE, line=True)),
        _array(value, "links", POST, strict, MAX_LINKS, _url),
        _array(value, "tags", POST, strict, MAX_TAGS, _tag),
        _optional(value, "reply_to", POST, strict, _entry_ref),
        _array(value, "attachments", POST, strict, MAX_ATTACHMENTS, _attachment),
    )


def _link(value: dict[Any, Any], strict: bool) -> LinkShare:
    _only(value, LINK, ("type", "v", "url", "title", "comment", "tags"), strict)
    return LinkShare(
        _url(_required(value, "url", LINK), "link.url"),
        _optional(value, "title", LINK, strict, lambda v, p, s: _text(v, p, MAX_TITLE, line=True)),
        _optional(value, "comment", LINK, strict, lambda v, p, s: _text(v, p, MAX_COMMENT)),
        _array(value, "tags", LINK, strict, MAX_TAGS, _tag),
    )


def _follow(value: dict[Any, Any], strict: bool) -> Follow | Unfollow:
    kind = value["type"]
    _only(value, kind, ("type", "v", "feed"), strict)
    feed = _feed(_required(value, "feed", kind), f"{kind}.feed")
    return Follow(feed) if kind == FOLLOW else Unfollow(feed)


def _avatar(value: Any, path: str, strict: bool) -> EntryRef | str:
    if isinstance(value, str):
        return _url(value, path)
    if isinstance(value, dict):
        return _entry_ref(value, path, strict)
    raise InvalidContent(path, "must be an http or https URL, or a map with feed and seq")


def _language(value: Any, path: str, strict: bool) -> str:
    if isinstance(value, str) and len(value) <= MAX_LANGUAGE and _LANGUAGE.fullmatch(value):
        return value
    raise InvalidContent(path, f"must be a language tag such as en or pt-BR (BCP 47), of "
                         f"at most {MAX_LANGUAGE} characters")


def _category(value: Any, path: str, strict: bool) -> str:
    text = _text(value, path, MAX_NAME, line=True)
    parts = text.split("/")
    if len(parts) > 2 or any(not part.strip() or part != part.strip() for part in parts):
        raise InvalidContent(path, "must be a category such as Science, or a category and "
                             "its subcategory such as Science/Mathematics")
    return text


def _explicit(value: Any, path: str, strict: bool) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidContent(path, "must be true or false")


def _artwork(value: Any, path: str, strict: bool) -> BlobId | str:
    if isinstance(value, str) and value.startswith("tb"):
        return _blob(value, path, strict)
    if isinstance(value, str):
        return _url(value, path)
    raise InvalidContent(path, "must be a blob id (tb1...) or an http or https URL")


def _log_about(value: Any, path: str, strict: bool) -> LogAbout:
    item = _map(value, path, "log, name, description")
    _only(item, path, ("log", "name", "description", "language", "category", "explicit",
                       "artwork"), strict)
    log = _required(item, "log", path)
    if not isinstance(log, str) or not LOG_ID_PATTERN.fullmatch(log):
        raise InvalidContent(f"{path}.log", "must be a log id (spec/01 §3)")
    return LogAbout(
        log,
        _optional(item, "name", path, strict, lambda v, p, s: _text(v, p, MAX_NAME, line=True)),
        _optional(item, "description", path, strict,
                  lambda v, p, s: _text(v, p, MAX_DESCRIPTION)),
        _optional(item, "language", path, strict, _language),
        _optional(item, "category", path, strict, _category),
        _optional(item, "explicit", path, strict, _explicit),
        _optional(item, "artwork", path, strict, _artwork),
    )


def _about(value: dict[Any, Any], strict: bool) -> About:
    _only(value, ABOUT, ("type", "v", "name", "description", "avatar", "logs"), strict)
    logs = _array(value, "logs", ABOUT, strict, MAX_ABOUT_LOGS, _log_about)
    seen: set[str] = set()
    for index, item in enumerate(logs):
        if item.log in seen:  # no reader picks one of two descriptions
            raise InvalidContent(f"about.logs[{index}].log", f"names {item.log!r} twice")
        seen.add(item.log)
    return About(
        _text(_required(value, "name", ABOUT), "about.name", MAX_NAME, line=True),
        _optional(value, "description", ABOUT, strict,
                  lambda v, p, s: _text(v, p, MAX_DESCRIPTION)),
        _optional(value, "avatar", ABOUT, strict, _avatar),
        logs,
    )


def _seq(value: Any, path: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_SEQ:
        raise InvalidContent(path, "must be a seq: an integer from 1 to 2^63-1")
    return int(value)


def _retract(value: dict[Any, Any], strict: bool) -> Retract:
    _only(value, RETRACT, ("type", "v", "target"), strict)
    return Retract(_seq(_required(value, "target", RETRACT), "retract.target"))


class _NewerInside(Exception):
    """A replace holds a post or link share of a version this reader does not know:
    the replace is read as unknown content (spec/content.md §6.5)."""


#: What a replace may hold (spec/content.md §6.5): what a feed reader shows as an entry.
_REPLACEABLE = {POST: _post, LINK: _link}


def _replace(value: dict[Any, Any], strict: bool) -> Replace:
    _only(value, REPLACE, ("type", "v", "target", "content"), strict)
    target = _seq(_required(value, "target", REPLACE), "replace.target")
    inner = _map(_required(value, "content", REPLACE), "replace.content", "a post or a link")
    kind = inner.get("type")
    if kind not in _REPLACEABLE:
        raise InvalidContent("replace.content.type", "must be \"post\" or \"link\"")
    version = inner.get("v")
    if version is not None:
        if type(version) is not int or version < 1:
            raise InvalidContent("replace.content.v", "must be an integer of at least 1")
        if version > VERSIONS[kind]:
            if strict:
                raise InvalidContent("replace.content.v",
                                     f"this library writes version {VERSIONS[kind]} of {kind}")
            raise _NewerInside
    try:
        replacement = _REPLACEABLE[kind](inner, strict)
    except InvalidContent as exc:  # named from the top: replace.content.text, not post.text
        raise InvalidContent("replace.content" + exc.field[len(kind):], exc.problem) from None
    assert isinstance(replacement, Post | LinkShare)
    return Replace(target, replacement)


_PARSERS: dict[str, Callable[[dict[Any, Any], bool], Content]] = {
    POST: _post, LINK: _link, FOLLOW: _follow, UNFOLLOW: _follow, ABOUT: _about,
    RETRACT: _retract, REPLACE: _replace,
}


def _plain(value: Any, path: str, depth: int) -> Any:
    """A copy of ``value`` if it is in the content data model (JSON's), else raise.

    ``depth`` is the number of arrays and maps around ``value``.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -(1 << 64) <= value < 1 << 64:
            raise InvalidContent(path, "must be an integer from -2^64 to 2^64-1")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidContent(path, "must be a finite number")
        return float(value)
    if isinstance(value, str):
        return _text(value, path, MAX_CONTENT_SIZE)
    if not isinstance(value, list | tuple | dict):
        raise InvalidContent(
            path, "must be null, a boolean, a number, text, an array or a map"
        )
    if depth >= MAX_DEPTH:
        raise InvalidContent(path, f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise InvalidContent(path, "map keys must be text")
            _text(key, path, MAX_CONTENT_SIZE)
        return {key: _plain(item, f"{path}.{key}", depth + 1) for key, item in value.items()}
    return [_plain(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]


def _parse(value: object, *, strict: bool) -> Content:
    """Content from a map in the data model; raises :class:`InvalidContent`.

    A reader (``strict=False``) ignores keys it does not know and takes a higher
    version of a library type, or a type it does not know, as :class:`Unknown`.
    A writer (``strict=True``) may write only what this library defines, or an
    application's namespaced type.
    """
    if not isinstance(value, dict):
        raise InvalidContent("content", "must be a map (a JSON object)")
    kind = value.get("type")
    if not isinstance(kind, str):
        raise InvalidContent("type", "is required, and must be text")
    version = value.get("v")
    bad_version = version is not None and (type(version) is not int or version < 1)
    if bad_version and (strict or kind in _PARSERS):
        raise InvalidContent(f"{kind}.v", "must be an integer of at least 1")
    parser = _PARSERS.get(kind)
    known = VERSIONS.get(kind, 0)
    if parser is not None and (version is None or version <= known):
        try:
            return parser(value, strict)
        except _NewerInside:
            pass  # read as unknown content, below
    if strict:
        if parser is not None:
            raise InvalidContent(f"{kind}.v", f"this library writes version {known} of {kind}")
        if len(kind) > MAX_TYPE_NAME or not _APP_TYPE.fullmatch(kind):
            raise InvalidContent("type", (
                f"{kind!r} is not a type this library knows; an application's own type "
                f"needs a namespaced name of at most {MAX_TYPE_NAME} characters, such as "
                "'org.example.quiz' (a-z, 0-9, '-', '_', parts joined by dots)"
            ))
    fields: dict[str, Any] = _plain(value, kind, 0) if strict else value
    return Unknown(kind, {key: item for key, item in fields.items() if key != "type"})


# -- reading payloads (spec/content.md §4) -------------------------------------------


def _read_map(payload: bytes) -> dict[str, Any] | None:
    """The payload's map if it is one CBOR map of the data model with a text "type"."""
    # 0xa0..0xbb: a map with a definite length; anything else is not content.
    if not 0 < len(payload) <= MAX_CONTENT_SIZE or not 0xA0 <= payload[0] <= 0xBB:
        return None
    try:
        value, end = cbor.read_item(payload, 0, cbor.CONTENT)
    except cbor.CborError:
        return None
    if end != len(payload) or not isinstance(value.get("type"), str):
        return None
    return value  # type: ignore[no-any-return]


def decode(payload: bytes | None) -> Content | None:
    """The content of a payload, or None if it is absent or not content. Never raises.

    Unknown types, and library types of a higher version, come back as
    :class:`Unknown`; a library type whose fields break its rules is not content.

    >>> decode(bytes.fromhex("a26474797065706f72672e6578616d706c652e7175697a61760c"))
    Unknown(type='org.example.quiz', fields={'v': 12})
    >>> decode(bytes.fromhex("a1647479706564706f7374")) is None    # a post without text
    True
    """
    if not isinstance(payload, bytes | bytearray | memoryview) or len(payload) > MAX_CONTENT_SIZE:
        return None
    payload = bytes(payload)
    followed = parse_follow(payload)  # the node's own reading rules, exactly
    if followed is not None:
        return Follow(followed[1]) if followed[0] else Unfollow(followed[1])
    value = _read_map(payload)
    if value is None or value["type"] in (FOLLOW, UNFOLLOW):
        return None
    try:
        return _parse(value, strict=False)
    except InvalidContent:
        return None


# -- describing payloads -------------------------------------------------------------

#: Control characters and bidirectional overrides: a terminal line must not carry them.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_TEXT_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def plain_text(payload: bytes | None) -> str | None:
    """The payload as plain text: UTF-8 without control characters other than tab,
    line feed and carriage return (spec/content.md §11). Else None.

    >>> plain_text("grüße".encode()), plain_text(bytes([27, 91, 50, 74])), plain_text(None)
    ('grüße', None, None)
    """
    if payload is None:
        return None
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _TEXT_CONTROL.search(text) else text


def _one_line(text: str, limit: int = DESCRIBE_WIDTH) -> str:
    """The first line of ``text`` that is not blank, printable, cut to ``limit`` characters."""
    for line in text.splitlines():
        line = " ".join(_UNPRINTABLE.sub(" ", line).split())
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def split_title(text: str) -> tuple[str, str]:
    """A title for untitled text, and the text that follows it: ``(first line, rest)``.

    The title is the first line that is not blank, as :func:`describe` shows it.
    The rest is the text after that line (blank lines dropped from its start),
    so a renderer that shows both never shows the first line twice; when the
    line is too long for a title (it is cut, with "…"), the rest is the whole text.

    >>> split_title("Week 1\\n\\nWhat a feed is."), split_title("")
    (('Week 1', 'What a feed is.'), ('', ''))
    """
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        title = _one_line(line)
        if not title:
            continue
        if len(" ".join(_UNPRINTABLE.sub(" ", line).split())) > DESCRIBE_WIDTH:
            return title, text  # cut: the whole line must still be shown
        rest = lines[index + 1:]
        while rest and not rest[0].strip():
            rest.pop(0)
        return title, "".join(rest)
    return "", text


def _bytes(count: int) -> str:
    return f"{count} byte" if count == 1 else f"{count} bytes"


def summary(content: Content) -> str:
    """One line for ``content``, as :func:`describe` gives it for a payload.

    >>> summary(Post("", attachments=(Attachment("https://example.org/1.mp3", "audio/mpeg",
    ...                                          title="Episode 1"),)))
    'Episode 1'
    """
    if isinstance(content, Post):
        titles = [a.title for a in content.attachments if a.title]
        return (_one_line(content.title or "") or _one_line(content.text)
                or _one_line(titles[0] if titles else "") or "<post>")
    if isinstance(content, LinkShare):
        title = _one_line(content.title or "")
        return f"link: {title} ({content.url})" if title else f"link: {content.url}"
    if isinstance(content, Follow | Unfollow):
        verb = "follows" if isinstance(content, Follow) else "unfollows"
        return f"{verb} {content.feed}"
    if isinstance(content, About):
        return f"about: {_one_line(content.name)}"
    if isinstance(content, Retract):
        return f"retracts {content.target}"
    if isinstance(content, Replace):
        return _one_line(f"replaces {content.target}: {summary(content.content)}")
    version = content.fields.get("v")
    suffix = f" v{version}" if type(version) is int else ""
    return f"<{_one_line(content.type, MAX_TYPE_NAME) or '?'}{suffix}>"


def describe(payload: bytes | None) -> str:
    """A one-line summary of a payload for terminals, safe to print.

    >>> describe(encode(Post("first line\\nsecond line")))
    'first line'
    >>> describe(encode(Follow(FeedId(bytes(32), "blog"))))[:15]
    'follows tf1aaaa'
    >>> describe(b"\\x00\\xff"), describe(None)
    ('<2 bytes>', '<payload not held>')
    """
    if payload is None:
        return "<payload not held>"
    content = decode(payload)
    if content is not None:
        return summary(content)
    value = _read_map(payload)
    if value is not None:  # a library type that breaks its rules
        return f"<invalid {_one_line(value['type'], MAX_TYPE_NAME)}, {_bytes(len(payload))}>"
    line = _one_line(plain_text(payload) or "")
    return line or f"<{_bytes(len(payload))}>"


__all__ = [
    "ABOUT",
    "DESCRIBE_WIDTH",
    "FOLLOW",
    "LINK",
    "MAX_ABOUT_LOGS",
    "MAX_ATTACHMENTS",
    "MAX_ATTACHMENT_SIZE",
    "MAX_COMMENT",
    "MAX_CONTENT_SIZE",
    "MAX_DEPTH",
    "MAX_DESCRIPTION",
    "MAX_FOLLOW_PAYLOAD",
    "MAX_LINKS",
    "MAX_MEDIA_TYPE",
    "MAX_NAME",
    "MAX_TAG",
    "MAX_TAGS",
    "MAX_TEXT",
    "MAX_TITLE",
    "MAX_TYPE_NAME",
    "MAX_URL",
    "POST",
    "REPLACE",
    "RETRACT",
    "UNFOLLOW",
    "VERSIONS",
    "About",
    "Attachment",
    "Content",
    "EntryRef",
    "Follow",
    "LinkShare",
    "LogAbout",
    "Post",
    "Replace",
    "Retract",
    "Unfollow",
    "Unknown",
    "decode",
    "describe",
    "encode",
    "follow_payload",
    "follows_in",
    "from_json",
    "is_url",
    "parse_follow",
    "plain_text",
    "split_title",
    "summary",
    "to_json",
    "validate",
]
