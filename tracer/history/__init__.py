"""History: the SQLite store, JSON Lines recordings and replay, Graph JSON diffs."""
