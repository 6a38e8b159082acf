"""Network keys (spec/08 §1): only nodes with the same 32-byte key complete a
handshake, so a key separates one network from another. Its own module, free of
the Noise machinery: the config (node/options.py) reads it in every command's
start-up."""

from __future__ import annotations

import hashlib

NETWORK_KEY_SIZE = 32
#: The network everyone is on unless they choose a private one.
DEFAULT_NETWORK_KEY = hashlib.blake2b(b"tidings public network 1", digest_size=32).digest()
