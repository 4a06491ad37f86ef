"""The configuration-at-scale benchmark (benchmarks/scale.py): admin writes, RSS, credential cache, proxy p99
under a write storm and propagation, at N consumers with keys, on SQLite and PostgreSQL."""
