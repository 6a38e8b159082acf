"""The wire messages, pure (spec/09): strict msgpack encoding and decoding with every bound."""
