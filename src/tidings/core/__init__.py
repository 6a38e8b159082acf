"""The pure core: formats, links and validation. No sockets, no disk, no clocks."""
