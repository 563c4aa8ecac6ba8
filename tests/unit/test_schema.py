"""tracer.graph.schema.check_shape: the checker the contract tests rely on must itself catch drift."""

from tracer.graph import schema


def _container(**over):
    data = {"id": "a" * 64, "name": "web", "image": None, "runtime": "docker", "pid": 7,
            "labels": {}, "state": "running", "pod_uid": None, "source": "docker"}
    data.update(over)
    return data


def test_a_fitting_value_has_no_problems():
    assert schema.check_shape(_container(), schema.ContainerJSON) == []
    diff = {"version": 3, "since": 1, "changes": [
        {"op": "remove", "entity": "container", "id": "a" * 64, "data": None},
        {"op": "add", "entity": "container", "id": "b" * 64, "data": _container(id="b" * 64)}]}
    assert schema.check_shape(diff, schema.GraphDiff) == []


def test_missing_unexpected_and_mistyped_keys_are_named():
    data = _container(pid="7", extra=1)
    del data["labels"]
    problems = schema.check_shape(data, schema.ContainerJSON)
    assert "$: missing key 'labels'" in problems
    assert "$: unexpected key 'extra'" in problems
    assert any(p.startswith("$.pid:") for p in problems)


def test_literals_unions_and_nesting():
    diff = {"version": 1, "since": 0, "changes": [{"op": "rename", "entity": "join", "id": 2.5, "data": None}]}
    problems = schema.check_shape(diff, schema.GraphDiff)
    assert any(p.startswith("$.changes[0].op:") for p in problems)
    assert any(p.startswith("$.changes[0].id:") for p in problems)
    assert schema.check_shape(True, int) != []          # a bool is not a count
    assert schema.check_shape(3, float) == []           # JSON numbers: an int is a valid float


def test_namespace_id_format():
    assert schema.namespace_id("net", 4, 4026531840, 0) == "net:4:4026531840:0"
