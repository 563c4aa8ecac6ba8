"""doctor's fentry trial (tracer/kernel/fentry.py) against BCC's own fentry load.

The trial loads a 2-instruction program with the bpf() system call; BCC compiles a
KFUNC_PROBE with clang and loads it through libbpf - another path to the same
kernel decision.  Whatever this kernel decides (the 6.18 host refuses fentry with
EPERM; other kernels accept it), both must have met the same answer.
"""

from __future__ import annotations

import os

from tracer.kernel.fentry import try_fentry


def test_the_fentry_trial_meets_the_kernels_answer_to_bcc(root, capfd):
    from bcc import BPF

    trial = try_fentry()
    assert trial.tried, trial.reason
    try:
        bpf = BPF(text=b"KFUNC_PROBE(%s) { return 0; }" % trial.function.encode())
    except Exception as exc:        # BCC raises a bare Exception for a refused load
        refused = str(exc)
    else:
        refused = None
        bpf.cleanup()
    logged = capfd.readouterr().err
    assert trial.works == (refused is None), (trial, refused, logged)
    if refused is not None and trial.step == "load":
        # libbpf logs the kernel's errno; it is the one the trial got
        assert os.strerror(trial.errno) in logged, (trial, logged)
