"""Defaults of a node's replication policy that its options can change.

Kept apart from the replicator so that reading a home's options loads no
protocol code (``tidings publish`` starts faster).
"""

#: Feeds a relay takes on from its peers unless configured otherwise.
DEFAULT_RELAY_MAX_FEEDS = 10_000
#: Bytes (entries and payloads) a relay stores for the feeds it takes on, per run.
DEFAULT_RELAY_MAX_BYTES = 1 << 30
