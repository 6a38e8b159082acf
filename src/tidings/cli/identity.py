"""Identity commands (spec/12 §10): identity init/show/export/import/rotate, share,
device pair/approve/list/revoke.

This home's device key is its author key (``secret.key``): it writes the device's
feeds and never leaves the machine. The identity's root key (``root.key``) lives
on the device that approves new devices; the next key lives in a key file the
owner keeps offline (a passphrase-protected file and a recovery phrase).
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tidings.cli.common import EXIT_BAD_DATA, EXIT_OK, CommandError, err, print_json, seconds_arg
from tidings.core import kel
from tidings.core.ids import FeedId
from tidings.core.invite import Invite, make_pairing_request, parse_pairing_input
from tidings.core.kel import Cut, IdentityState, Revocation, format_identity, public_bytes
from tidings.identity import read_key_file, write_key_file
from tidings.keyfile import (
    DEFAULT_LOG2_N,
    KIND_NEXT,
    KIND_ROOT,
    read_sealed_key,
    recovery_phrase,
    seal_key,
    write_sealed_key,
)
from tidings.node.home import Home
from tidings.node.identities import describe
from tidings.node.state import NodeState
from tidings.replication.identities import IdentityBook

if TYPE_CHECKING:
    from tidings.storage.logbook import Logbook

ROOT_KEY_FILE = "root.key"
ROOT_KEY_HEADER = "tidings-root-key-1"
#: The node state setting that names this home's identity.
OWN_IDENTITY = "identity"
#: Where a passphrase may come from without a prompt (scripts and tests).
PASSPHRASE_ENV = "TIDINGS_PASSPHRASE"


def _state(home: Home) -> NodeState:
    home.open_logbook(create=True).store.close()  # makes the home if needed
    return NodeState(home.node_state_path)


def own_identity(state: NodeState) -> bytes:
    identity = state.setting(OWN_IDENTITY)
    if identity is None:
        raise CommandError("this home belongs to no identity: run `tidings identity init` "
                           "(a new one) or `tidings device pair ti1...` (join one)")
    return identity


def identity_state(state: NodeState, identity: bytes) -> IdentityState:
    book = IdentityBook(state)
    found = book.state(identity)
    return found if found is not None else kel.fold(identity, [])


def held_identity(book: IdentityBook, identity: bytes) -> IdentityState:
    """The state of ``identity``, whose log this home must hold (else what to do)."""
    current = book.state(identity)
    if current is None or current.status == "unknown":
        raise CommandError(f"this home holds no log of {format_identity(identity)}: "
                           "`tidings follow` it and let the node sync")
    return current


def _root(home: Home) -> Ed25519PrivateKey:
    path = home.path / ROOT_KEY_FILE
    if not path.exists():
        raise CommandError(f"this home holds no root key ({path}): run this on the device "
                           "that does, or `tidings identity import` the root key here")
    return Ed25519PrivateKey.from_private_bytes(read_key_file(path, ROOT_KEY_HEADER, "root key"))


def _write_root(home: Home, root: Ed25519PrivateKey) -> None:
    path = home.path / ROOT_KEY_FILE
    draft = home.path / f".{ROOT_KEY_FILE}.new"
    draft.unlink(missing_ok=True)
    write_key_file(draft, ROOT_KEY_HEADER, root.private_bytes_raw())
    os.replace(draft, path)  # a rotation replaces the root key in one step


def _passphrase(what: str, *, new: bool) -> str:
    given = os.environ.get(PASSPHRASE_ENV)
    if given:
        return given
    if not sys.stdin.isatty():
        raise CommandError(f"a passphrase is needed for {what}: run in a terminal, or set "
                           f"{PASSPHRASE_ENV}")
    first = getpass.getpass(f"passphrase for {what}: ")
    if new and getpass.getpass("again: ") != first:
        raise CommandError("the passphrases differ; nothing was written")
    if not first:
        raise CommandError("an empty passphrase protects nothing; nothing was written")
    return first


def _append(state: NodeState, identity: bytes, event: kel.Event) -> IdentityState:
    book = IdentityBook(state)
    added = book.add(identity, [event.raw])
    if added.refused:
        _, refusal = added.refused[0]
        raise CommandError(f"the identity log refused the event ({refusal.rule}): "
                           f"{refusal.detail}")
    return added.state


def _write_next(path: Path, secret: Ed25519PrivateKey, identity: bytes, cost: int) -> None:
    sealed = seal_key(secret, kind=KIND_NEXT, identity=identity,
                      passphrase=_passphrase(f"the next key file {path}", new=True), log2_n=cost)
    try:
        write_sealed_key(path, sealed)
    except FileExistsError:
        raise CommandError(f"{path} exists; a key file is never overwritten") from None
    err(f"wrote the next key to {path}: keep it offline (it rotates the root key after a "
        "loss or theft). Its recovery phrase, to write on paper:")
    err("  " + recovery_phrase(secret))


def cmd_identity_init(args: argparse.Namespace, home: Home) -> int:
    device, _ = home.init()
    state = _state(home)
    try:
        if state.setting(OWN_IDENTITY) is not None:
            raise CommandError(f"this home already belongs to identity "
                               f"{format_identity(own_identity(state))}")
        if (home.path / ROOT_KEY_FILE).exists():
            raise CommandError(f"{home.path / ROOT_KEY_FILE} exists: this home holds a root "
                               "key already; move it away first if it is no longer needed")
        root, nxt = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        inception = kel.make_inception(root, public_bytes(nxt))
        identity = inception.hash
        name = args.name or socket.gethostname()[:64] or "device"
        claim = kel.sign_device_claim(device.secret_key, identity, name)
        added = kel.make_device_add(root, kel.fold(identity, [inception.raw]),
                                    device.author.key, name, claim)
        # The next key's file first: if it cannot be written, nothing else is.
        _write_next(Path(args.next_key_file), nxt, identity, args.kdf_cost)
        _write_root(home, root)
        _append(state, identity, inception)
        _append(state, identity, added)
        state.set_setting(OWN_IDENTITY, identity)
        state.follow_identity(identity)
    finally:
        state.close()
    if args.json:
        print_json({"identity": format_identity(identity), "device": name})
    else:
        print(format_identity(identity))
        err(f"this device ({name}) is the identity's first device")
    return EXIT_OK


def cmd_identity_show(args: argparse.Namespace, home: Home) -> int:
    state = _state(home)
    try:
        identity = (kel.parse_identity_input(args.identity) if args.identity
                    else own_identity(state))
        current = identity_state(state, identity)
    finally:
        state.close()
    data = describe(current)
    if args.json:
        print_json(data)
        return EXIT_OK
    print(f"{data['identity']}  {current.status}  log seq {current.seq}")
    for device in current.devices.values():
        status = "active" if device.active else f"revoked at log seq {device.revoked_seq}"
        print(f"  {device.name:20}  {FeedId(device.key, 'main').author}  {status}")
    return EXIT_OK


def cmd_identity_export(args: argparse.Namespace, home: Home) -> int:
    state = _state(home)
    try:
        identity = own_identity(state)
    finally:
        state.close()
    root = _root(home)
    sealed = seal_key(root, kind=KIND_ROOT, identity=identity,
                      passphrase=_passphrase(f"the root key file {args.file}", new=True),
                      log2_n=args.kdf_cost)
    try:
        write_sealed_key(Path(args.file), sealed)
    except FileExistsError:
        raise CommandError(f"{args.file} exists; a key file is never overwritten") from None
    err(f"wrote the root key to {args.file}; its recovery phrase:")
    err("  " + recovery_phrase(root))
    return EXIT_OK


def cmd_identity_import(args: argparse.Namespace, home: Home) -> int:
    sealed = read_sealed_key(Path(args.file))
    if sealed.kind != KIND_ROOT:
        raise CommandError(f"{args.file} holds a next key: `tidings identity rotate "
                           f"--next-key {args.file}` uses it")
    root = sealed.open(_passphrase(f"the root key file {args.file}", new=False))
    # The file holds the root key only: this machine's device key is the home's own,
    # made here (`home.init`) if the home has none, and never taken from elsewhere.
    device, _ = home.init()
    state = _state(home)
    try:
        known = state.setting(OWN_IDENTITY)
        if known is not None and known != sealed.identity:
            raise CommandError(
                f"this home's device key belongs to another identity "
                f"({format_identity(known)}); a device key serves one identity. Import "
                f"into a new home (`tidings --home NEW_DIR identity import {args.file}`), "
                "which makes itself a new device key")
        state.set_setting(OWN_IDENTITY, sealed.identity)
        state.follow_identity(sealed.identity)
        current = identity_state(state, sealed.identity)
        if current.status == "unknown":
            err("the identity's log is not here yet: run `tidings sync --peer HOST:PORT` "
                "(or `tidings up`), then this command again to add this device")
            return EXIT_OK
        if current.root_key != public_bytes(root):
            raise CommandError("this is not the identity's current root key (was it rotated?)")
        mine = current.devices.get(device.author.key)
        if mine is not None and not mine.active:
            raise CommandError(
                f"this home's device key is the identity's revoked device {mine.name!r}; "
                f"it never writes for the identity again. Import into a new home "
                f"(`tidings --home NEW_DIR identity import {args.file}`), which makes "
                "itself a new device key")
        _write_root(home, root)
        if mine is not None:
            # This home is one of the identity's devices already (it lost its root key
            # file): the root key comes back; the device key stays what it was.
            err(f"this home is the identity's device {mine.name!r}; its root key is back")
        else:
            name = args.name or socket.gethostname()[:64] or "device"
            claim = kel.sign_device_claim(device.secret_key, sealed.identity, name)
            _append(state, sealed.identity, kel.make_device_add(
                root, current, device.author.key, name, claim))
            err(f"this machine is now a new device of the identity: {name}")
    finally:
        state.close()
    print(format_identity(sealed.identity))
    return EXIT_OK


def _device_named(current: IdentityState, name: str) -> bytes:
    found = [k for k, d in current.devices.items() if d.name == name or k.hex() == name
             or str(FeedId(k, "main").author) == name]
    if not found:
        raise CommandError(f"no device {name!r}: see `tidings device list`")
    if len(found) > 1:
        raise CommandError(f"several devices are named {name!r}: give its author id")
    return found[0]


def _cuts(home: Home, key: bytes, args: argparse.Namespace) -> list[Cut]:
    book = home.open_logbook(create=True)
    try:
        cuts: dict[str, Cut] = {}
        if args.keep_all:
            for info in book.feeds():
                if info.feed.author_key == key and info.latest_seq and info.head_hash:
                    cuts[info.feed.log_id] = Cut(info.feed.log_id, info.latest_seq,
                                                 info.head_hash)
        for text in args.cut or ():
            log, _, seq_text = text.partition("=")
            if not seq_text.isdigit() or int(seq_text) < 1:
                raise CommandError(f"--cut takes LOG=SEQ, not {text!r}")
            seq = int(seq_text)
            hashes = book.store.hashes(FeedId(key, log), [seq])
            if seq not in hashes:
                raise CommandError(f"this store does not hold seq {seq} of the device's "
                                   f"{log!r}: sync first, or cut lower")
            cuts[log] = Cut(log, seq, hashes[seq])
        return [cuts[log] for log in sorted(cuts, key=lambda log: log.encode())]
    finally:
        book.store.close()


def cmd_identity_rotate(args: argparse.Namespace, home: Home) -> int:
    sealed = read_sealed_key(Path(args.next_key))
    if sealed.kind != KIND_NEXT:
        raise CommandError(f"{args.next_key} holds a root key, not the next key")
    nxt = sealed.open(_passphrase(f"the next key file {args.next_key}", new=False))
    state = _state(home)
    try:
        identity = sealed.identity
        current = identity_state(state, identity)
        if current.status == "unknown":
            raise CommandError("this home does not hold the identity's log: sync first")
        revocations = [Revocation(_device_named(current, name), ()) for name in args.revoke or ()]
        root, new_next = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
        try:
            event = kel.make_rotation(nxt, current, public_bytes(root), public_bytes(new_next),
                                      revocations, after_seq=args.after)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        _write_next(Path(args.new_next_key), new_next, identity, args.kdf_cost)
        after = _append(state, identity, event)
        _write_root(home, root)
        state.set_setting(OWN_IDENTITY, identity)
        state.follow_identity(identity)
    finally:
        state.close()
    print(f"{format_identity(identity)} rotated at log seq {event.seq} ({after.status})")
    err(f"destroy {args.next_key}: it is spent, and a second rotation with it would end "
        "the identity")
    return EXIT_OK


def cmd_share(args: argparse.Namespace, home: Home) -> int:
    from tidings.node.options import parse_address

    state = _state(home)
    try:
        identity = own_identity(state)
    finally:
        state.close()
    addresses = []
    for text in args.address or ():
        try:
            addresses.append(parse_address(text))
        except Exception as exc:
            raise CommandError(f"--address {text}: {exc}") from None
    logs = sorted(set(args.log or ()), key=lambda log: log.encode())
    invite = Invite(identity, tuple(logs), tuple(addresses))
    print_json({"invite": str(invite)}) if args.json else print(invite)
    return EXIT_OK


def cmd_device_pair(args: argparse.Namespace, home: Home) -> int:
    from tidings.node.identities import parse_target

    target = parse_target(args.target)
    device, _ = home.init()
    state = _state(home)
    try:
        known = state.setting(OWN_IDENTITY)
        if known is not None and known != target.identity:
            raise CommandError("this home belongs to another identity already")
        request = make_pairing_request(device.secret_key, target.identity, args.name)
        state.set_setting(OWN_IDENTITY, target.identity)
        state.follow_identity(target.identity)
        if target.addresses:
            state.add_peers(target.addresses, "invite")
        peers = [record.address for record in state.peers()]
    finally:
        state.close()
    approve = ("on the device that holds the root key, run `tidings device approve REQUEST` "
               "(REQUEST: the tpair1... line) and check that it shows this code")
    if args.no_wait:
        if args.json:
            print_json({"request": str(request), "code": request.code})
        else:
            print(request)
            err(f"verification code: {request.code}")
            err(f"{approve}; this device is added once the approval arrives")
        return EXIT_OK
    if args.json:
        err(f"pairing request: {request}")
    else:
        print(request, flush=True)
    err(f"verification code: {request.code}")
    err(approve)
    peers = list(dict.fromkeys([*(parse_peer(text) for text in args.peer or ()), *peers]))
    devices = _wait_for_approval(args, home, target.identity, device.author.key, peers)
    name = format_identity(target.identity)
    if args.json:
        print_json({"request": str(request), "code": request.code, "identity": name,
                    "device": args.name, "approved": True, "devices": devices})
    else:
        print(f"approved: this device ({args.name}) is one of the {devices} device(s) of "
              f"{name}")
    return EXIT_OK


def parse_peer(text: str) -> tuple[str, int]:
    from tidings.node.options import parse_address

    try:
        return parse_address(text)
    except Exception as exc:
        raise CommandError(f"--peer {text}: {exc}") from None


#: How long one attempt to hear the approval from one peer may take (a sync of the
#: identity log and the followed feeds; what is left is fetched next round).
PAIR_ATTEMPT = 20.0
#: Seconds between rounds of asking the peers (and reading this home's node state).
PAIR_ROUND = 2.0


def _wait_for_approval(args: argparse.Namespace, home: Home, identity: bytes, key: bytes,
                       peers: list[tuple[str, int]]) -> int:
    """Wait until this home's identity log holds the device-add of ``key``: fetched from
    ``peers`` in rounds, or written by a node running on this home. Returns the number of
    active devices. Progress goes to stderr."""
    import math
    import time

    import trio

    from tidings.errors import PeerError, UsageError
    from tidings.node.home import SYNC_KEY_FILE
    from tidings.node.lifecycle import assemble_node

    try:
        home.lock().release()
        running = False
    except UsageError:
        running = True  # its node fetches the log; this process reads the state
    options = home.node_options("client")
    node = assemble_node(home, options, key_file=SYNC_KEY_FILE, create=True)
    started = time.monotonic()
    timeout = args.timeout or math.inf

    def approved() -> int:
        node.replicator.reload_identities()
        state = node.replicator.identities.state(identity)
        if state is None or key not in state.devices or not state.devices[key].active:
            return 0
        return sum(1 for d in state.devices.values() if d.active)

    def progress(text: str) -> None:
        spent = time.monotonic() - started
        left = "" if timeout == math.inf else f", {max(0.0, timeout - spent):.0f} s left"
        err(f"waiting for the approval: {text}{left}")

    async def body(node: object) -> int:
        from tidings.node.daemon import Node

        assert isinstance(node, Node)
        rounds = 0
        while True:
            devices = approved()
            if devices:
                return devices
            if rounds % 10 == 0:  # (before the first round too: it may take a while)
                progress(f"asking {len(peers)} peer(s)" if peers else
                         "reading what this home's node fetches")
            rounds += 1
            for address in peers:
                with trio.move_on_after(PAIR_ATTEMPT):
                    try:
                        connection = await node.connect(address)
                        try:
                            await node.wait_caught_up(connection)
                        finally:
                            connection.scope.cancel()
                            await connection.closed.wait()
                    except (OSError, PeerError):
                        pass  # down or refusing now: asked again next round
                devices = approved()
                if devices:
                    return devices
            await trio.sleep(PAIR_ROUND)

    async def main() -> int:
        devices = approved()  # (a sync or this home's node may have fetched it already)
        if devices:
            return devices
        if not peers and not running:
            raise CommandError(
                "no peer to hear the approval from: give --peer HOST:PORT (a node that "
                "will hold the identity log, such as the root device's), pair with an "
                "invite that names addresses, run `tidings up` on this home, or pass "
                "--no-wait", EXIT_BAD_DATA)
        with trio.fail_after(timeout):
            return int(await node.run_client(body))

    try:
        return trio.run(main)
    except trio.TooSlowError:
        raise CommandError(
            f"no approval arrived within {args.timeout:g} s. Approve the request on the device "
            "that holds the root key (`tidings device approve tpair1...`), make sure that "
            "device's node runs and one of the peers asked can reach it, then run this "
            "command again (the request is the same) or `tidings sync --peer HOST:PORT`",
            EXIT_BAD_DATA) from None
    finally:
        node.logbook.store.close()
        node.state.close()


def cmd_device_approve(args: argparse.Namespace, home: Home) -> int:
    request = parse_pairing_input(args.request)
    root = _root(home)
    state = _state(home)
    try:
        identity = own_identity(state)
        if request.identity != identity:
            raise CommandError("the request is to join another identity")
        current = identity_state(state, identity)
        if not args.yes:
            if not sys.stdin.isatty():
                raise CommandError("confirm in a terminal, or pass --yes once you have "
                                   "compared the codes")
            answer = input(f"add device {request.name!r} with code {request.code}? "
                           "Does the new device show the same code? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("not approved; nothing was written")
        try:
            event = kel.make_device_add(root, current, request.device_key, request.name,
                                        request.device_sig)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        _append(state, identity, event)
    finally:
        state.close()
    print(f"added device {request.name} ({FeedId(request.device_key, 'main').author})")
    return EXIT_OK


def cmd_device_list(args: argparse.Namespace, home: Home) -> int:
    args.identity = None
    return cmd_identity_show(args, home)


def cmd_device_revoke(args: argparse.Namespace, home: Home) -> int:
    root = _root(home)
    state = _state(home)
    try:
        identity = own_identity(state)
        current = identity_state(state, identity)
        key = _device_named(current, args.device)
        cuts = _cuts(home, key, args)
        try:
            event = kel.make_device_revoke(root, current, key, cuts)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        _append(state, identity, event)
    finally:
        state.close()
    kept = ", ".join(f"{c.log_id} up to seq {c.seq}" for c in cuts) or "nothing"
    print(f"revoked {args.device}; of its feeds the identity keeps {kept}")
    return EXIT_OK


# -- bundles (spec/07 §1: identity records) ------------------------------------------


def bundle_contents(home: Home, book: Logbook, text: str
                    ) -> tuple[list[FeedId], list[tuple[bytes, bytes]]] | None:
    """What `tidings export` writes for an author (``ti1...[:log]``): the device feeds
    of those logs held here (every log but none named), and the identity's log; None
    for a feed."""
    from tidings.core.ids import is_identity_text
    from tidings.node.identities import parse_target

    if not is_identity_text(text):
        return None
    target = parse_target(text)
    state = NodeState(home.node_state_path)
    try:
        book_ = IdentityBook(state)
        current = held_identity(book_, target.identity)
        events = [(target.identity, raw) for raw in book_.served(target.identity)]
    finally:
        state.close()
    feeds = sorted((info.feed for info in book.feeds()
                    if info.feed.author_key in current.devices
                    and (not target.logs or info.feed.log_id in target.logs)), key=str)
    return feeds, events


def identity_events_for(home: Home, feeds: list[FeedId]) -> list[tuple[bytes, bytes]]:
    """The identity log events that place ``feeds`` (device feeds of an identity this
    home holds the log of: its own, or one it follows), for a bundle."""
    if not home.node_state_path.exists():
        return []
    state = NodeState(home.node_state_path)
    try:
        book = IdentityBook(state)
        events: list[tuple[bytes, bytes]] = []
        for identity in sorted(book.logs):
            current = book.state(identity)
            if current is not None and any(f.author_key in current.devices for f in feeds):
                events += [(identity, raw) for raw in book.served(identity)]
        return events
    finally:
        state.close()


def fold_imported(home: Home, events: list[tuple[bytes, bytes]]) -> tuple[int, list[str]]:
    """Fold a bundle's identity records into this home's identity logs (spec/07 §3):
    returns the identities whose state moved, and a line per event refused (its rule)."""
    by_identity: dict[bytes, list[bytes]] = {}
    for identity, raw in events:
        by_identity.setdefault(identity, []).append(raw)
    state = _state(home)
    moved, refused = 0, []
    try:
        book = IdentityBook(state)
        for identity, raws in by_identity.items():
            added = book.add(identity, raws)
            moved += added.changed
            refused += [f"identity {format_identity(identity)}: an event was refused "
                        f"({refusal.rule})" for _, refusal in added.refused]
    finally:
        state.close()
    return moved, refused


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    p = command("identity", "your identity: a root key that certifies this and your other "
                "devices", json_flag=False)
    sub = p.add_subparsers(dest="identity_command", metavar="COMMAND", required=True)

    def sub_command(parent: argparse._SubParsersAction,  # type: ignore[type-arg]
                    name: str, text: str) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = parent.add_parser(name, help=text, description=text)
        q.add_argument("--json", action="store_true", help="print JSON")
        return q

    cost_help = (f"scrypt cost of the key file, 2^N (default {DEFAULT_LOG2_N}; 10 to 20; "
                 "lower is faster and weaker)")
    q = sub_command(sub, "init", "make a new identity with this device as its first device")
    q.add_argument("--name", help="this device's name (default: the host name)")
    q.add_argument("--next-key-file", required=True, metavar="FILE",
                   help="where to write the next key (passphrase-protected; keep it offline)")
    q.add_argument("--kdf-cost", type=int, default=DEFAULT_LOG2_N, metavar="N", help=cost_help)
    q.set_defaults(run=cmd_identity_init)
    q = sub_command(sub, "show", "show an identity's state and devices (default: yours)")
    q.add_argument("identity", nargs="?", metavar="ti1...")
    q.set_defaults(run=cmd_identity_show)
    q = sub_command(sub, "export", "write the root key to a passphrase-protected file")
    q.add_argument("file", metavar="FILE")
    q.add_argument("--kdf-cost", type=int, default=DEFAULT_LOG2_N, metavar="N", help=cost_help)
    q.set_defaults(run=cmd_identity_export)
    q = sub_command(sub, "import", "restore the root key on this machine, which becomes a "
                    "new device of the identity")
    q.add_argument("file", metavar="FILE")
    q.add_argument("--name", help="this device's name (default: the host name)")
    q.set_defaults(run=cmd_identity_import)
    q = sub_command(sub, "rotate", "replace the root key with the pre-committed next key "
                    "(planned, or after a theft)")
    q.add_argument("--next-key", required=True, metavar="FILE", help="the next key's file")
    q.add_argument("--new-next-key", required=True, metavar="FILE",
                   help="where to write the new next key")
    q.add_argument("--after", type=int, metavar="SEQ",
                   help="rotate from this log seq, undoing what was signed after it")
    q.add_argument("--revoke", action="append", metavar="DEVICE",
                   help="revoke a device in the same step (repeat for more)")
    q.add_argument("--kdf-cost", type=int, default=DEFAULT_LOG2_N, metavar="N", help=cost_help)
    q.set_defaults(run=cmd_identity_rotate)

    p = command("share", "print an invite (tinv1...) for `tidings follow`")
    p.add_argument("--log", action="append", metavar="LOG", help="suggest this log (repeat)")
    p.add_argument("--address", action="append", metavar="HOST:PORT",
                   help="a node that serves your feeds, such as a relay (repeat)")
    p.set_defaults(run=cmd_share)

    p = command("device", "the devices of your identity", json_flag=False)
    sub = p.add_subparsers(dest="device_command", metavar="COMMAND", required=True)
    q = sub_command(sub, "pair", "join an identity as a new device: prints a pairing "
                    "request, then waits until the root device's approval arrives")
    q.add_argument("target", metavar="ti1...|tinv1...")
    q.add_argument("--name", required=True, help="this device's name")
    q.add_argument("--peer", action="append", metavar="HOST:PORT",
                   help="ask this node for the approval (repeat; besides the invite's "
                   "addresses and this home's known peers)")
    q.add_argument("--timeout", type=seconds_arg, metavar="SECONDS", default=600.0,
                   help="give up waiting after this long (default 600)")
    q.add_argument("--no-wait", action="store_true",
                   help="print the request and exit; the approval arrives with a later sync")
    q.set_defaults(run=cmd_device_pair)
    q = sub_command(sub, "approve", "add the device of a pairing request (on the device with "
                    "the root key)")
    q.add_argument("request", metavar="tpair1...")
    q.add_argument("--yes", action="store_true", help="the codes match; do not ask")
    q.set_defaults(run=cmd_device_approve)
    q = sub_command(sub, "list", "list your identity's devices")
    q.set_defaults(run=cmd_device_list)
    q = sub_command(sub, "revoke", "revoke a device (a lost or stolen one)")
    q.add_argument("device", metavar="NAME")
    q.add_argument("--keep-all", action="store_true",
                   help="keep what this store holds of the device's feeds as yours")
    q.add_argument("--cut", action="append", metavar="LOG=SEQ",
                   help="keep the device's LOG up to SEQ (repeat)")
    q.set_defaults(run=cmd_device_revoke)


__all__ = ["add_commands", "own_identity"]
