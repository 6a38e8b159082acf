"""Helpers for tests of embedded nodes (tidings.open_node)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from tidings.embed import EmbeddedNode

#: How long a test waits for something the network should do.
PATIENCE = 60.0


def address_of(node: EmbeddedNode) -> str:
    """Where ``node`` listens, as HOST:PORT."""
    assert node.listen_address is not None
    host, port = node.listen_address
    return f"{host}:{port}"


async def eventually(condition: Callable[[], Any], what: str) -> None:
    """Poll ``await condition()`` (or a plain ``condition()``) until it holds."""
    try:
        with trio.fail_after(PATIENCE):
            while True:
                outcome = condition()
                if hasattr(outcome, "__await__"):
                    outcome = await outcome
                if outcome:
                    return
                await trio.sleep(0.01)
    except trio.TooSlowError:
        raise AssertionError(f"gave up waiting for {what}") from None
