"""Section 12: ``flowcore serve`` (issue 12). What the server and its pages cost, with real processes
and Debian's Chromium.

- API: ``GET /api/runs/{id}`` of a finished 1,000-instance fan-out run (``foreach`` → a no-op per
  item → a gather), answered by a ``flowcore serve --no-worker`` process on its SQLite store, one
  request after another from this process (urllib, a new connection each): p50 and p99 of
  ``SAMPLES`` requests. Beside it, in this process, what ``flowcore status --json`` does for the
  same run (``Engine(db).status(id).to_dict()``), the same number of times: the server's figure
  over it is what HTTP, JSON and the page's replay add.
- Page: the run page of a finished 10,000-instance fan-out in Chromium (/usr/bin/chromium, through
  Playwright), from ``page.goto`` until it is usable: its timeline has its bars (the first
  ``view.MAX_BARS``), and a click on the mapped node shows that node's instances in the panel.
  A new browser page each time; beside it the same for a 10-instance run (what a page costs at all).
  Interleaved, median of the repeats. Target (issue 12): under 2 s.
- Events: a chain of ``delay`` nodes (50 ms each) driven by the server's worker, followed by a
  server-sent events client in this process: for each node, from its record's ``finished_at`` (the
  worker's clock, the same machine) to the arrival of the first event that shows it succeeded.
  p50 and p99; the server looks at the store every ``app.EVENTS_POLL`` seconds.

Without /usr/bin/chromium the page figure is left out and the section says so.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from adapters import Engine
from adapters.web import app as web_app
from adapters.web.view import MAX_BARS

from .live import percentile
from .measure import REPO_ROOT
from .table import Check, Section, ms, ratio

CHROMIUM = "/usr/bin/chromium"
API_ITEMS, QUICK_API_ITEMS = 1_000, 100
PAGE_ITEMS, QUICK_PAGE_ITEMS = 10_000, 500
SAMPLES, QUICK_SAMPLES = 200, 30
CHAIN, QUICK_CHAIN = 60, 10
DELAY = 0.05
PAGE_TARGET = 2.0  # seconds


def fanout_workflow() -> dict:
    return {"name": "fanout", "nodes": [{"id": "items", "type": "foreach"}, {"id": "each", "type": "noop"},
                                         {"id": "collect", "type": "noop"}],
            "connections": [{"from": "items", "to": "each", "port": "iteration"}, {"from": "each", "to": "collect"}]}


def chain_workflow(n: int) -> dict:
    nodes = [{"id": f"d{i:03d}", "type": "delay", "seconds": DELAY} for i in range(n)]
    return {"name": "ticks", "nodes": nodes,
            "connections": [{"from": f"d{i:03d}", "to": f"d{i + 1:03d}"} for i in range(n - 1)]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``flowcore serve`` as a process on a free loopback port, until ``close``."""

    def __init__(self, db: str, *options: str, workflows: str | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [os.path.join(os.path.dirname(sys.executable), "flowcore"), "serve", "--db", db, "--port",
               str(self.port), *options] + (["--workflows", workflows] if workflows else [])
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=self.log, stderr=self.log, start_new_session=True)
        end = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.base + "/api/runs", timeout=5).read()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    self.log.seek(0)
                    raise RuntimeError(f"flowcore serve did not answer: {self.log.read().decode()[-2000:]}")
                time.sleep(0.05)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.base + path, timeout=60) as r:
            return r.read()

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def stored_fanout(db: str, items: int, run_id: str) -> None:
    result = Engine(db=db).run(fanout_workflow(), trigger=list(range(items)), run_id=run_id)
    if result.status != "succeeded":
        raise RuntimeError(f"the {items}-item fan-out did not succeed: {result.status}")


def api_latency(db: str, run_id: str, samples: int) -> tuple[list[float], list[float]]:
    """(served seconds, in-process seconds) per request, interleaved one for one."""
    served = Served(db, "--no-worker")
    engine = Engine(db=db)
    expected = engine.status(run_id).to_dict()
    http, local = [], []
    try:
        first = json.loads(served.get(f"/api/runs/{run_id}"))
        if first != json.loads(json.dumps(expected)):
            raise RuntimeError("GET /api/runs/{id} is not the --json object")
        for _ in range(samples):
            t = time.perf_counter()
            served.get(f"/api/runs/{run_id}")
            http.append(time.perf_counter() - t)
            t = time.perf_counter()
            json.dumps(Engine(store=engine.store).status(run_id).to_dict())
            local.append(time.perf_counter() - t)
    finally:
        served.close()
    return http, local


