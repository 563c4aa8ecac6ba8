"""The fleet's certificates: one CA, a server certificate, one client certificate per
identity (each node's agent, the dashboard, the administrator), made with the
`openssl` command (no Python crypto dependency; ECDSA P-256).

A client certificate carries its NATS user name as an e-mail address in its
subjectAltName ("agent.web-1@nsgraph.fleet"); nats-server's `verify_and_map` maps the
certificate to that user and its permissions.  No shell is involved: openssl runs with
an argument list.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import List

CA_DAYS = 3650
LEAF_DAYS = 825
USER_DOMAIN = "nsgraph.fleet"


class PkiError(Exception):
    pass


def user_for(role: str, node: str = None) -> str:
    return "agent.%s@%s" % (node, USER_DOMAIN) if role == "agent" else "%s@%s" % (role, USER_DOMAIN)


def _openssl(*args, input_text: str = None) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        raise PkiError("the openssl command is missing: apt-get install openssl")
    proc = subprocess.run([tool, *args], input=input_text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PkiError("openssl %s failed: %s" % (args[0], (proc.stderr or proc.stdout).strip()[-400:]))


def _private(path: str) -> None:
    os.chmod(path, 0o600)


def make_ca(directory: str, name: str = "nsgraph fleet CA") -> None:
    """ca.key and ca.crt in directory, unless they exist (a CA is never replaced silently)."""
    key, crt = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.crt")
    if os.path.exists(key) and os.path.exists(crt):
        return
    os.makedirs(directory, mode=0o700, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", crt, "-days", str(CA_DAYS), "-subj", "/O=nsgraph/CN=%s" % name,
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _private(key)


def issue(ca_dir: str, out_dir: str, common_name: str, *, sans: List[str], server: bool) -> None:
    """client.crt/client.key (or server.crt/server.key) in out_dir, signed by the CA."""
    os.makedirs(out_dir, mode=0o700, exist_ok=True)
    stem = "server" if server else "client"
    key, crt = os.path.join(out_dir, stem + ".key"), os.path.join(out_dir, stem + ".crt")
    with tempfile.TemporaryDirectory() as tmp:
        csr, ext = os.path.join(tmp, "req.csr"), os.path.join(tmp, "ext.cnf")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", "/O=nsgraph/CN=%s" % common_name)
        _private(key)
        usage = "serverAuth,clientAuth" if server else "clientAuth"
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=%s\nsubjectAltName=%s\n" % (usage, ",".join(sans)))
        _openssl("x509", "-req", "-in", csr, "-CA", os.path.join(ca_dir, "ca.crt"),
                 "-CAkey", os.path.join(ca_dir, "ca.key"), "-CAcreateserial", "-out", crt,
                 "-days", str(LEAF_DAYS), "-extfile", ext)
    shutil.copyfile(os.path.join(ca_dir, "ca.crt"), os.path.join(out_dir, "ca.crt"))


def server_sans(names: List[str], ips: List[str]) -> List[str]:
    out = ["DNS:%s" % n for n in dict.fromkeys(names)] + ["IP:%s" % i for i in dict.fromkeys(ips)]
    return out


def client_sans(role: str, node: str = None) -> List[str]:
    return ["email:%s" % user_for(role, node)]
