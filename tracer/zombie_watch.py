"""Zombies as members (as lsns counts them).

No event says that an exited process stays unreaped, nor when it is reaped.  Each
maintenance tick reads /proc/PID/stat of the processes that exited during the tick
before (at most ZOMBIE_CHECKS, the newest; a storm's others wait for the next full
reconcile; a tick's delay lets parents that reap at once do so) and adds those still
zombies (their pid and user links only); and drops the model's zombies /proc no longer
shows.  Small reads per pid, off the event path.
"""

from __future__ import annotations

ZOMBIE_CHECKS = 64          # exited pids read per maintenance tick (4 a second) for zombies


class ZombieWatch:
    def __init__(self):
        self.exits_seen = 0         # graph version up to which exits were checked for zombies
        self.exits_pending = []     # exits of the last tick: checked at the next (parents reap at once)
        self.held = 0               # zombies the model held at the last check (their reaping makes no event)

    def check(self, graph, resolve, wall: float) -> None:
        from .graph.reconcile import proc_op
        from .host.procfs import is_zombie, read_process
        with graph.lock:
            exited = graph.processes.recent_exits(self.exits_seen, ZOMBIE_CHECKS)
            self.exits_seen = graph.version
        exited, self.exits_pending = self.exits_pending, exited
        ops = []
        for pid in exited:
            if is_zombie(pid, None):
                info = read_process(pid, slots=("pid", "user"))
                if info is not None and info.state == "Z" and info.ns:
                    ops.append(proc_op(info, resolve, False, wall))
        zombies = graph.zombies()
        gone = [{"op": "proc_gone", "pid": pid, "zombie": True, "ts": wall}
                for pid, start in zombies if not is_zombie(pid, start)]
        self.held = len(zombies) - len(gone) + len(ops)
        ops += gone
        if ops:
            graph.apply_ops(ops)
