"""The trio node: sockets, peers, timers and the daemon around the replicator."""
