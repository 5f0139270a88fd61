"""Leases: which process drives a run, and whether that process still lives.

A run is driven by one process at a time. The driver holds a lease (pid, host, token) in the
store and refreshes its heartbeat. Another process may take the run over when the driver is gone:
at once on this host, where the process table tells (gone, a zombie, or a pid reused by a later
process), and on another host once the heartbeat is ``LEASE_SECONDS`` old. This module only
decides; the stores keep the leases. It never signals a process (``os.kill(pid, 0)`` only asks).

A host is its hostname, or ``FLOWCORE_HOST_ID`` where that is set: processes of one machine with
distinct host ids treat each other as on other hosts (the fleet tests simulate hosts so; a
container that shares its hostname with another can set it too). ``FLOWCORE_LEASE_SECONDS``
shortens the lease (a test of takeovers); a driver's heartbeat comes three times a lease.
"""
from __future__ import annotations

import os
import socket
import time

import attrs

# a driver on another host is presumed dead this long after its last heartbeat
LEASE_SECONDS = float(os.environ.get("FLOWCORE_LEASE_SECONDS") or 30.0)
HEARTBEAT_SECONDS = min(10.0, LEASE_SECONDS / 3)  # how often a driver refreshes its lease


def host_id() -> str:
    """This process's host, as leases name it: ``FLOWCORE_HOST_ID``, else the hostname."""
    return os.environ.get("FLOWCORE_HOST_ID") or socket.gethostname()


@attrs.frozen
class ProcessStat:
    """What /proc says of a live or zombie process: its state letter (``R``, ``S``, ``Z``...) and when
    it started, in clock ticks since boot."""
    state: str
    started: str


def process_stat(pid: int) -> ProcessStat | None:
    """The state and start time of process ``pid`` from /proc; None where there is no such process
    or no /proc (or /proc hides it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    except OSError:
        return None
    return ProcessStat(state=fields[0], started=fields[19])  # fields 3 and 22 of proc(5)


@attrs.frozen
class Lease:
    pid: int
    host: str
    token: str

    @classmethod
    def mine(cls) -> "Lease":
        """This process's lease. Its token ends with when the process started, where the system says
        (Linux's /proc): a later process that reuses the pid is then not taken for this one."""
        pid = os.getpid()
        stat = process_stat(pid)
        return cls(pid=pid, host=host_id(),
                   token=f"{pid}-{time.time_ns()}" + (f"-{stat.started}" if stat else ""))


def driver_alive(held: Lease) -> bool:
    """Whether the process that took ``held`` on this host still runs: not gone, not a zombie (dead,
    not yet reaped by its parent), and not another process that got its pid since."""
    if type(held.pid) is not int or held.pid <= 0:  # a lease written by hand: no process holds it
        return False
    stat = process_stat(held.pid)
    if stat is None:
        try:  # no such process, no /proc, or one /proc hides: whether the pid exists is what there is
            os.kill(held.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if stat.state in ("Z", "X"):
        return False
    parts = held.token.split("-")
    return len(parts) < 3 or parts[2] == stat.started  # a token without a start time (older, or no /proc)


def lease_blocks(held: Lease, heartbeat: float, me: Lease, now: float) -> bool:
    """Whether a lease still held by ``held`` keeps ``me`` from driving the run."""
    heartbeat = _heartbeat(heartbeat)
    if held.token == me.token:
        return False
    if held.host == me.host:
        # (another thread of this very process counts as a live driver too: a worker's thread and an
        # Engine.resume in one process must not drive one run at once)
        return driver_alive(held)
    return now - heartbeat < LEASE_SECONDS


def lease_live(held: Lease, heartbeat: float, now: float) -> bool:
    """Whether the process that holds a lease still drives the run, as far as this host can tell."""
    heartbeat = _heartbeat(heartbeat)
    if held.host == host_id():
        return driver_alive(held)
    return now - heartbeat < LEASE_SECONDS


def _heartbeat(value) -> float:
    """A heartbeat as a time; one that is not a number (a lease written by hand) is of long ago."""
    return value if type(value) in (int, float) else float("-inf")


def lease_message(run_id: str, held: Lease) -> str:
    return (f"run {run_id!r} is being driven by process {held.pid} on {held.host}; "
            f"wait for it to finish (or stop that process) before resuming")
