"""Exit codes of every `nsgraph` subcommand (the one definition; `nsgraph --help` lists them:
HELP below).  Scripts depend on these numbers: tests/unit/test_cli.py pins them.

  0   success (trace: ended by Ctrl-C / SIGTERM)
  1   a runtime failure, explained on stderr
  2   bad command line
  3   inspect: a namespace, process or container named does not exist (any more)
  77  missing privileges (root, or CAP_BPF + CAP_PERFMON)
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_NO_PRIVILEGES = 77

HELP = ("exit status: %d success, %d failure (explained on stderr), %d bad command line,\n"
        "  %d missing privileges (root, or CAP_BPF + CAP_PERFMON)"
        % (EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NO_PRIVILEGES))
