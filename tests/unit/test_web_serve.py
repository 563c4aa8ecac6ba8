"""`nsgraph serve`'s arguments, token file and URL (no server, no root).

The server itself, started as a subprocess as root, is in tests/kernel/test_web_live.py.
"""

from __future__ import annotations

import argparse
import os

import pytest

from webapp.commands import serve as cmd_serve


def _parse(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cmd_serve.add_parser(sub)
    return parser.parse_args(["serve"] + argv)


def test_serve_defaults_are_loopback_5000():
    args = _parse([])
    assert (args.host, args.port, args.allow_remote, args.read_only) == ("127.0.0.1", 5000, False, False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org"])
def test_serve_refuses_remote_addresses_without_the_flag(host, capsys):
    assert cmd_serve.run(_parse(["--host", host])) == 2
    err = capsys.readouterr().err
    assert "--allow-remote" in err and host in err


def test_token_file_is_created_0600_and_then_reused(tmp_path):
    path = tmp_path / "token"
    token = cmd_serve.load_token(str(path))
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert path.read_text().strip() == token and len(token) >= 32
    assert cmd_serve.load_token(str(path)) == token
    assert cmd_serve.load_token(None) != cmd_serve.load_token(None)


@pytest.mark.parametrize("content", ["", "short", "has space in the middle of it"])
def test_bad_token_files_are_usage_errors(tmp_path, content):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(cmd_serve.UsageError, match="token file"):
        cmd_serve.load_token(str(path))


def test_url_for_brackets_ipv6():
    assert cmd_serve.url_for("::1", 5000, "t") == "http://[::1]:5000/?token=t"
    assert cmd_serve.url_for("127.0.0.1", 80, "t") == "http://127.0.0.1:80/?token=t"
