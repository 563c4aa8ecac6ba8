"""Graphviz DOT of the live namespaces: ownership (dashed) and pid/user parents (solid)."""

from __future__ import annotations

from .views import container_name, host_ids, namespace_container


def to_dot(g) -> str:
    """Called under g's lock (NamespaceGraph.to_dot)."""
    hosts = host_ids(g)
    alive = list(g.namespaces.alive.values())
    lines = ["digraph nsgraph {", '  rankdir=LR; node [shape=box, fontname="monospace"];']
    for ns in sorted(alive, key=lambda n: (n.type, n.inode)):
        cname = container_name(g, namespace_container(g, ns, hosts))
        label = "%s %d\\n%d process%s" % (ns.type, ns.inode, len(ns.members),
                                          "" if len(ns.members) == 1 else "es")
        if cname:
            label += "\\ncontainer %s" % _escape(cname)
        if ns.pinned:
            label += "\\npinned %s" % _escape(", ".join(ns.pinned))
        style = ', style="bold"' if ns.id in hosts else ""
        lines.append('  "%s" [label="%s"%s];' % (ns.id, label, style))
    for ns in alive:
        if ns.owner is not None and ns.owner.ended is None:
            lines.append('  "%s" -> "%s" [style=dashed, label="owner"];' % (ns.id, ns.owner.id))
        if ns.parent is not None and ns.parent is not ns.owner and ns.parent.ended is None:
            lines.append('  "%s" -> "%s" [label="parent"];' % (ns.id, ns.parent.id))
    lines.append("}")
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
