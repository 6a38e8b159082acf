"""Running tidings as a service (docs/relay.md, contrib/systemd/, Containerfile).

The systemd units are checked by ``systemd-analyze verify`` (skipped, saying so,
where it is not installed), with ExecStart pointing at this checkout's
``tidings``; the Containerfile by a structural check (no linter is installed
here), and built where a container engine answers. Every ``tidings`` command
the guide shows parses with the real command line, and its "Try it on one
machine" walk-through runs.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tidings.cli.main import build_parser
from tidings.node.home import DEFAULT_LISTEN

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "contrib" / "systemd"
CONTAINERFILE = ROOT / "Containerfile"
GUIDE = ROOT / "docs" / "relay.md"
TIDINGS = Path(sys.executable).parent / "tidings"
INSTALLED = "/opt/tidings/bin/tidings"  # where the system units expect it
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def unit_as_installed_here(name: str, tmp_path: Path) -> Path:
    """The unit with ExecStart at this checkout's tidings (verify checks the binary exists)."""
    text = (UNITS / name).read_text()
    assert INSTALLED in text or "%h/.local/bin/tidings" in text
    copy = tmp_path / name
    copy.write_text(text.replace(INSTALLED, str(TIDINGS)))
    return copy


def verify(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=120,
                          env=env, check=False)


def exec_start(unit: Path) -> list[str]:
    lines = [line for line in unit.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1
    return shlex.split(lines[0].removeprefix("ExecStart="))


@pytest.mark.system
@needs_analyze
@pytest.mark.parametrize("name", ["tidings.service", "tidings-feeds.service"])
def test_the_system_units_verify(name: str, tmp_path: Path) -> None:
    unit = unit_as_installed_here(name, tmp_path)
    done = verify("verify", str(unit))
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    text = unit.read_text()
    for setting in ("User=tidings", "NoNewPrivileges=yes", "ProtectSystem=strict",
                    "ProtectHome=yes", "PrivateTmp=yes", "CapabilityBoundingSet=\n",
                    "SystemCallFilter=@system-service", "RestrictAddressFamilies=",
                    "Environment=TIDINGS_HOME=/var/lib/tidings", "StateDirectory=tidings"):
        assert setting in text, setting
    # What the unit runs is a command tidings takes.
    build_parser().parse_args(exec_start(unit)[1:])
    # systemd's own rating of the sandbox, where this systemd rates unit files offline.
    rated = verify("security", "--offline=yes", str(unit))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", rated.stdout)
    if found is not None:
        assert float(found[1]) <= 2.0, rated.stdout[-2000:]


@pytest.mark.system
@needs_analyze
def test_the_user_unit_verifies(tmp_path: Path) -> None:
    home, runtime = tmp_path / "home", tmp_path / "run"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "tidings").symlink_to(TIDINGS)  # where pipx puts it
    runtime.mkdir(mode=0o700)
    unit = UNITS / "tidings-user.service"
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    done = verify("--user", "verify", str(unit), env=env)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    build_parser().parse_args(exec_start(unit)[1:])
    assert "WantedBy=default.target" in unit.read_text()


def test_the_sysusers_file_makes_the_units_user() -> None:
    line = [raw for raw in (UNITS / "tidings.sysusers").read_text().splitlines()
            if raw and not raw.startswith("#")]
    assert shlex.split(line[0])[:2] == ["u", "tidings"]
    assert shlex.split(line[0])[4] == "/var/lib/tidings"


