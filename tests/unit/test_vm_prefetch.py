"""Which VM products a run builds ahead (tests/vm_prefetch.py), from the files it selected."""

from __future__ import annotations

import vm_prefetch
from vm_prefetch import products_for


def have_all(tool):
    return "/usr/bin/" + tool


def test_the_fleet_and_the_kernel_matrix_need_the_image():
    assert products_for(["tests/fleet/test_fleet.py"], have_all) == ["image"]
    assert products_for(["tests/infra/test_vm_kernel_matrix.py", "tests/unit/test_x.py"], have_all) == ["image"]


def test_the_vagrant_test_needs_the_box_and_all_need_both():
    assert products_for(["tests/infra/test_vagrant_up.py"], have_all) == ["box"]
    assert products_for(["tests/fleet/test_fleet.py", "tests/infra/test_vagrant_up.py"], have_all) == ["image", "box"]


def test_runs_without_vm_tests_build_nothing():
    assert products_for(["tests/unit/test_abi_header.py", "tests/kernel/test_abi.py",
                         "tests/infra/test_provision.py"], have_all) == []


def test_missing_tools_build_nothing_the_tests_would_refuse():
    no_vagrant = lambda tool: None if tool == "vagrant" else "/usr/bin/" + tool   # noqa: E731
    assert products_for(["tests/fleet/test_fleet.py", "tests/infra/test_vagrant_up.py"], no_vagrant) == ["image"]
    assert products_for(["tests/fleet/test_fleet.py"], lambda tool: None) == []


def test_the_files_named_exist():
    import os
    for path in vm_prefetch.IMAGE_USERS + vm_prefetch.BOX_USERS + ("scripts/vm/prefetch.sh",):
        assert os.path.exists(os.path.join(vm_prefetch.REPO, path)), path
