#!/usr/bin/env python3
"""The floor: BPF programs that return at once, on exactly the hooks given.

    floor.py HOOK...       e.g. tracepoint__syscalls__sys_enter_unshare tp_btf__sched_process_fork

Each HOOK is a program name as BCC spells it (what bench_probe_cost.py reads from
a running nsgraph's programs), so the floor attaches to the same hooks, the same
way (tracepoint, raw tracepoint, tp_btf, fentry/fexit, LSM), as the tracer it is
compared with.  What a hook costs with an empty program is the part of nsgraph's overhead
nsgraph cannot remove; everything above it is nsgraph's own.

Prints "floor ready: N programs" on stdout when attached; detaches on SIGINT,
SIGTERM or end of stdin.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tracer.exitcodes import EXIT_OK, EXIT_USAGE  # noqa: E402

PREFIXES = (
    ("tracepoint__", lambda rest: "TRACEPOINT_PROBE(%s, %s)" % tuple(rest.split("__", 1))),
    ("raw_tracepoint__", lambda rest: "RAW_TRACEPOINT_PROBE(%s)" % rest),
    ("kretfunc__", lambda rest: "KRETFUNC_PROBE(%s)" % rest),
    ("kfunc__", lambda rest: "KFUNC_PROBE(%s)" % rest),
    ("lsm__", lambda rest: "LSM_PROBE(%s)" % rest),
)


TP_BTF = "tp_btf__"


def btf_func(index: int) -> str:
    """The C name of the index-th tp_btf floor program (BCC compiles it, tracer.kernel.tpbtf attaches it)."""
    return "floor_btf_%d" % index


def floor_source(hooks) -> str:
    """C text with one empty program per hook name."""
    parts = []
    for index, hook in enumerate(hooks):
        if hook.startswith(TP_BTF):
            parts.append("int %s(void *ctx)\n{\n\treturn 0;\n}\n" % btf_func(index))
            continue
        for prefix, macro in PREFIXES:
            if hook.startswith(prefix):
                parts.append("%s\n{\n\treturn 0;\n}\n" % macro(hook[len(prefix):]))
                break
        else:
            raise ValueError("no floor for program %r: not a BCC probe name" % hook)
    return "\n".join(parts)


def main() -> int:
    hooks = sys.argv[1:]
    if not hooks:
        print(__doc__, file=sys.stderr)
        return EXIT_USAGE
    from bcc import BPF
    from tracer.kernel import tpbtf
    from tracer.kernel.btf import BTF
    bpf = BPF(text=floor_source(hooks).encode())
    attached = [tpbtf.attach(tpbtf.bcc_instructions(bpf, btf_func(index)), hook[len(TP_BTF):], BTF.from_file())
                for index, hook in enumerate(hooks) if hook.startswith(TP_BTF)]
    print("floor ready: %d programs" % len(hooks), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    for program in attached:
        program.close()
    bpf.cleanup()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
