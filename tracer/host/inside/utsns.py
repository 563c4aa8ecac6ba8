"""uts: the hostname and the NIS domain name.

Only a process inside can see them: the helper joins the namespace and asks
uname(2) and /proc/sys/kernel/domainname, which both answer for the reading
task's uts namespace.
"""

from __future__ import annotations

import os

from .procread import text_at

JOIN = True


def collect(ctx) -> dict:
    """In the helper, inside the namespace."""
    domain = text_at(ctx.proc, "sys/kernel/domainname", 1024).strip()
    return {"hostname": os.uname().nodename, "domainname": domain}


def fields(view: dict) -> list:
    return [("hostname", view.get("hostname") or ""), ("domainname", view.get("domainname") or "")]
