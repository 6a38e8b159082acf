"""Blobs in the embedding API: publish(..., attachments=[path]) and streaming reads."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from tidings import open_node
from tidings.content import Post, decode

from .embed_helpers import address_of

PATIENCE = 60


async def test_an_app_publishes_an_episode_and_another_plays_it_as_it_arrives(
        tmp_path: Path) -> None:
    episode = tmp_path / "ep1.mp3"
    data = b"ID3" + os.urandom(3 * 1024 * 1024)
    episode.write_bytes(data)
    async with open_node(tmp_path / "author", listen="127.0.0.1:0") as author:
        entry = await author.publish(Post("Episode 1"), "podcast", attachments=[episode])
        post = decode(await author.payload(entry.feed, entry.seq))
        assert isinstance(post, Post)
        [attachment] = post.attachments
        assert (attachment.media_type, attachment.size) == ("audio/mpeg", len(data))
        assert attachment.blob is not None
        async with open_node(tmp_path / "reader", peers=[address_of(author)]) as reader:
            await reader.follow(entry.feed)
            played = bytearray()
            with trio.fail_after(PATIENCE):
                async for piece in reader.read_blob(attachment.blob):
                    played += piece
            assert bytes(played) == data
            with trio.fail_after(PATIENCE):
                tail = [p async for p in reader.read_blob(attachment.blob, len(data) - 10)]
            assert b"".join(tail) == data[-10:]
