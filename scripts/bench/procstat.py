"""CPU time and memory of processes, read from /proc (Linux).

CPU of a server with worker processes (PostgreSQL's backends come and go) is counted over
its whole tree: every live process's own time plus the time of the children it has
already reaped, which the kernel adds to the parent's `cutime`/`cstime`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stat:
    pid: int
    ppid: int
    comm: str
    own: float  # seconds of CPU used by the process itself
    reaped: float  # seconds used by children it has waited for


def read_stat(pid: int) -> Stat | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: it ends at the last ')'
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return Stat(pid, int(fields[1]), comm, (utime + stime) / TICKS, (cutime + cstime) / TICKS)


def all_stats() -> list[Stat]:
    stats = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                stats.append(stat)
    return stats


def tree_cpu(root: int, stats: list[Stat] | None = None) -> float:
    """CPU seconds of `root` and all its descendants, dead or alive."""
    stats = all_stats() if stats is None else stats
    children: dict[int, list[Stat]] = {}
    by_pid = {s.pid: s for s in stats}
    for s in stats:
        children.setdefault(s.ppid, []).append(s)
    top = by_pid.get(root)
    if top is None:
        return 0.0
    total, todo = top.reaped, [top]
    while todo:
        s = todo.pop()
        total += s.own
        todo.extend(children.get(s.pid, []))
    return total


@dataclass(frozen=True)
class MachineTimes:
    """Seconds summed over all CPUs since boot, from the `cpu` line of /proc/stat."""

    busy: float  # user, nice, system, irq, softirq (guest time is inside user)
    iowait: float
    steal: float  # taken by the hypervisor for other guests
    total: float


def machine_times(text: str | None = None) -> MachineTimes:
    line = (text if text is not None else (PROC / "stat").read_text()).splitlines()[0]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(f) for f in line.split()[1:9])
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return MachineTimes(
        (user + nice + system + irq + softirq) / TICKS, iowait / TICKS, steal / TICKS, total / TICKS
    )


def machine_shares(before: MachineTimes, after: MachineTimes) -> dict[str, float]:
    """Each kind's share of all CPU time between two readings."""
    total = max(after.total - before.total, 1e-9)
    return {
        "busy": (after.busy - before.busy) / total,
        "iowait": (after.iowait - before.iowait) / total,
        "steal": (after.steal - before.steal) / total,
    }


def peak_rss_mb(pid: int) -> float | None:
    """The process's resident-set high-water mark (VmHWM)."""
    return _status_kb(pid, "VmHWM")


def rss_mb(pid: int) -> float | None:
    return _status_kb(pid, "VmRSS")


def _status_kb(pid: int, key: str) -> float | None:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def find_server(comm: str, stats: list[Stat] | None = None) -> int | None:
    """The top process of a server named `comm` (e.g. `postgres`, `beam.smp`): one whose
    parent is not itself a `comm`."""
    stats = all_stats() if stats is None else stats
    by_pid = {s.pid: s for s in stats}
    for s in stats:
        parent = by_pid.get(s.ppid)
        if s.comm == comm and (parent is None or parent.comm != comm):
            return s.pid
    return None
