"""Helpers of the web tests: workflow files in a directory, and ``flowcore serve`` as a process on a
free loopback port."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import yaml

from live_nodes import child_env, flowcore, kill_all, wait_for

WORKFLOWS = {
    # a python node, a person's approval, then a node that fails its first attempt (two timeline bars)
    "approval": {"name": "approval", "nodes": [
        {"id": "draft", "type": "python", "call": "web_nodes:slow", "params": {"seconds": 0.1}},
        {"id": "approve", "type": "hil", "prompt": "Publish the draft?", "choices": ["publish", "reject"],
         "timeout": 3600},
        {"id": "publish", "type": "python", "call": "web_nodes:flaky", "retry": {"max_attempts": 3, "delay": 0.05}},
        {"id": "drop", "type": "noop"}],
        "connections": [{"from": "draft", "to": "approve"}, {"from": "approve", "to": "publish", "port": "publish"},
                        {"from": "approve", "to": "drop", "port": "reject"}]},
    # runs until cancelled
    "long": {"name": "long", "nodes": [
        {"id": "start", "type": "python", "call": "web_nodes:echo"},
        {"id": "crunch", "type": "python", "call": "web_nodes:patient", "params": {"seconds": 60}},
        {"id": "after", "type": "noop"}],
        "connections": [{"from": "start", "to": "crunch"}, {"from": "crunch", "to": "after"}]},
    # waits for an input (a `wait`), then passes it on
    "pause": {"name": "pause", "nodes": [
        {"id": "hold", "type": "wait", "timeout": 3600},
        {"id": "use", "type": "python", "call": "web_nodes:echo"}],
        "connections": [{"from": "hold", "to": "use", "port": "completed"}]},
    # waits for an input (a `wait`) while another branch runs until cancelled
    "busy_wait": {"name": "busy_wait", "nodes": [
        {"id": "hold", "type": "wait", "timeout": 3600},
        {"id": "crunch", "type": "python", "call": "web_nodes:patient", "params": {"seconds": 60}}],
        "connections": []},
    # a child run (of pause.yaml, beside it) that waits for an input, then a node after it
    "nest": {"name": "nest", "nodes": [
        {"id": "sub", "type": "subworkflow", "workflow": "pause.yaml"},
        {"id": "after", "type": "noop"}],
        "connections": [{"from": "sub", "to": "after"}]},
    # a fan-out: three items, each through a node
    "fanout": {"name": "fanout", "nodes": [
        {"id": "items", "type": "foreach"},
        {"id": "each", "type": "python", "call": "web_nodes:echo"},
        {"id": "collect", "type": "noop"}],
        "connections": [{"from": "items", "to": "each", "port": "iteration"},
                        {"from": "each", "to": "collect"}]},
}


def write_workflows(directory) -> str:
    os.makedirs(directory, exist_ok=True)
    for name, definition in WORKFLOWS.items():
        with open(os.path.join(directory, f"{name}.yaml"), "w", encoding="utf-8") as f:
            yaml.safe_dump(definition, f, sort_keys=False)
    return str(directory)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """A small JSON client of a served flowcore (urllib: the tests need no HTTP library of their own)."""

    def __init__(self, base: str, token: str | None = None):
        self.base = base
        self.token = token

    def call(self, method: str, path: str, body=None, token: str | None = "default", raw: bytes | None = None):
        """(status, decoded JSON or text)."""
        token = self.token if token == "default" else token
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def run(self, run_id: str) -> dict:
        status, body = self.get(f"/api/runs/{run_id}")
        assert status == 200, body
        return body

    def wait_status(self, run_id: str, *statuses, timeout: float = 30) -> dict:
        return wait_for(lambda: (r := self.run(run_id))["status"] in statuses and r, timeout,
                        f"run {run_id} to be {' or '.join(statuses)}")


@contextlib.contextmanager
def served(db: str, workflows: str | None = None, *args, token: str | None = None, host: str = "127.0.0.1"):
    """``flowcore serve`` on a free port, answering; yields (Api, process). Stopped with SIGTERM, which
    must end it with exit 0 and nothing on standard error but its own lines (no traceback, no error
    logged by uvicorn)."""
    port = free_port()
    cmd = flowcore("serve", "--db", db, "--host", host, "--port", port, *args)
    if workflows:
        cmd += ["--workflows", workflows]
    if token:
        cmd += ["--token", token]
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, text=True)
    api = Api(f"http://127.0.0.1:{port}", token)
    try:
        def answers():
            if proc.poll() is not None:
                raise AssertionError(f"flowcore serve exited {proc.returncode}: {proc.stderr.read()}")
            try:
                return api.get("/api/runs")[0] == 200
            except OSError:
                return False
        wait_for(answers, 30, "flowcore serve to answer", every=0.1)
        yield api, proc
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError("flowcore serve did not stop within 20 s of SIGTERM") from None
        err = proc.stderr.read()
        assert code == 0, err
        assert "Traceback" not in err and "ERROR" not in err, err
    finally:
        kill_all([proc])
        for stream in (proc.stdout, proc.stderr):
            stream.close()


def sse_events(url: str, token: str | None = None, timeout: float = 30, until_end: bool = True):
    """The (event, data) pairs of a server-sent event stream, until ``end`` (or the stream closes)."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    events, name, end = [], None, time.monotonic() + timeout
    with urllib.request.urlopen(request, timeout=timeout) as response:
        for line in response:
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                if name == "end" and until_end:
                    break
            if time.monotonic() > end:
                break
    return events
