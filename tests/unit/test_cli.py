"""The `nsgraph` command line: argument validation and exit codes (tracer/exitcodes.py),
before anything needs root.  Bad usage is exit 2 with one line that says what is wrong,
checked before privileges, so an ordinary user learns about a typo first.

Most cases call tracer.cli.main in-process (fast); a few run the real entry point as a
subprocess.  The commands at work (root, Docker) are tested in tests/kernel and tests/docker.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, require
from tracer import cli, exitcodes
from tracer.exitcodes import EXIT_FAILURE, EXIT_NO_PRIVILEGES, EXIT_OK, EXIT_USAGE

NSGRAPH = [sys.executable, "-m", "tracer.cli"]


def run_main(capsys, *argv):
    """(exit code, stdout, stderr) of `nsgraph ARGV` run in this process."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:            # argparse's own usage errors and --help
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_trace_bad_usage_exits_2():
    out = subprocess.run(NSGRAPH + ["trace", "--type", "bogus"], cwd=REPO, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == EXIT_USAGE and "unknown namespace type bogus" in out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def test_trace_help_has_examples():
    out = subprocess.run(NSGRAPH + ["trace", "--help"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == EXIT_OK and "examples:" in out.stdout and "--json" in out.stdout


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, err = run_main(capsys)
    assert code == EXIT_USAGE and out == ""
    assert "COMMAND" in err and "examples:" in err


@pytest.mark.parametrize("command", ["trace", "snapshot", "record", "replay", "doctor", "serve", "demo-image"])
def test_every_command_has_help_with_examples(capsys, command):
    code, out, _err = run_main(capsys, command, "--help")
    assert code == EXIT_OK
    assert "examples:" in out, "nsgraph %s --help has no examples" % command


def test_exit_codes_are_the_documented_numbers(capsys):
    """Scripts test for these numbers (77 is the convention for "cannot run here"): pinned."""
    assert (EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NO_PRIVILEGES) == (0, 1, 2, 77)
    code, out, _err = run_main(capsys, "--help")
    assert code == EXIT_OK and exitcodes.HELP in out
    assert "0 success" in out and "77 missing privileges" in out


def test_version(capsys):
    code, out, _err = run_main(capsys, "--version")
    assert code == EXIT_OK and out.startswith("nsgraph ")


@pytest.mark.parametrize("argv,message", [
    (["trace", "--type", "net,bogus"], "unknown namespace type bogus"),
    (["trace", "--buffer-pages", "3"], "--buffer-pages must be a power of two"),
    (["trace", "--buffer-pages", "0"], "--buffer-pages must be a power of two"),
    (["trace", "--buffer-pages", "-8"], "--buffer-pages must be a power of two"),
    (["trace", "--duration", "0"], "--duration must be positive"),
    (["trace", "--duration", "-1"], "--duration must be positive"),
    (["record", "out.jsonl", "--duration", "0"], "--duration must be positive"),
    (["snapshot", "--type", "net", "--type", "nett"], "unknown --type nett"),
])
def test_bad_values_are_usage_errors_before_privileges(capsys, argv, message):
    code, out, err = run_main(capsys, *argv)
    assert code == EXIT_USAGE, err
    assert out == "" and message in err and err.count("\n") == 1
    assert err.startswith("nsgraph %s: " % argv[0])


@pytest.mark.parametrize("argv,message", [
    (["trace", "--pid", "self"], "invalid int value"),
    (["trace", "--duration", "soon"], "invalid float value"),
    (["trace", "--bogus"], "unrecognized arguments"),
    (["snapshot", "--json", "--dot"], "not allowed with argument"),
    (["replay"], "the following arguments are required: FILE"),
    (["replay", "x.jsonl", "--json", "--dot"], "not allowed with argument"),
    (["replay", "x.jsonl", "--until", "yesterday"], "invalid float value"),
    (["no-such-command"], "invalid choice"),
])
def test_malformed_arguments_are_argparse_usage_errors(capsys, argv, message):
    code, out, err = run_main(capsys, *argv)
    assert code == EXIT_USAGE and out == "" and message in err


def test_replay_of_a_missing_file_is_a_usage_error(capsys, tmp_path):
    code, _out, err = run_main(capsys, "replay", str(tmp_path / "missing.jsonl"))
    assert code == EXIT_USAGE and "does not exist" in err


@pytest.mark.parametrize("content", ["", "not json\n", '{"kind": "header"}\n', "\x00\x01\x02"])
def test_replay_of_a_malformed_file_is_one_line_and_exit_1(capsys, tmp_path, content):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    code, out, err = run_main(capsys, "replay", str(path))
    assert code == EXIT_FAILURE, (out, err)
    assert err.startswith("nsgraph replay: ") and err.count("\n") == 1 and "Traceback" not in err


def test_a_command_whose_module_cannot_be_imported_says_what_to_install(capsys, monkeypatch):
    """A missing optional package (Flask for serve, say) must not take the other commands down."""
    monkeypatch.setattr(cli, "SUBCOMMANDS", cli.SUBCOMMANDS + (("tracer.commands.not_installed", ("ghost",)),))
    code, _out, err = run_main(capsys, "ghost")
    assert code == EXIT_FAILURE
    assert "nsgraph ghost needs the Python package 'tracer.commands.not_installed'" in err
    assert "scripts/setup.sh" in err
    code, _out, _err = run_main(capsys, "trace", "--type", "bogus")
    assert code == EXIT_USAGE


def test_the_console_script_is_the_same_command():
    """pip's `nsgraph` script calls tracer.cli:main (pyproject.toml [project.scripts])."""
    script = os.path.join(os.path.dirname(sys.executable), "nsgraph")
    require(os.path.exists(script), "no nsgraph script next to %s (pip install -e . installs it)" % sys.executable)
    out = subprocess.run([script, "snapshot", "--type", "bogus"], capture_output=True, text=True, timeout=30)
    assert out.returncode == EXIT_USAGE and "unknown --type bogus" in out.stderr
