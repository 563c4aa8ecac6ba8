"""`nsgraph fleet init`: everything a fleet needs, written into one directory.

  DIR/fleet.json               what was asked (servers, nodes, names): re-running init
                               with more --node adds them and keeps the rest
  DIR/ca/ca.key, ca.crt        the fleet CA (made once, never replaced)
  DIR/server/                  the NATS servers' certificate (every member's name/address)
  DIR/nats-server-<name>.conf  one configuration per server (a single server: nats-1)
  DIR/agent-<node>/            one bundle per node: copy it to that node (0700, key 0600)
  DIR/dashboard/, DIR/admin/   the dashboard's (read-only) and the administrator's bundles
  DIR/monitor/                 the dashboard's second, system-account identity: it counts the
                               clients the servers refuse (authentication failures)

Idempotent: existing certificates are kept (a node's certificate is only made when its
bundle is missing), configurations are rewritten from fleet.json every time.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from . import pki
from .serverconf import Member, render
from .subjects import check_node


@dataclass
class FleetSpec:
    directory: str
    nodes: List[str] = field(default_factory=list)
    server_names: List[str] = field(default_factory=list)
    server_ips: List[str] = field(default_factory=list)
    members: List[Member] = field(default_factory=list)
    store_dir: str = "/var/lib/nats/nsgraph"
    urls: List[str] = field(default_factory=list)        # what clients dial; default: from members
    max_store: str = "20G"
    monitor_port: int = 0

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("directory")
        return out


def load_spec(directory: str) -> Optional[FleetSpec]:
    path = os.path.join(directory, "fleet.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    data["members"] = [Member(**m) for m in data.get("members", [])]
    return FleetSpec(directory=directory, **data)


def merge(old: Optional[FleetSpec], new: FleetSpec) -> FleetSpec:
    """new's settings where given, old's otherwise; the union of nodes and names."""
    if old is None:
        return new
    out = FleetSpec(directory=new.directory)
    out.nodes = list(dict.fromkeys(old.nodes + new.nodes))
    out.server_names = list(dict.fromkeys(old.server_names + new.server_names))
    out.server_ips = list(dict.fromkeys(old.server_ips + new.server_ips))
    out.members = new.members or old.members
    out.urls = new.urls or old.urls
    out.store_dir = new.store_dir if new.store_dir != FleetSpec.store_dir else old.store_dir
    out.max_store = new.max_store if new.max_store != FleetSpec.max_store else old.max_store
    out.monitor_port = new.monitor_port or old.monitor_port
    return out


def client_urls(spec: FleetSpec) -> List[str]:
    if spec.urls:
        return list(spec.urls)
    host_default = (spec.server_names or [socket.getfqdn()])[0]
    out = []
    for m in spec.members:
        host = m.host if m.host not in ("0.0.0.0", "::", "") else host_default
        out.append("tls://%s:%d" % (host, m.client_port))
    return out


def init_fleet(spec: FleetSpec, progress=lambda text: None) -> dict:
    """Write (or complete) the fleet directory; {"written": [...], "kept": [...]}."""
    for node in spec.nodes:
        check_node(node)
    if not spec.members:
        spec.members = [Member("nats-1")]
    if not spec.server_names:
        spec.server_names = list(dict.fromkeys(["localhost", socket.gethostname(), socket.getfqdn()]))
    if not spec.server_ips:
        spec.server_ips = ["127.0.0.1", "::1"]
    d = spec.directory
    os.makedirs(d, mode=0o755, exist_ok=True)
    written, kept = [], []
    ca_dir = os.path.join(d, "ca")
    if os.path.exists(os.path.join(ca_dir, "ca.crt")):
        kept.append(ca_dir)
    else:
        progress("making the fleet CA")
        pki.make_ca(ca_dir)
        written.append(ca_dir)
    names = spec.server_names + [m.host for m in spec.members if not _is_ip(m.host) and m.host]
    ips = spec.server_ips + [m.host for m in spec.members if _is_ip(m.host) and m.host not in ("0.0.0.0", "::")]
    server_dir = os.path.join(d, "server")
    sans_file = os.path.join(server_dir, "sans.json")
    sans = pki.server_sans(names, ips)
    if _read_json(sans_file) != sans or not os.path.exists(os.path.join(server_dir, "server.crt")):
        progress("issuing the NATS server certificate for %s" % ", ".join(sans))
        pki.issue(ca_dir, server_dir, "nsgraph NATS server", sans=sans, server=True)
        _write_json(sans_file, sans)
        written.append(server_dir)
    else:
        kept.append(server_dir)
    urls = client_urls(spec)
    identities = [("admin", None, "admin"), ("dashboard", None, "dashboard"), ("monitor", None, "monitor")]
    identities += [("agent", n, "agent-%s" % n) for n in spec.nodes]
    for role, node, dirname in identities:
        bundle = os.path.join(d, dirname)
        if os.path.exists(os.path.join(bundle, "client.crt")):
            kept.append(bundle)
        else:
            progress("issuing credentials for %s" % (("node " + node) if node else role))
            pki.issue(ca_dir, bundle, pki.user_for(role, node), sans=pki.client_sans(role, node), server=False)
            written.append(bundle)
        _write_json(os.path.join(bundle, "identity.json"),
                    {"role": role, "node": node, "user": pki.user_for(role, node), "servers": urls})
    for member in spec.members:
        conf = os.path.join(d, "nats-server-%s.conf" % member.name)
        store = spec.store_dir if len(spec.members) == 1 else os.path.join(spec.store_dir, member.name)
        text = render(member, spec.members, tls_dir=server_dir, store_dir=store, nodes=spec.nodes,
                      max_store=spec.max_store, monitor_port=spec.monitor_port)
        with open(conf, "w", encoding="utf-8") as f:
            f.write(text)
        written.append(conf)
    _write_json(os.path.join(d, "fleet.json"), spec.to_json())
    return {"written": written, "kept": kept, "urls": urls,
            "configs": [os.path.join(d, "nats-server-%s.conf" % m.name) for m in spec.members]}


def _is_ip(host: str) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path: str, data) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
