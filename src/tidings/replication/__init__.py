"""Replication, pure apart from the store (spec/10): sessions, clocks, router, replicator."""
