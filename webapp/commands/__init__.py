"""The web side's `nsgraph` subcommands: `serve` (the dashboard) and `demo-image`."""