# -- the Containerfile -------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_the_containerfile_builds_a_slim_non_root_image_with_a_volume_and_a_health_check(
        ) -> None:
    steps = instructions(CONTAINERFILE)
    known = {"FROM", "WORKDIR", "COPY", "RUN", "ENV", "USER", "VOLUME", "EXPOSE",
             "HEALTHCHECK", "ENTRYPOINT", "CMD", "STOPSIGNAL", "ARG", "LABEL"}
    assert {word for word, _ in steps} <= known
    stages = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    final = steps[stages[-1]:]
    for word, rest in steps:
        if word == "FROM":
            assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?( AS \w+)?", rest), rest
        if word == "COPY" and not rest.startswith("--from"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source  # what it copies is in the repo
        assert word != "ADD"  # nothing fetched at build time
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    last_user = max(i for i, (word, _) in enumerate(final) if word == "USER")
    assert all(i > last_user for i, (word, _) in enumerate(final)
               if word in ("ENTRYPOINT", "CMD", "HEALTHCHECK"))
    env = " ".join(rest for word, rest in final if word == "ENV")
    home = re.search(r"TIDINGS_HOME=(\S+)", env)
    assert home is not None
    volumes = [rest for word, rest in final if word == "VOLUME"]
    assert volumes and home[1] in volumes[0]
    exposed = " ".join(rest for word, rest in final if word == "EXPOSE").split()
    assert DEFAULT_LISTEN.rsplit(":", 1)[1] in exposed
    health = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert len(health) == 1 and '"tidings", "status"' in health[0]
    entrypoint = [rest for word, rest in final if word == "ENTRYPOINT"]
    cmd = [rest for word, rest in final if word == "CMD"]
    assert entrypoint == ['["tidings"]']
    import json
    build_parser().parse_args(json.loads(cmd[0]))  # the default command is one tidings takes
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def _engine() -> str | None:
    for name in ("podman", "docker"):
        path = shutil.which(name)
        if path and subprocess.run([path, "info"], capture_output=True, timeout=60,
                                   check=False).returncode == 0:
            return path
    return None


@pytest.mark.system
def test_the_container_image_builds_where_an_engine_runs(tmp_path: Path) -> None:
    engine = _engine()
    if engine is None:
        pytest.skip("no container engine answers here (podman or docker)")
    tag = f"tidings-test:{os.getpid()}"
    done = subprocess.run([engine, "build", "-t", tag, "-f", str(CONTAINERFILE), str(ROOT)],
                          capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    try:
        shown = subprocess.run([engine, "run", "--rm", tag, "--version"], capture_output=True,
                               text=True, timeout=300, check=False)
        assert shown.returncode == 0 and shown.stdout.startswith("tidings "), shown.stderr
        user = subprocess.run([engine, "run", "--rm", "--entrypoint", "id", tag, "-u"],
                              capture_output=True, text=True, timeout=300, check=False)
        assert user.stdout.strip() not in ("", "0")
    finally:
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, timeout=300,
                       check=False)


# -- the guide ---------------------------------------------------------------------------


def guide_commands() -> list[list[str]]:
    """The arguments of every `tidings ...` command in the guide's sh blocks."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
            for index, token in enumerate(tokens):
                before = tokens[index - 1] if index else ""
                at_command = (not before or set(before) <= set("|&;<>()$")
                              or before in ("until", "while", "if", "then", "do", "!"))
                if token not in ("tidings", INSTALLED) or not at_command:
                    continue
                args = []
                for word in tokens[index + 1:]:
                    if word and set(word) <= set("|&;<>()"):
                        break  # the end of this command: a pipe, a redirection, ...
                    args.append(word)
                if args and args[-1].isdigit():
                    args.pop()  # "2>": the file descriptor of a redirection
                found.append(args)
    return found


def test_every_command_of_the_guide_is_one_tidings_takes() -> None:
    commands = guide_commands()
    seen = set()
    for words in commands:
        args = build_parser().parse_args(words)
        seen.add(args.command)
    assert {"up", "serve-feeds", "status", "verify", "init", "publish", "feeds"} <= seen


def test_the_guide_walk_through_runs(tmp_path: Path) -> None:
    text = GUIDE.read_text()
    start = text.index("## Try it on one machine")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block is not None
    env = {k: v for k, v in os.environ.items() if k != "TIDINGS_HOME"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block[1]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert "Hello from the author" in lines  # the author's post, on the relay's gateway
    assert lines[-1].startswith("node     up ")  # tidings status of the relay
    for log in ("relay.log", "author.log", "feeds.log"):
        assert "Traceback" not in (tmp_path / log).read_text()
