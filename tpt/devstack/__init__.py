"""The embedded development stack: Temporal dev server and Postgres from wheels, started as child processes."""
