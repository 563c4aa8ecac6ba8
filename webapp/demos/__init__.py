"""The dashboard's demo launcher: scenarios, runs and the local demo image.

manager.py  DemoManager: the allow-listed scenarios, launching, limits, reaping
image.py    the demo container image (a local alpine, else built from busybox)
"""

from .image import DEFAULT_TAG, DemoImageError, check_demo_image, ensure_demo_image
from .manager import (DEMO_LABEL, EXPIRES_LABEL, LAUNCHER_LABEL, RUN_LABEL, SCENARIO_LABEL, SCENARIOS,
                      DemoError, DemoManager, Run, Scenario, container_options, links_in_output,
                      namespaces_for_run, read_ns_links)

__all__ = [
    "DEFAULT_TAG", "DEMO_LABEL", "EXPIRES_LABEL", "LAUNCHER_LABEL", "RUN_LABEL", "SCENARIO_LABEL",
    "SCENARIOS", "DemoError", "DemoImageError", "DemoManager", "Run", "Scenario", "check_demo_image",
    "container_options", "ensure_demo_image", "links_in_output", "namespaces_for_run", "read_ns_links",
]
