"""The core implements webapp/contract.py: the real classes, method names and signatures.

The web layer calls the core only through these Protocols, so a rename or a
changed signature on the core side must fail here, not in a page.  Shapes of
what the methods return are checked on real output in tests/unit/test_web_api.py
(check_shape against tracer/graph/schema.py).
"""

from __future__ import annotations

import inspect

import pytest

from tracer.graph.model import NamespaceGraph
from tracer.history.store import HistoryStore
from tracer.kernel.collector import Collector
from tracer.service import NsgraphService
from webapp import contract


def protocol_members(protocol) -> dict:
    """name -> the Protocol's own attribute (function, property or annotation) for every member."""
    members = {}
    for name, value in vars(protocol).items():
        if name.startswith("_") or name in ("__annotations__",):
            continue
        if callable(value) or isinstance(value, property):
            members[name] = value
    for name in getattr(protocol, "__annotations__", {}):
        members.setdefault(name, None)
    return members


def parameters(function) -> list:
    """(name, kind, has a default) of every parameter after self."""
    params = list(inspect.signature(function).parameters.values())[1:]
    return [(p.name, p.kind, p.default is not inspect.Parameter.empty) for p in params]


IMPLEMENTATIONS = [
    (contract.Service, NsgraphService, NsgraphService),
    (contract.GraphReader, NamespaceGraph, lambda: NamespaceGraph(dev=4)),
    (contract.HistoryReader, HistoryStore, lambda: HistoryStore(":memory:")),
    (contract.EventSource, Collector, Collector),
]


@pytest.mark.parametrize("protocol,cls,make", IMPLEMENTATIONS, ids=[p.__name__ for p, _, _ in IMPLEMENTATIONS])
def test_the_core_classes_implement_the_protocols(protocol, cls, make):
    instance = make()
    assert isinstance(instance, protocol)
    for name, member in protocol_members(protocol).items():
        assert hasattr(instance, name), "%s lacks %s.%s" % (cls.__name__, protocol.__name__, name)
        if callable(member) and not isinstance(member, property):
            implemented = getattr(cls, name)
            assert callable(implemented), "%s.%s is not a method" % (cls.__name__, name)
            wanted = [(n, k) for n, k, _ in parameters(member)]
            got = [(n, k) for n, k, default in parameters(implemented) if not default or n in dict(wanted)]
            assert got == wanted, "%s.%s%s does not match %s.%s%s" % (
                cls.__name__, name, inspect.signature(implemented), protocol.__name__, name,
                inspect.signature(member))


def test_the_service_status_has_the_fields_the_page_shows():
    status = NsgraphService().status
    assert isinstance(status, contract.ServiceStatusView)
    assert (status.state, status.error, list(status.warnings)) == ("starting", None, [])
