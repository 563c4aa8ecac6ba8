"""Regenerate recorded_events.json: raw probe records of the known workload, with
the workload's own /proc ground truth, for the decoder's unit tests.

    sudo .venv/bin/python tests/data/record_events.py
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from tracer.events.decode import Decoder  # noqa: E402
from tracer.kernel.probes import ProbeOptions, Probes  # noqa: E402

records = []
probes = Probes(lambda record: records.append(bytes(record)), options=ProbeOptions(proc_events=True))
probes.load()
workload = os.path.join(os.path.dirname(HERE), "workloads", "ns_workload.py")
out = subprocess.run([sys.executable, workload, "--unshare-count", "3"], capture_output=True, text=True, check=True)
deadline = time.time() + 1.0
while time.time() < deadline:
    probes.poll(20)
probes.close()
truth = [json.loads(line) for line in out.stdout.splitlines()]
pids = {t["pid"] for t in truth if "pid" in t} | {t["child_pid"] for t in truth if t.get("child_pid")}
decoder = Decoder(node="recorded", clock_offset=0.0)
kept = []
for raw in records:
    event = decoder.decode(raw)
    if event is not None and (event.pid in pids or event.child_pid in pids):
        kept.append(raw.hex())
with open(os.path.join(HERE, "recorded_events.json"), "w") as f:
    json.dump({"kernel": os.uname().release, "truth": truth, "records": kept}, f, indent=1)
print("recorded %d records" % len(kept))
