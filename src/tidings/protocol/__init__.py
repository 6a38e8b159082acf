"""The wire protocol, pure: Noise handshake, framing, messages and the replication session (no I/O)."""  # noqa: E501
