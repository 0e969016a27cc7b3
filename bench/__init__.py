"""The export benchmark: ``python -m bench`` (see ``docs/performance.md``).

Generates the demo shop's data in PostgreSQL and SQLite, runs the project's export job end
to end and each baseline in a process of its own, several times, and prints a table of wall
time, rows per second, speed relative to PostgreSQL's ``COPY`` and peak memory.
"""
