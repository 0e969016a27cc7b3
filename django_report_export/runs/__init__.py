"""The RQ jobs that export rows: a single run, or a sharded one with its helper jobs.

``base`` holds what both share (the chunk loop, checkpoints, heartbeat), ``single`` the
export's own job, ``sharded`` the coordinator and the shard runs, ``plan`` the split into key
ranges and ``leases`` the shards' leases in Redis. This package imports nothing itself, so
that ``leases`` can be imported without the runs.
"""
