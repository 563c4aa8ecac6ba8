"""time: the monotonic and boottime offsets, and the uptime a process inside reads.

The helper joins the namespace, which sets both its time namespace and its
time_for_children one, then reads /proc/self/timens_offsets (the kernel shows
the time_for_children namespace there, the joined one now) and /proc/uptime
(boottime as the reader's namespace sees it).
"""

from __future__ import annotations

from .procread import text_at

JOIN = True


def parse_offsets(text: str) -> dict:
    """timens_offsets ("monotonic 3600 0") -> {"monotonic": seconds (float), "boottime": ...}."""
    out = {}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) != 3:
            continue
        try:
            out[cols[0]] = int(cols[1]) + int(cols[2]) / 1e9
        except ValueError:
            continue
    return out


def parse_uptime(text: str):
    try:
        return float(text.split()[0])
    except (IndexError, ValueError):
        return None


def collect(ctx) -> dict:
    """In the helper, inside the namespace."""
    offsets = parse_offsets(text_at(ctx.proc, "self/timens_offsets", 4096))
    return {"monotonic_offset_s": offsets.get("monotonic", 0.0),
            "boottime_offset_s": offsets.get("boottime", 0.0),
            "uptime_s": parse_uptime(text_at(ctx.proc, "uptime", 4096))}


def _seconds(value) -> str:
    if value is None:
        return ""
    return ("%+.9f" % value).rstrip("0").rstrip(".") + " s" if value else "0 s"


def fields(view: dict) -> list:
    uptime = view.get("uptime_s")
    return [("monotonic offset", _seconds(view.get("monotonic_offset_s"))),
            ("boottime offset", _seconds(view.get("boottime_offset_s"))),
            ("uptime seen inside", "%.0f s" % uptime if uptime is not None else "")]
