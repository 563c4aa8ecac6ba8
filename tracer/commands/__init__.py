"""The tracer's `nsgraph` subcommands, one module each (parse, call, print): trace, snapshot,
record/replay, doctor.  tracer/cli.py registers them."""
