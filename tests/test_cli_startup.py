"""A command loads what it needs (issue 16): `tidings sync` starts without the content
types, identities or HTTP side, and `import tidings` loads nothing until a name is used."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import tidings
from tidings.cli.main import COMMAND_MODULES, build_parser, command_named


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def test_the_command_table_names_the_module_that_adds_each_command() -> None:
    everything = _commands(build_parser())
    for module in set(COMMAND_MODULES.values()):
        adds = _commands(build_parser(module))
        assert adds == {c for c, m in COMMAND_MODULES.items() if m == module}, module
        assert adds <= everything
    assert everything == set(COMMAND_MODULES)


@pytest.mark.parametrize(("argv", "named"), [
    (["sync", "--peer", "x"], "sync"),
    (["--home", "/h", "sync"], "sync"),
    (["--home=/h", "show", "main"], "show"),
    (["--help"], None),
    (["--version"], None),
    (["--home"], None),
    ([], None),
])
def test_the_command_is_found_only_after_home(argv: list[str], named: str | None) -> None:
    assert command_named(argv) == named


def _loaded_by(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", code + "\nimport sys\n"
                           "print(' '.join(m for m in sys.modules if m.startswith('tidings')))"],
                          capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_sync_loads_neither_trio_nor_content_nor_identities_nor_http(tmp_path: Path) -> None:
    """`tidings sync` dials on a blocking socket (node/client.py): it loads the
    replicator, not trio or the node around it (about 0.15 s of every sync)."""
    loaded = _loaded_by("import contextlib, io\nfrom tidings.cli.main import main\n"
                        "with contextlib.redirect_stderr(io.StringIO()):\n"
                        f"    code = main(['--home', {str(tmp_path / 'home')!r}, 'sync', "
                        "'--peer', '127.0.0.1:1'])\n"
                        "assert code != 0  # (it follows no feed: it stops before dialing)\n"
                        "import sys\nif 'trio' in sys.modules: print('TRIO')")
    assert {"tidings.cli.node", "tidings.node.client", "tidings.replication.replicator"} <= loaded
    for heavy in ("TRIO", "tidings.node.daemon", "tidings.node.lifecycle",
                  "tidings.cli.identity", "tidings.cli.reading", "tidings.cli.authoring",
                  "tidings.core.content", "tidings.http.feedimport", "tidings.embed"):
        assert heavy not in loaded, heavy


def test_the_store_commands_load_neither_the_node_nor_identities_nor_http(
        tmp_path: Path) -> None:
    """`whoami`, `publish`, `feeds`... (cli/main.py's own commands) parse with their own
    part of the command line; `show` and `follow` of a feed load no identity module."""
    loaded = _loaded_by("from tidings.cli.main import build_parser\n"
                        "build_parser('main').parse_args(['publish', '--title', 't', 'x'])\n"
                        "import tidings.cli.authoring  # (what cmd_publish loads)")
    for heavy in ("tidings.node.daemon", "tidings.replication.replicator",
                  "tidings.replication.blob_fetch", "tidings.transport.noise",
                  "tidings.cli.node", "tidings.cli.reading", "tidings.cli.identity",
                  "tidings.node.identities", "tidings.http.feedview"):
        assert heavy not in loaded, heavy
    from tidings.cli.main import main

    home = str(tmp_path / "home")
    assert main(["--home", home, "init"]) == 0
    assert main(["--home", home, "publish", "--log", "blog", "one"]) == 0
    for command in ("show", "follow"):
        loaded = _loaded_by("import contextlib, io\nfrom tidings.cli.main import main\n"
                            "with contextlib.redirect_stdout(io.StringIO()):\n"
                            f"    assert main(['--home', {home!r}, {command!r}, 'blog']) == 0")
        assert "tidings.cli.follow" not in loaded and "tidings.node.identities" not in loaded


def test_sync_loads_no_key_serialization() -> None:
    """Keys are read and written in their raw forms: cryptography's serialization package
    (PEM, SSH, PKCS#12 ...) is ~25 ms of every sync's start-up, and no command needs it."""
    loaded = _loaded_by("import tidings.cli.main, tidings.cli.node, tidings.node.client\n"
                        "import sys\n"
                        "print('SERIALIZATION' if 'cryptography.hazmat.primitives."
                        "serialization' in sys.modules else '')")
    assert "SERIALIZATION" not in loaded


def test_only_the_program_itself_leaves_its_objects_to_exit(tmp_path: Path) -> None:
    """The command line spares the interpreter's last collections (gc.freeze) only when
    it is the program (``main()``); an app calling ``main(argv)`` keeps its collector."""
    import gc

    from tidings.cli.main import main

    frozen = gc.get_freeze_count()
    assert main(["--home", str(tmp_path / "home"), "init"]) == 0
    assert gc.get_freeze_count() == frozen
    done = subprocess.run([sys.executable, "-c", "import gc, sys\n"
                           "from tidings.cli.main import main\n"
                           "sys.argv = ['tidings', '--home', sys.argv[1], 'whoami']\n"
                           "code = main()\n"
                           "print(code, gc.get_freeze_count() > 0)", str(tmp_path / "home")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["0", "True"]  # (after whoami's author id)


def test_import_tidings_loads_a_name_on_first_use() -> None:
    assert _loaded_by("import tidings") == {"tidings"}
    assert set(tidings.__all__) <= set(dir(tidings))
    from tidings.core.content import Post

    assert tidings.Post is Post
    with pytest.raises(AttributeError):
        _ = tidings.nothing_here  # type: ignore[attr-defined]
