"""Structured log lines: ``time=... level=info event=connected peer=1a2b3c4d addr=...``.

One line per event, logfmt, on standard error. Values are quoted when they hold
spaces or quotes; secret keys are never passed here (transport keys are public
and shown shortened).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import TextIO


def _value(value: object) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text)
    return text


def short_key(key: bytes | None) -> str:
    """The first 8 hex digits of a transport key: enough to tell peers apart in logs."""
    return key.hex()[:8] if key else "-"


LEVELS = {"debug": 0, "info": 1, "warning": 2, "quiet": 3}


class Logger:
    def __init__(self, stream: TextIO | None = None, *, level: str = "info",
                 as_json: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.threshold = LEVELS[level]
        self.as_json = as_json

    def log(self, level: str, event: str, **fields: object) -> None:
        if LEVELS[level] < self.threshold:
            return
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        # A field that is None says nothing: it is left out.
        record = {"time": stamp, "level": level, "event": event,
                  **{k: v for k, v in fields.items() if v is not None}}
        if self.as_json:
            line = json.dumps(record, default=str)
        else:
            line = " ".join(f"{k}={_value(v)}" for k, v in record.items())
        with contextlib.suppress(OSError, ValueError):  # a closed log must not stop the node
            print(line, file=self.stream, flush=True)

    def info(self, event: str, **fields: object) -> None:
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: object) -> None:
        self.log("warning", event, **fields)

    def debug(self, event: str, **fields: object) -> None:
        self.log("debug", event, **fields)
