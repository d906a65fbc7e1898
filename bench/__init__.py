"""The benchmark suite: a generator of synthetic stores and the runner that measures loupe against raw SQLite."""
