"""The append-only, hash-chained audit history of every transfer (DESIGN.md §3)."""
