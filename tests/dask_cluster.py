"""A real dask cluster for tests: ``dask scheduler`` and two ``dask worker`` processes on free ports.

The scheduler is started from an empty folder with no test module on its path (flowcore sends it
opaque tasks, so it needs none); the workers get ``tests/`` on their ``PYTHONPATH``, which is how
node modules reach them. Each worker has a nanny (the default), so a worker process a test kills
comes back (at a new address). Every process is stopped by its own id at the end.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
DASK = str(Path(sys.executable).parent / "dask")  # the `dask` command distributed installs in the venv
WORKERS = 2
THREADS = 2  # per worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, folder: str):
        self.folder = folder
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.processes: list[subprocess.Popen] = []

    def _spawn(self, args: list[str], log: str, env: dict) -> None:
        with open(os.path.join(self.folder, log), "w") as out:
            self.processes.append(subprocess.Popen([DASK, *args], cwd=self.folder, env=env, stdout=out,
                                                   stderr=subprocess.STDOUT, start_new_session=True))

    def start(self) -> None:
        base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        port = self.address.rpartition(":")[2]
        self._spawn(["scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"], "scheduler.log", base)
        for i in range(WORKERS):
            self._spawn(["worker", self.address, "--name", f"w{i}", "--nthreads", str(THREADS), "--no-dashboard",
                         "--memory-limit", "0"], f"worker{i}.log", {**base, "PYTHONPATH": str(TESTS)})
        self.wait_for_workers(WORKERS, timeout=60)

    def client(self):
        from distributed import Client

        return Client(self.address, timeout=10, set_as_default=False)

    def wait_for_workers(self, n: int = WORKERS, timeout: float = 30) -> None:
        with self.client() as client:
            client.wait_for_workers(n, timeout=timeout)

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> the pid of its process (the one node code runs in)."""
        with self.client() as client:
            return client.run(os.getpid)

    def stop(self) -> None:
        for p in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)  # the session: a nanny and the worker process it started
        deadline = time.monotonic() + 10
        for p in self.processes:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{(Path(self.folder) / name).read_text()[-3000:]}"
                         for name in sorted(os.listdir(self.folder)) if name.endswith(".log"))


@contextlib.contextmanager
def running_cluster():
    with tempfile.TemporaryDirectory(prefix="flowcore-dask-") as folder:
        cluster = Cluster(folder)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
