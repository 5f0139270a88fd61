"""Runners: the drive loop and one backend per way of executing node instances.

A runner is chosen by name (``runner: thread`` in a workflow, ``--runner thread`` on the command
line). Runners make no scheduling decisions: they carry out ``step``'s commands and report events.
"""
from .async_runner import AsyncioBackend
from .context import Invoker, NodeContext, instance_name
from .collector import collector_paused, fewer_gc_passes
from .drive import DEFAULT_GRACE, DEFAULT_LINGER, Backend, ClusterUnreachable, Drive, RunnerUnavailable, TimerService
from .process_runner import ProcessBackend
from .serial import SerialBackend
from .simulated import SimulatedBackend
from .thread import ThreadBackend

BACKENDS = {
    "serial": SerialBackend,
    "thread": ThreadBackend,
    "asyncio": AsyncioBackend,
    "process": ProcessBackend,
    "simulated": SimulatedBackend,
}


def backend_names() -> list[str]:
    return sorted(BACKENDS) + ["dask"]


def make_backend(name: str, invoker, run_id: str, max_parallel: int, **options):
    if name == "dask":
        try:
            from .dask_runner import DaskBackend  # needs the optional `distributed` package
        except ModuleNotFoundError as exc:
            raise RunnerUnavailable(f"the dask runner needs the optional 'distributed' package ({exc}); install "
                                    f"it with: pip install 'flowcore[dask]'") from None
        return DaskBackend(invoker, run_id, max_parallel, **options)
    if name not in BACKENDS:
        raise ValueError(f"unknown runner {name!r}; choose one of {', '.join(backend_names())}")
    return BACKENDS[name](invoker, run_id, max_parallel, **options)


__all__ = ["AsyncioBackend", "Invoker", "NodeContext", "instance_name", "DEFAULT_GRACE", "DEFAULT_LINGER",
           "Backend", "Drive", "TimerService", "collector_paused", "fewer_gc_passes", "ProcessBackend", "SerialBackend", "SimulatedBackend",
           "ThreadBackend",
           "BACKENDS", "ClusterUnreachable", "RunnerUnavailable", "backend_names", "make_backend"]
