"""Diffs between two Graph JSON documents (the graph at two times, `/api/diff`)."""

from __future__ import annotations


def diff_graphs(a: dict, b: dict, t1=None, t2=None) -> dict:
    """Add/update/remove changes that turn Graph JSON a into b."""
    changes = []
    for entity, key, field in (("namespace", "id", "namespaces"), ("process", "pid", "processes"),
                               ("container", "id", "containers"), ("join", "id", "joins")):
        old = {item[key]: item for item in a.get(field, [])}
        new = {item[key]: item for item in b.get(field, [])}
        for ident, item in new.items():
            if ident not in old:
                changes.append({"op": "add", "entity": entity, "id": ident, "data": item})
            elif old[ident] != item:
                changes.append({"op": "update", "entity": entity, "id": ident, "data": item})
        for ident in old:
            if ident not in new:
                changes.append({"op": "remove", "entity": entity, "id": ident, "data": None})
    return {"from": t1, "to": t2, "from_version": a.get("version"), "version": b.get("version"),
            "changes": changes}
