"""Key files and recovery phrases (spec/12 appendix A)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.identity_helpers import key, pub
from tidings.keyfile import (
    KIND_NEXT,
    KIND_ROOT,
    MIN_LOG2_N,
    KeyFileError,
    parse_key_file,
    read_sealed_key,
    recovery_phrase,
    seal_key,
    secret_from_phrase,
    write_sealed_key,
)

IDENTITY = bytes(range(32))


def sealed(kind: int = KIND_ROOT, passphrase: str = "correct horse") -> str:
    return str(seal_key(key("root0"), kind=kind, identity=IDENTITY, passphrase=passphrase,
                        log2_n=MIN_LOG2_N))


def reason(action: object) -> str:
    with pytest.raises(KeyFileError) as caught:
        action()  # type: ignore[operator]
    return caught.value.reason


def test_a_sealed_key_opens_with_its_passphrase_only() -> None:
    text = sealed()
    key_file = parse_key_file(text)
    assert key_file.kind == KIND_ROOT and key_file.public_key == pub("root0")
    assert key_file.open("correct horse").private_bytes_raw() == key("root0").private_bytes_raw()
    assert reason(lambda: key_file.open("correct horse ")) == "wrong-passphrase"
    assert "correct" not in text


def test_the_passphrase_is_read_in_nfc() -> None:
    text = sealed(passphrase="caf\u00e9")
    assert parse_key_file(text).open("cafe\u0301").private_bytes_raw() == \
        key("root0").private_bytes_raw()


def test_root_and_next_keys_are_sealed_apart_with_fresh_salts() -> None:
    root, following = sealed(KIND_ROOT), sealed(KIND_NEXT)
    assert parse_key_file(root).salt != parse_key_file(following).salt
    assert parse_key_file(following).kind == KIND_NEXT


def test_every_header_field_is_bound_to_the_ciphertext() -> None:
    original = parse_key_file(sealed())
    for change in ({"kind": KIND_NEXT}, {"identity": bytes(32)},
                   {"public_key": pub("other")}, {"log2_n": MIN_LOG2_N + 1}):
        fields = {f: getattr(original, f) for f in original.__slots__}
        tampered = type(original)(**{**fields, **change})
        assert reason(lambda t=tampered: parse_key_file(str(t)).open("correct horse")) == \
            "wrong-passphrase"


def test_key_file_text_refusals() -> None:
    text = sealed()
    assert reason(lambda: parse_key_file("tinv1" + text[5:])) == "wrong-prefix"
    assert reason(lambda: parse_key_file(text[:30] + ("a" if text[30] != "a" else "b")
                                         + text[31:])) == "bad-checksum"
    low = seal_key(key("root0"), kind=KIND_ROOT, identity=IDENTITY, passphrase="x",
                   log2_n=MIN_LOG2_N)
    too_cheap = type(low)(low.kind, low.identity, low.public_key, 4, low.salt, low.nonce,
                          low.ciphertext)
    assert reason(lambda: parse_key_file(str(too_cheap))) == "kdf-cost"


def test_key_files_are_new_private_files(tmp_path: Path) -> None:
    path = tmp_path / "root.tkey"
    key_file = parse_key_file(sealed())
    write_sealed_key(path, key_file)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_sealed_key(path) == key_file
    with pytest.raises(FileExistsError):
        write_sealed_key(path, key_file)
    os.chmod(path, 0o644)
    assert reason(lambda: read_sealed_key(path)) == "malformed"


def test_a_recovery_phrase_gives_back_the_key() -> None:
    phrase = recovery_phrase(key("next1"))
    words = phrase.split()
    assert len(words) == 24
    back = secret_from_phrase("  " + "\n".join(words).upper() + " ")
    assert back.private_bytes_raw() == key("next1").private_bytes_raw()
    swapped = " ".join([words[1], words[0], *words[2:]])
    if swapped != phrase:
        assert reason(lambda: secret_from_phrase(swapped)) == "bad-phrase"
    assert reason(lambda: secret_from_phrase(" ".join(words[:-1]))) == "bad-phrase"
    assert reason(lambda: secret_from_phrase(" ".join([*words[:-1], "tidings"]))) == \
        "bad-phrase"
