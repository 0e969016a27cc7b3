"""What the tests share besides fixtures (those are in ``tests/conftest.py``, which uses these).

- ``users``: users with a service's read permission, or without.
- ``burst``: run queued export jobs in this process, as an RQ burst worker.
- ``polling``: act from a second thread once a running export has reached a row count.
- ``workers``: real ``rqworker`` processes on this test run's database, Redis and folders.
- ``servers``: gunicorn serving the demo over HTTP, and workers with the same settings.
- ``s3server``: moto's S3 server, with a bucket for the ``exports`` storage.
- ``pgreplica``: a private PostgreSQL primary with a streaming hot standby.
- ``net``: the port range of each of those servers, and waiting for one to answer.
- ``probe``, ``dbprobe``: writers and a database hook that log which process did what.
- ``formula_guard``: the CSV formula guard, written the slow and obvious way.
- ``keyed``: models keyed by slugs, text and custom integers, and their services.
"""
