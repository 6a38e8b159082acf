"""External test vectors (Noise, CBOR): ``../shared/vectors`` when present, else ``tests/vectors``.

Both copies are the same published files; ``tests/vectors/README.md`` says
where they come from, under which licence, and gives their SHA-256 sums.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent / "vectors"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "vectors"


def external_vectors(kind: str, name: str) -> Path:
    """The path of vector file ``kind/name``, preferring the shared folder's copy."""
    shared = SHARED / kind / name
    return shared if shared.is_file() else HERE / kind / name


def recorded_sums() -> dict[str, str]:
    """``kind/name`` -> SHA-256 hex, as tests/vectors/README.md records them."""
    text = (HERE / "README.md").read_text(encoding="utf-8")
    return {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", text, re.M)}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
