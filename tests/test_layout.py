"""The layout's rules (tools/check_imports.py): pure layers do no I/O, no import
circles, no private names across packages. Checked on src/, and shown to catch
each breach on a small tree made here."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import check_imports  # noqa: E402


def test_the_import_rules_hold_in_src() -> None:
    assert check_imports.check(ROOT / "src") == []


def test_the_tool_runs_as_a_script() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "check_imports.py")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"tidings/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(("files", "found"), [
    ({"tidings/core/__init__.py": "", "tidings/core/a.py": "import socket\n"},
     "tidings.core.a: imports socket"),
    ({"tidings/core/__init__.py": "", "tidings/core/a.py": "from tidings.util import x\n",
      "tidings/util.py": "import sqlite3\nx = 1\n"},
     "tidings.core.a: imports sqlite3 (tidings.core.a -> tidings.util"),
    ({"tidings/wire/__init__.py": "", "tidings/wire/m.py": "def f():\n    import trio\n"},
     "tidings.wire.m: imports trio"),
    ({"tidings/core/__init__.py": "", "tidings/core/t.py": "import time\n"},
     "tidings.core.t: imports time"),
    ({"tidings/core/__init__.py": "", "tidings/core/t.py": "import os\n"},
     "tidings.core.t: imports os"),
    ({"tidings/core/__init__.py": "", "tidings/node/__init__.py": "",
      "tidings/core/a.py": "from tidings.node import x\n"},
     "tidings.core.a: imports tidings.node"),
    ({"tidings/replication/__init__.py": "", "tidings/replication/r.py": "import sqlite3\n"},
     "tidings.replication.r: imports sqlite3"),
    ({"tidings/a.py": "from tidings import b\n", "tidings/b.py": "from tidings import a\n"},
     "import circle: tidings.a, tidings.b"),
    ({"tidings/p/__init__.py": "from tidings.p.x import X\n",
      "tidings/p/x.py": "from tidings.q import Y\nX = 1\n",
      "tidings/q.py": "from tidings.p import X\nY = 2\n"},
     "import circle: tidings.p, tidings.p.x, tidings.q"),
    ({"tidings/p/__init__.py": "", "tidings/p/m.py": "_secret = 1\n",
      "tidings/other.py": "from tidings.p.m import _secret\n"},
     "tidings.other (other.py:1) imports the private _secret of tidings.p.m"),
])
def test_each_breach_is_found(tmp_path: Path, files: dict[str, str], found: str) -> None:
    problems = check_imports.check(tree(tmp_path, files))
    assert any(found in problem for problem in problems), problems


@pytest.mark.parametrize("files", [
    # a function-level import breaks a circle on purpose (it runs later)
    {"tidings/a.py": "from tidings import b\n",
     "tidings/b.py": "def f():\n    from tidings import a\n"},
    # TYPE_CHECKING imports run never
    {"tidings/a.py": "from tidings import b\n",
     "tidings/b.py": ("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from tidings import a\n")},
    # a package's modules import each other through it
    {"tidings/s/__init__.py": "from tidings.s.m import M\n",
     "tidings/s/m.py": "from tidings.s.base import B\nM = B\n", "tidings/s/base.py": "B = 1\n"},
    # the transport may take randomness from os; replication reaches I/O through the store
    {"tidings/transport/__init__.py": "", "tidings/transport/n.py": "import os\n"},
    {"tidings/replication/__init__.py": "", "tidings/storage/__init__.py": "",
     "tidings/replication/r.py": "from tidings.storage import s\n",
     "tidings/storage/s.py": "import sqlite3\n"},
    # private names inside their own package are the package's business
    {"tidings/p/__init__.py": "", "tidings/p/m.py": "_x = 1\n",
     "tidings/p/n.py": "from tidings.p.m import _x\n"},
])
def test_what_is_allowed_is_not_a_breach(tmp_path: Path, files: dict[str, str]) -> None:
    assert check_imports.check(tree(tmp_path, files)) == []


def test_every_name_the_fuzz_harnesses_take_from_tidings_is_there() -> None:
    """fuzz/ runs only under atheris (docs/fuzzing.md), never in the suite: a name moved
    in tidings would break it unnoticed, so each ``from tidings... import`` is checked."""
    checked = 0
    for script in sorted((ROOT / "fuzz").glob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tidings"):
                module = importlib.import_module(node.module or "")
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{script.name}: {node.module}.{alias.name}"
                    checked += 1
    assert checked > 10
