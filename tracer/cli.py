"""The `nsgraph` command: one subcommand per module, each small and self-contained.

Every subcommand module (tracer/commands/, webapp/commands/) exposes
add_parser(subparsers) that registers its parser and sets `func` to a function
taking the parsed args and returning an exit code (tracer/exitcodes.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import exitcodes
from .exitcodes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

# Subcommand modules and the commands each registers, in `nsgraph --help` order.
SUBCOMMANDS = (
    ("tracer.commands.trace", ("trace",)),
    ("tracer.commands.snapshot", ("snapshot",)),
    ("tracer.commands.inspect", ("inspect",)),
    ("tracer.commands.record", ("record", "replay")),
    ("tracer.commands.doctor", ("doctor",)),
    ("webapp.commands.demo_image", ("demo-image",)),
    ("webapp.commands.serve", ("serve",)),
)

DESCRIPTION = """\
nsgraph: see which Linux namespaces exist, who created them and who joined them.

examples:
  nsgraph trace                   # stream namespace events (clone/unshare/setns)
  nsgraph trace --json --procs    # JSON Lines, including fork/exec/exit
  nsgraph snapshot                # lsns-like table with containers and hierarchy
  nsgraph inspect --compare --host --container myapp --type uts,net,pid
                                  # what the host and a container see, side by side
  nsgraph serve                   # the live dashboard on http://127.0.0.1:5000
  nsgraph doctor                  # check that this machine can trace

""" + exitcodes.HELP + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nsgraph", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version="nsgraph " + _version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, commands in SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A missing optional dependency (Flask for serve, say) must not take the
            # other commands down: those commands explain what to install instead.
            for command in commands:
                _add_unavailable(sub, command, exc)
            continue
        module.add_parser(sub)
    return parser


def _add_unavailable(sub, command: str, exc: ModuleNotFoundError) -> None:
    message = ("nsgraph %s needs the Python package %r, which is not installed for %s. "
               "Install nsgraph with scripts/setup.sh (or pip install -e . in its venv)."
               % (command, exc.name, sys.executable))
    parser = sub.add_parser(command, help="(unavailable: %s is not installed)" % exc.name)
    parser.set_defaults(func=lambda _args: _fail(message))


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return EXIT_FAILURE


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("nsgraph")
    except Exception:
        return "unknown"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # `nsgraph trace | head`: the reader left; not an error.
        try:
            sys.stdout = None  # type: ignore[assignment]
        except Exception:
            pass
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
