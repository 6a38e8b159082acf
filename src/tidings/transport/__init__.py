"""The secure channel, pure (spec/08): the Noise handshake, frames and message boundaries."""
