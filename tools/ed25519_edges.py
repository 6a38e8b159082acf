"""Ed25519 edge cases for spec/vectors/ed25519.json, made with the curve's own arithmetic.

Implementations of Ed25519 disagree on a few signatures no honest signer makes
(Chalkias, Garillot and Nikolaenko, "Taming the many EdDSAs", 2020): an S that is
not reduced mod L, a small-order R, a key with a small-order component, and
signatures that hold under the cofactored equation only. spec/02 §2 decides
each; the cases below pin the decisions. The point arithmetic follows RFC 8032
§5.1 and §6 (extended coordinates) and is used only to make these vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]
IDENTITY: Point = (0, 1, 1, 0)


def add(a: Point, b: Point) -> Point:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = 2 * t1 * t2 * D % P
    dd = 2 * z1 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def multiply(scalar: int, point: Point) -> Point:
    out = IDENTITY
    while scalar > 0:
        if scalar & 1:
            out = add(out, point)
        point = add(point, point)
        scalar >>= 1
    return out


def encode(point: Point) -> bytes:
    x, y, z, _ = point
    inverse = pow(z, -1, P)
    x, y = x * inverse % P, y * inverse % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def decode(data: bytes) -> Point:
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x2 = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        raise ValueError("not a point")
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


BASE = decode((4 * pow(5, -1, P) % P).to_bytes(32, "little"))
#: The point of order 2, (0, -1).
ORDER_2: Point = (0, P - 1, 1, 0)


def secret_scalar(seed: bytes) -> tuple[int, bytes]:
    """RFC 8032 §5.1.5: the clamped scalar and the prefix of a seed."""
    digest = hashlib.sha512(seed).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    return scalar, digest[32:]


def challenge(r: bytes, key: bytes, message: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r + key + message).digest(), "little") % L


def sign_with(scalar: int, nonce: int, key: bytes, message: bytes) -> bytes:
    """``R || S`` for ``key`` with secret ``scalar`` and nonce ``nonce`` (any key encoding)."""
    r = encode(multiply(nonce, BASE))
    s = (nonce + challenge(r, key, message) * scalar) % L
    return r + s.to_bytes(32, "little")


Case = tuple[str, bytes, bytes, bool, str]


def edge_cases(seed: bytes, body_of: Callable[[bytes, int], bytes]) -> list[Case]:
    """``(name, body, signature, valid, description)`` for bodies ``body_of(key, stamp)``.

    ``body_of`` builds the signed body of an entry whose author is ``key``; the
    stamp (a timestamp) is varied until the challenge has the parity a case needs.
    """
    scalar, prefix = secret_scalar(seed)
    honest = encode(multiply(scalar, BASE))
    mixed = encode(add(multiply(scalar, BASE), ORDER_2))  # the key plus a point of order 2
    nonce = int.from_bytes(hashlib.sha512(prefix + b"edge").digest(), "little") % L
    identity_r = encode(IDENTITY)

    def stamp_where(key: bytes, r: bytes, even: bool) -> bytes:
        for stamp in range(10_000):
            body = body_of(key, stamp)
            if (challenge(r, key, body) % 2 == 0) == even:
                return body
        raise AssertionError("no stamp found")

    cases: list[Case] = []
    body = body_of(honest, 0)
    good = sign_with(scalar, nonce, honest, body)
    cases.append(("honest", body, good, True, "an honest signature: the control"))
    s = int.from_bytes(good[32:], "little")
    cases.append(("s-not-reduced", body, good[:32] + (s + L).to_bytes(32, "little"), False,
                  "the control's signature with S + L in place of S: the same point, but "
                  "S >= L is refused"))
    r_point = good[:32]
    body = stamp_where(mixed, r_point, even=True)
    cases.append(("mixed-order-key", body, sign_with(scalar, nonce, mixed, body), True,
                  "a key with a component of order 2 (A + T), whose signature holds under "
                  "both equations (the challenge is even): such keys are accepted"))
    body = stamp_where(mixed, r_point, even=False)
    cases.append(("cofactored-only", body, sign_with(scalar, nonce, mixed, body), False,
                  "the same mixed-order key with an odd challenge: [8][S]B = [8]R + [8][k]A "
                  "holds, [S]B = R + [k]A does not; the cofactorless equation decides"))
    body = stamp_where(mixed, identity_r, even=True)
    k = challenge(identity_r, mixed, body)
    small_r = identity_r + (k * scalar % L).to_bytes(32, "little")
    cases.append(("small-order-r", body, small_r, False,
                  "R is the identity (01 00..00) and S = k*a with the mixed-order key: "
                  "[S]B = R + [k]A holds (OpenSSL accepts it), but a small-order R is "
                  "refused (libsodium does too)"))
    non_canonical_r = (int.from_bytes(identity_r, "little") + P).to_bytes(32, "little")
    cases.append(("non-canonical-r", body, non_canonical_r + small_r[32:], False,
                  "R written as y = p + 1 (a non-canonical encoding of the identity)"))
    return cases
