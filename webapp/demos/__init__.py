"""The dashboard's demo launcher: allow-listed scenarios, run without a shell.

scenarios.py  the allow-list (SCENARIOS) and the one place container limits are set
run.py        Run (what the page polls) and DemoError
runner.py     running a scenario: Docker SDK or a fixed util-linux argv; sleepers; container removal
manager.py    DemoManager: admission (caps, rate limit), runs, listeners, the reaper
outcome.py    which graph namespaces and join sessions a run created or joined (pure)
image.py      the demo container image (a local alpine, else built from busybox)
"""

from .image import DEFAULT_TAG, DemoImageError, check_demo_image, ensure_demo_image
from .manager import DemoManager
from .outcome import links_in_output, namespaces_for_run
from .run import DemoError, Run
from .runner import read_ns_links
from .scenarios import (DEMO_LABEL, EXPIRES_LABEL, LAUNCHER_LABEL, RUN_LABEL, SCENARIO_LABEL, SCENARIOS,
                        Scenario, container_options)

__all__ = [
    "DEFAULT_TAG", "DEMO_LABEL", "EXPIRES_LABEL", "LAUNCHER_LABEL", "RUN_LABEL", "SCENARIO_LABEL",
    "SCENARIOS", "DemoError", "DemoImageError", "DemoManager", "Run", "Scenario", "check_demo_image",
    "container_options", "ensure_demo_image", "links_in_output", "namespaces_for_run", "read_ns_links",
]
