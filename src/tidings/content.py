"""Content conventions: what a payload means (spec/content.md).

The public face of :mod:`tidings.core.content`, where the types and their strict
readers live (pure, like the rest of ``core``). Payloads are free bytes; by
convention, content is a CBOR map whose ``"type"`` names what it is: a post, a
shared link, a follow, an author's "about"::

    >>> from tidings.content import Post, decode, encode
    >>> decode(encode(Post("hello, world"))) == Post("hello, world")
    True
"""

from tidings.core.content import *  # noqa: F403  (the public names, listed in __all__)
from tidings.core.content import __all__ as __all__