def page_times(db: str, runs: dict[str, str], repeats: int) -> dict[str, list[float]]:
    """Seconds from goto until each run's page is usable, per contender name -> run id."""
    from playwright.sync_api import sync_playwright

    served = Served(db, "--no-worker")
    out: dict[str, list[float]] = {name: [] for name in runs}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            try:
                for _ in range(repeats):
                    for name, run_id in runs.items():
                        page = browser.new_page(viewport={"width": 1280, "height": 860})
                        page.set_default_timeout(60_000)
                        start = time.perf_counter()
                        page.goto(f"{served.base}/runs/{run_id}", wait_until="commit")
                        page.locator("#timeline .bar").first.wait_for()
                        page.click("#graph .node[data-node=each]")
                        page.locator("#panel .instance").first.wait_for()
                        out[name].append(time.perf_counter() - start)
                        bars = page.locator("#timeline .bar").count()
                        page.close()
                        if bars < 3:
                            raise RuntimeError(f"the page of {run_id} shows {bars} bars")
            finally:
                browser.close()
    finally:
        served.close()
    return out


def event_latency(base_dir: str, chain: int) -> list[float]:
    """Seconds from each delay node's finished_at to the first event that shows it succeeded."""
    import yaml

    workflows = os.path.join(base_dir, "workflows")
    os.makedirs(workflows, exist_ok=True)
    with open(os.path.join(workflows, "ticks.yaml"), "w") as f:
        yaml.safe_dump(chain_workflow(chain), f)
    served = Served(os.path.join(base_dir, "events.db"), workflows=workflows)
    seen: dict[str, float] = {}
    finished: dict[str, float] = {}
    try:
        request = urllib.request.Request(served.base + "/api/workflows/ticks/runs", method="POST",
                                         data=b'{"run_id": "ticks"}', headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30).read()
        with urllib.request.urlopen(served.base + "/api/runs/ticks/events", timeout=60) as stream:
            name = None
            for line in stream:
                arrived = time.time()
                line = line.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name == "run":
                    for r in json.loads(line[6:])["run"]["nodes"]:
                        if r["status"] == "succeeded" and r["node"] not in seen:
                            seen[r["node"]] = arrived
                            finished[r["node"]] = r["finished_at"]
                elif name == "end":
                    break
    finally:
        served.close()
    if len(seen) != chain:
        raise RuntimeError(f"the events showed {len(seen)} of {chain} nodes succeeded")
    return [seen[n] - finished[n] for n in seen]


def run(cfg) -> Section:
    quick = cfg.quick
    api_items, page_items = (QUICK_API_ITEMS, QUICK_PAGE_ITEMS) if quick else (API_ITEMS, PAGE_ITEMS)
    samples, chain = (QUICK_SAMPLES, QUICK_CHAIN) if quick else (SAMPLES, CHAIN)
    notes = [f"flowcore serve as a process on loopback, SQLite store; server polls the store every "
             f"{web_app.EVENTS_POLL:g} s for events; a page draws at most {MAX_BARS} timeline bars"]
    tables, checks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "web.db")
        stored_fanout(db, api_items, "api")
        http, local = api_latency(db, "api", samples)
        tables.append((f"GET /api/runs/{{id}} of a {api_items:,}-instance run, {samples} requests (ms)",
                       ["contender", "p50", "p99"],
                       [["served (HTTP, flowcore serve)", ms(percentile(http, 50)), ms(percentile(http, 99))],
                        ["in process (status --json's work)", ms(percentile(local, 50)), ms(percentile(local, 99))]]))
        notes.append(f"GET p99 / in-process p99: {ratio(percentile(http, 99) / percentile(local, 99))} (reported, "
                     f"not targeted)")
        if os.path.exists(CHROMIUM):
            stored_fanout(db, page_items, "big")
            stored_fanout(db, 10, "small")
            times = page_times(db, {f"{page_items:,} instances": "big", "10 instances": "small"}, cfg.repeats)
            medians = {k: statistics.median(v) for k, v in times.items()}
            tables.append((f"run page usable in Chromium (timeline drawn, a node's panel open), median of "
                           f"{cfg.repeats} (ms)", ["run", "median", "ratio to 10 instances"],
                           [[k, ms(v), ratio(v / medians["10 instances"])] for k, v in medians.items()]))
            checks.append(Check(f"{page_items:,}-instance run page usable (s)", medians[f"{page_items:,} instances"],
                                PAGE_TARGET, "<", " s"))
        else:
            notes.append(f"{CHROMIUM} is missing: the page figure is left out (apt-get install chromium)")
        lat = event_latency(tmp, chain)
        tables.append((f"a run's change to its server-sent event, {len(lat)} samples (ms)", ["p50", "p99", "max"],
                       [[ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(max(lat))]]))
        notes.append("event latency is reported, not targeted: it is bounded by the poll period plus one replay")
    return Section("web: flowcore serve's API, run page and events (issue 12)", notes, tables, checks)
