"""The bad-input corpus (issue 15): every input a user, a node or a store can get wrong, through the CLI.

Each case is a row of ``CASES``: the files it writes, the commands that set the scene (``before``),
the command under test, the exit code it must give and a phrase its message must hold. Every case
also checks what holds for every input, good or bad:

- no traceback, and a short message (a few lines on standard error; ``lines`` bounds it);
- under ``--json``, standard output is one strict JSON value (no NaN), or nothing at all when the
  command was refused;
- no run of the store is left ``running`` without a live process driving it once the command is
  done (a lease of this very process counts as none: in-process, the command has "exited").

Most cases call ``adapters.cli.main(argv)`` in this process (a case is a few milliseconds), under a
watchdog (SIGALRM) that turns a hang into a failure. The few where a real process matters run
``flowcore`` in a subprocess with a timeout: node code that exits or interrupts the process, output
written to file descriptor 1, a read that would never end, threads a timed-out node leaves behind.
"""
from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from adapters.cli import main
from adapters.leases import Lease, driver_alive, process_stat
from scheduler_core import MAX_SECONDS

TESTS = Path(__file__).resolve().parent
IN_PROCESS_SECONDS = 20.0  # a case that takes longer hangs
PROCESS_SECONDS = 30.0


@dataclass
class Case:
    name: str
    argv: list
    code: int
    says: str | tuple  # the message (standard error, or standard output for a run's own report) holds this (each)
    files: dict = field(default_factory=dict)  # name -> text or bytes; "{mod}" is the case's module name
    before: tuple = ()  # argv lists run first (their outcome is not checked), or callables(workdir, db)
    process: bool = False  # in a subprocess: a real process matters
    lines: int = 3  # at most this many lines of message on standard error (argparse's usage aside)
    after: Callable | None = None  # a last check, given the working directory


# -- the files cases share ------------------------------------------------------------------------

OK = "name: ok\nnodes: [{id: a, type: noop}]\n"
ASK = """\
name: ask
nodes:
  - {id: first, type: noop}
  - {id: ask, type: hil, prompt: "Ship it?", choices: [ship, hold]}
  - {id: b, type: noop}
connections: [{from: first, to: ask}, {from: ask, to: b, port: ship}]
"""
FAN = """\
name: fan
nodes:
  - {id: each, type: foreach}
  - {id: w, type: noop}
connections: [{from: each, to: w, port: iteration}]
"""
LATER = "name: later\nnodes: [{id: d, type: delay, seconds: 3600}]\n"
SHARED = {"ok.yaml": OK, "ask.yaml": ASK, "fan.yaml": FAN, "later.yaml": LATER}

WAITING = (["run", "ask.yaml", "--run-id", "w", "--linger", "0"],)  # run w waits for its answer
DONE = (["run", "ok.yaml", "--run-id", "done"],)  # run done has succeeded
QUEUED = (["submit", "ok.yaml", "--run-id", "q"],)  # run q is queued


def python_node(source: str, fields: str = "", workflow_name: str = "py") -> dict:
    """A workflow of a python node calling ``f`` of the case's own module (then a noop), and that module."""
    return {"wf.yaml": f"name: {workflow_name}\nnodes:\n  - {{id: n, type: python, call: '{{mod}}:f'{fields}}}\n"
                       f"  - {{id: after, type: noop}}\nconnections: [{{from: n, to: after}}]\n",
            "{mod}.py": source}


def with_node(node: str) -> dict:
    """A workflow of a noop feeding the node given (a YAML flow mapping)."""
    return {"wf.yaml": f"name: one\nnodes:\n  - {{id: a, type: noop}}\n  - {node}\nconnections: [{{from: a, to: t}}]\n"}


def sql(*statements: str) -> Callable:
    """A scene step: change the store by hand (each statement given the parameters passed)."""
    def change(workdir: Path, db: Path, *parameters) -> None:
        conn = sqlite3.connect(db)
        try:
            for statement in statements:
                conn.execute(statement, parameters if "?" in statement else ())
            conn.commit()
        finally:
            conn.close()
    return change


def _pickle_that_touches(workdir: Path) -> bytes:
    """A pickle that creates the file PWNED when it is loaded: a snapshot must never be unpickled."""
    import pickle

    class Touch:
        def __reduce__(self):
            return (open, (str(workdir / "PWNED"), "w"))
    return pickle.dumps(Touch())


def _tables_and_journal(db: Path) -> tuple:
    conn = sqlite3.connect(db)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return tables, conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()


def live_driver(run_id: str) -> Callable:
    """A scene step: a live process (a sleeping child) holds the run's lease, as a driver would."""
    def hold(workdir: Path, db: Path) -> None:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        _CHILDREN.append(child)
        stat = process_stat(child.pid)
        token = f"{child.pid}-{time.time_ns()}" + (f"-{stat.started}" if stat else "")
        lease = Lease(pid=child.pid, host=Lease.mine().host, token=token)
        sql(f"INSERT OR REPLACE INTO leases (run_id, pid, host, token, heartbeat) VALUES "
            f"('{run_id}', {lease.pid}, '{lease.host}', '{lease.token}', {time.time()})")(workdir, db)
    return hold


_CHILDREN: list = []

LOL = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)])
DEEP_PARENS = "(" * 3000 + "a" + ")" * 3000
NAN, INF = float("nan"), float("inf")
NESTED_1000 = "def f(x):\n    out = []\n    for _ in range(1000):\n        out = [out]\n    return out\n"


def bounds(node: dict, field_name: str) -> Case:
    """A number out of bounds: refused at validation with one problem naming the field and the node."""
    wf = {"name": "bounds", "nodes": [{"id": "a", "type": "noop"}, node],
          "connections": [{"from": "a", "to": node["id"]}]}
    return Case(f"bounds-{node['type']}-{field_name}-{json.dumps(node)}", ["validate", "wf.json"], 2,
                (f"- node {node['id']!r}: ", field_name), files={"wf.json": json.dumps(wf)}, lines=2)


CASES = [
    # -- workflow files: what the loader refuses -----------------------------------------------------
    Case("file-latin-1", ["validate", "wf.yaml"], 2, "not UTF-8",
         files={"wf.yaml": "name: café\nnodes: [{id: a, type: noop}]\n".encode("latin-1")}),
    Case("file-utf-16", ["validate", "wf.yaml"], 2, "not UTF-8",
         files={"wf.yaml": "name: x\nnodes: [{id: a, type: noop}]\n".encode("utf-16")}),
    Case("file-random-bytes", ["run", "wf.json"], 2, "not UTF-8", files={"wf.json": bytes(range(128, 256)) * 4}),
    Case("file-yaml-5000-deep", ["validate", "wf.yaml"], 2, "nested",
         files={"wf.yaml": "x: " + "[" * 5000 + "]" * 5000 + "\nnodes: [{id: a, type: noop}]\n"}),
    Case("file-json-5000-deep", ["run", "wf.json"], 2, "nested",
         files={"wf.json": "{\"x\": " + "[" * 5000 + "]" * 5000 + ", \"nodes\": []}"}),
    Case("file-alias-bomb-description", ["validate", "wf.yaml"], 2, "alias",
         files={"wf.yaml": LOL + "\ndescription: *i\nnodes: [{id: a, type: noop}]\n"}),
    Case("file-alias-bomb-params-run", ["run", "wf.yaml"], 2, "alias",
         files={"wf.yaml": LOL + "\nnodes: [{id: a, type: noop, params: *i}]\n"}),
    Case("file-duplicate-top-key", ["validate", "wf.yaml"], 2, "'nodes' appears twice",
         files={"wf.yaml": "name: x\nnodes: [{id: a, type: noop}]\nnodes: [{id: b, type: noop}]\n"}),
    Case("file-duplicate-node-key", ["validate", "wf.yaml"], 2, "'id' appears twice",
         files={"wf.yaml": "nodes:\n  - {id: a, type: noop, id: b}\n"}),
    Case("file-duplicate-json-key", ["run", "wf.json"], 2, "appears twice",
         files={"wf.json": '{"nodes": [{"id": "a", "type": "noop"}], "nodes": []}'}),
    Case("file-yaml-null-key-in-params", ["run", "wf.yaml"], 2, "the key None is not a string",
         files=python_node("def f(x, **params):\n    return x\n", ", params: {a: 1, null: 2}")),
    Case("file-yaml-bool-key", ["validate", "wf.yaml"], 2, "the key True is not a string",
         files={"wf.yaml": "nodes: [{id: a, type: noop}]\nsettings: {pools: {on: 1}}\n"}),
    Case("file-yaml-merge-key", ["validate", "wf.yaml"], 0, "valid (2 nodes",
         files={"wf.yaml": "nodes:\n  - &a {id: a, type: noop}\n  - {<<: *a, id: b}\n"}),
    Case("file-type-is-a-list", ["validate", "wf.yaml"], 2, "unknown type",
         files={"wf.yaml": "nodes: [{id: a, type: [noop]}]\n"}),
    Case("file-type-is-a-mapping", ["run", "wf.yaml"], 2, "unknown type",
         files={"wf.yaml": "nodes: [{id: a, type: {noop: 1}}]\n"}),
    Case("file-type-a-huge-list", ["validate", "wf.json"], 2, "unknown type [0, 1, 2",
         files={"wf.json": json.dumps({"nodes": [{"id": "a", "type": list(range(100_000))}]})}),
    Case("file-node-id-of-100000-characters", ["run", "wf.json"], 2, "unknown type 'bogus'",
         files={"wf.json": json.dumps({"nodes": [{"id": "a" * 100_000, "type": "bogus"}]})}),
    Case("file-pool-is-a-mapping", ["validate", "wf.yaml"], 2, "pool",
         files={"wf.yaml": "nodes: [{id: a, type: noop, pool: {x: 1}}]\n"}),
    Case("file-condition-3000-parens", ["validate", "wf.json"], 2, "nested too deeply",
         files={"wf.json": json.dumps({"nodes": [{"id": "a", "type": "noop"},
                                                  {"id": "c", "type": "if", "condition": DEEP_PARENS}],
                                       "connections": [{"from": "a", "to": "c"}]})}),
    Case("file-select-3000-parens", ["validate", "wf.json"], 2, "nested too deeply",
         files={"wf.json": json.dumps({"nodes": [{"id": "a", "type": "noop"}, {"id": "c", "type": "noop"}],
                                       "connections": [{"from": "a", "to": "c", "select": DEEP_PARENS}]})}),
    Case("file-missing", ["run", "absent.yaml"], 2, "no such file"),
    Case("file-is-a-directory", ["validate", "."], 2, "cannot be read"),
    Case("file-empty", ["validate", "wf.yaml"], 2, "must be a mapping", files={"wf.yaml": ""}),
    Case("file-a-list", ["validate", "wf.yaml"], 2, "must be a mapping", files={"wf.yaml": "- a\n- b\n"}),
    Case("file-a-number", ["run", "wf.json"], 2, "must be a mapping", files={"wf.json": "42"}),
    Case("file-yaml-syntax", ["validate", "wf.yaml"], 2, "not valid YAML",
         files={"wf.yaml": "nodes:\n  - {id: a, type: noop\n  - {id: b}\n"}),
    Case("file-json-syntax", ["validate", "wf.json"], 2, "not valid JSON", files={"wf.json": '{"nodes": [}'}),
    Case("file-yaml-python-tag", ["validate", "wf.yaml"], 2, "not valid YAML",
         files={"wf.yaml": "name: !!python/object/apply:os.system [echo hi]\nnodes: [{id: a, type: noop}]\n"}),
    Case("file-nul-bytes", ["validate", "wf.yaml"], 2, "not valid YAML",
         files={"wf.yaml": b"name: x\x00\nnodes: [{id: a, type: noop}]\n"}),
    Case("file-lone-surrogate-json", ["validate", "wf.json"], 2, "surrogate",
         files={"wf.json": '{"name": "w\\ud800", "nodes": [{"id": "a", "type": "noop"}]}'}),
    Case("file-lone-surrogate-yaml-run", ["run", "wf.yaml"], 2, "surrogate",
         files={"wf.yaml": 'name: x\nnodes: [{id: "a\\udc80", type: noop}]\n'}),
    Case("file-endless-dev-zero", ["run", "/dev/zero"], 2, "larger than", process=True),
    # -- workflow files: structure and fields ----------------------------------------------------------
    Case("nodes-empty", ["validate", "wf.yaml"], 2, "non-empty list", files={"wf.yaml": "nodes: []\n"}),
    Case("nodes-a-mapping", ["run", "wf.yaml"], 2, "non-empty list", files={"wf.yaml": "nodes: {a: noop}\n"}),
    Case("node-a-string", ["validate", "wf.yaml"], 2, "must be a mapping", files={"wf.yaml": "nodes: [a]\n"}),
    Case("node-without-id", ["validate", "wf.yaml"], 2, "missing 'id'", files={"wf.yaml": "nodes: [{type: noop}]\n"}),
    Case("node-id-a-number", ["validate", "wf.yaml"], 2, "missing 'id'",
         files={"wf.yaml": "nodes: [{id: 7, type: noop}]\n"}),
    Case("node-ids-twice", ["validate", "wf.yaml"], 2, "duplicate",
         files={"wf.yaml": "nodes: [{id: a, type: noop}, {id: a, type: noop}]\n"}),
    Case("node-type-unknown", ["run", "wf.yaml"], 2, "unknown type 'bogus'",
         files={"wf.yaml": "nodes: [{id: a, type: bogus}]\n"}),
    Case("node-field-unknown", ["validate", "wf.yaml"], 2, "unknown field 'colour'",
         files={"wf.yaml": "nodes: [{id: a, type: noop, colour: red}]\n"}),
    Case("top-field-unknown", ["validate", "wf.yaml"], 2, "unknown top-level field",
         files={"wf.yaml": "nodes: [{id: a, type: noop}]\nnode: []\n"}),
    Case("graph-cycle", ["run", "wf.yaml"], 2, "cycle",
         files={"wf.yaml": "nodes: [{id: a, type: noop}, {id: b, type: noop}]\n"
                           "connections: [{from: a, to: b}, {from: b, to: a}]\n"}),
    Case("edge-unknown-target", ["validate", "wf.yaml"], 2, "unknown target node 'nowhere'",
         files={"wf.yaml": "nodes: [{id: a, type: noop}]\nconnections: [{from: a, to: nowhere}]\n"}),
    Case("edge-a-string", ["validate", "wf.yaml"], 2, "must be a mapping with 'from' and 'to'",
         files={"wf.yaml": "nodes: [{id: a, type: noop}]\nconnections: [a->b]\n"}),
    Case("connections-a-mapping", ["validate", "wf.yaml"], 2, "connections",
         files={"wf.yaml": "nodes: [{id: a, type: noop}]\nconnections: {from: a, to: a}\n"}),
    Case("edge-map-not-a-bool", ["validate", "wf.yaml"], 2, "map must be true or false",
         files={"wf.yaml": "nodes: [{id: a, type: noop}, {id: b, type: noop}]\n"
                           "connections: [{from: a, to: b, map: maybe}]\n"}),
    Case("edge-select-not-a-string", ["validate", "wf.yaml"], 2, "select must be",
         files={"wf.yaml": "nodes: [{id: a, type: noop}, {id: b, type: noop}]\n"
                           "connections: [{from: a, to: b, select: [1]}]\n"}),
    Case("edge-select-bad-jmespath", ["validate", "wf.yaml"], 2, "not valid JMESPath",
         files={"wf.yaml": "nodes: [{id: a, type: noop}, {id: b, type: noop}]\n"
                           "connections: [{from: a, to: b, select: 'a[?'}]\n"}, lines=4),  # and a caret
    Case("edge-map-outside-a-fan-out", ["run", "wf.yaml"], 2, "map: true needs",
         files={"wf.yaml": "nodes: [{id: a, type: noop}, {id: b, type: noop}]\n"
                           "connections: [{from: a, to: b, map: true}]\n"}),
    Case("settings-a-list", ["validate", "wf.yaml"], 2, "settings",
         files={"wf.yaml": "settings: [1]\nnodes: [{id: a, type: noop}]\n"}),
    Case("settings-max-parallel-zero", ["run", "wf.yaml"], 2, "max_parallel",
         files={"wf.yaml": "settings: {max_parallel: 0}\nnodes: [{id: a, type: noop}]\n"}),
    Case("settings-max-parallel-inf", ["validate", "wf.yaml"], 2, "max_parallel",
         files={"wf.yaml": "settings: {max_parallel: .inf}\nnodes: [{id: a, type: noop}]\n"}),
    Case("settings-on-error-unknown", ["validate", "wf.yaml"], 2, "on_error",
         files={"wf.yaml": "settings: {on_error: explode}\nnodes: [{id: a, type: noop}]\n"}),
    Case("settings-pool-size-nan", ["validate", "wf.yaml"], 2, "pool's size",
         files={"wf.yaml": "settings: {pools: {p: .nan}}\nnodes: [{id: a, type: noop, pool: p}]\n"}),
    Case("settings-runner-a-list", ["run", "wf.yaml"], 2, "unknown runner",
         files={"wf.yaml": "settings: {runner: [x]}\nnodes: [{id: a, type: noop}]\n"}),
    Case("node-pool-undeclared", ["validate", "wf.yaml"], 2, "not declared",
         files={"wf.yaml": "nodes: [{id: a, type: noop, pool: nopool}]\n"}),
    Case("hil-choices-not-a-list", ["validate", "wf.yaml"], 2, "choices",
         files={"wf.yaml": "nodes: [{id: h, type: hil, choices: ship}]\n"}),
    Case("hil-choice-reserved", ["validate", "wf.yaml"], 2, "may not be 'result' or 'timeout'",
         files={"wf.yaml": "nodes: [{id: h, type: hil, choices: [timeout]}]\n"}),
    Case("if-condition-bad-jmespath", ["validate", "wf.yaml"], 2, "not valid JMESPath",
         files={"wf.yaml": "nodes: [{id: c, type: if, condition: '=='}]\n"}, lines=4),
    Case("python-call-without-colon", ["validate", "wf.yaml"], 2, "module:function",
         files={"wf.yaml": "nodes: [{id: p, type: python, call: nocolon}]\n"}),
    Case("python-call-a-number", ["validate", "wf.yaml"], 2, "module:function",
         files={"wf.yaml": "nodes: [{id: p, type: python, call: 42}]\n"}),
    Case("python-module-missing", ["run", "wf.yaml"], 2, "cannot import",
         files={"wf.yaml": "nodes: [{id: p, type: python, call: 'no_such_module_here:f'}]\n"}),
    Case("python-module-exits-on-import", ["validate", "wf.yaml"], 2, "SystemExit",
         files={"{mod}.py": "import sys\nsys.exit(5)\ndef f(x):\n    return x\n",
                "wf.yaml": "nodes: [{id: a, type: python, call: '{mod}:f'}]\n"}),
    Case("python-module-raises-on-import", ["validate", "wf.yaml"], 2, "ZeroDivisionError",
         files={"{mod}.py": "1 / 0\n", "wf.yaml": "nodes: [{id: a, type: python, call: '{mod}:f'}]\n"}),
    Case("python-module-shadows-stdlib", ["validate", "wf.yaml"], 2, "rename the file",
         files={"json.py": "def f(x):\n    return x\n", "wf.yaml": "nodes: [{id: a, type: python, call: 'json:f'}]\n"}),
    Case("python-attribute-not-callable", ["validate", "wf.yaml"], 2, "is not callable",
         files={"{mod}.py": "f = 3\n", "wf.yaml": "nodes: [{id: a, type: python, call: '{mod}:f'}]\n"}),
    Case("python-params-a-list", ["run", "wf.yaml"], 2, "params must be a mapping",
         files=python_node("def f(x):\n    return x\n", ", params: [1, 2]")),
    # -- workflow files: numbers out of bounds (each refused by name, before anything runs) --------------
    bounds({"id": "t", "type": "noop", "timeout": INF}, "timeout"),
    bounds({"id": "t", "type": "noop", "timeout": 1e10}, "timeout"),
    bounds({"id": "t", "type": "noop", "timeout": NAN}, "timeout"),
    bounds({"id": "t", "type": "noop", "timeout": -1}, "timeout"),
    bounds({"id": "t", "type": "noop", "timeout": "10s"}, "timeout"),
    bounds({"id": "t", "type": "noop", "timeout": True}, "timeout"),
    bounds({"id": "t", "type": "noop", "timeout": 10 ** 400}, "timeout"),
    bounds({"id": "d", "type": "delay", "seconds": 1e10}, "seconds"),
    bounds({"id": "d", "type": "delay", "seconds": MAX_SECONDS + 1}, "seconds"),
    bounds({"id": "d", "type": "delay", "seconds": NAN}, "seconds"),
    bounds({"id": "d", "type": "delay", "seconds": INF}, "seconds"),
    bounds({"id": "d", "type": "delay", "seconds": -5}, "seconds"),
    bounds({"id": "d", "type": "delay", "seconds": [1]}, "seconds"),
    bounds({"id": "w", "type": "wait", "timeout": NAN}, "timeout"),
    bounds({"id": "w", "type": "wait", "timeout": 0}, "timeout"),
    bounds({"id": "h", "type": "hil", "timeout": INF}, "timeout"),
    bounds({"id": "h", "type": "hil", "timeout": NAN}, "timeout"),
    bounds({"id": "r", "type": "noop", "retry": {"max_attempts": INF}}, "retry"),
    bounds({"id": "r", "type": "noop", "retry": {"max_attempts": NAN}}, "retry"),
    bounds({"id": "r", "type": "noop", "retry": {"max_attempts": 2.5}}, "retry"),
    bounds({"id": "r", "type": "noop", "retry": {"max_attempts": 10 ** 9}}, "retry"),
    bounds({"id": "r", "type": "noop", "retry": {"max_attempts": 0}}, "retry"),
    bounds({"id": "r", "type": "noop", "retry": {"max_attempts": 2, "delay": 1e-300, "backoff": 1e300}}, "retry"),
    bounds({"id": "r", "type": "noop", "retry": {"max_attempts": 2, "delay": NAN}}, "retry"),
    bounds({"id": "r", "type": "noop", "retry": {"max_attempts": 2, "delay": 1e10}}, "retry"),
    bounds({"id": "r", "type": "noop", "retry": {"max_attempts": 2, "backoff": -2}}, "retry"),
    bounds({"id": "r", "type": "noop", "retry": [3]}, "retry"),
    bounds({"id": "r", "type": "noop", "retry": {"attempts": 3}}, "retry"),
    bounds({"id": "e", "type": "noop", "estimate": INF}, "estimate"),
    bounds({"id": "e", "type": "noop", "estimate": NAN}, "estimate"),
    bounds({"id": "e", "type": "noop", "estimate": "slow"}, "estimate"),
    Case("run-timeout-inf-beside-a-running-node", ["run", "wf.yaml", "--json"], 2, "timeout",
         files={"wf.yaml": "nodes: [{id: a, type: noop}, {id: t, type: noop, timeout: .inf}]\n"}),
    Case("run-delay-1e10-beside-a-running-node", ["run", "wf.yaml"], 2, "seconds",
         files={"wf.yaml": "nodes: [{id: a, type: noop}, {id: d, type: delay, seconds: 1e10}]\n"}),
    # -- command-line arguments, every command ---------------------------------------------------------
    Case("cli-no-command", [], 2, "the following arguments are required"),
    Case("cli-unknown-command", ["explode"], 2, "invalid choice"),
    Case("cli-unknown-flag", ["run", "ok.yaml", "--colour"], 2, "unrecognized arguments"),
    Case("validate-without-a-file", ["validate"], 2, "the following arguments are required: file"),
    Case("submit-file-missing", ["submit", "absent.yaml", "--json"], 2, "no such file"),
    Case("simulate-trigger-nan", ["simulate", "ok.yaml", "--trigger", "NaN", "--json"], 2, "NaN"),
    Case("worker-db-a-directory", ["worker", "--once", "--db", "."], 2, "not a usable flowcore database"),
    Case("cancel-no-store", ["cancel", "r"], 2, "no flowcore database"),
    Case("runs-no-store", ["runs", "--json"], 0, "[]"),
    Case("run-max-parallel-zero", ["run", "ok.yaml", "--max-parallel", "0"], 2, "out of range"),
    Case("run-max-parallel-not-a-number", ["run", "ok.yaml", "--max-parallel", "many"], 2, "not a number"),
    Case("run-linger-negative", ["run", "ok.yaml", "--linger", "-1"], 2, "out of range"),
    Case("run-linger-nan", ["run", "later.yaml", "--linger", "nan"], 2, "--linger"),
    Case("run-grace-nan", ["run", "ok.yaml", "--grace", "nan"], 2, "--grace"),
    Case("run-runner-unknown", ["run", "ok.yaml", "--runner", "quantum"], 2, "invalid choice"),
    Case("run-id-taken", ["run", "ok.yaml", "--run-id", "done"], 2, "already exists", before=DONE),
    Case("run-id-not-utf-8", ["run", "ok.yaml", "--run-id", "r\udcff"], 2, "--run-id"),
    Case("run-db-a-directory", ["run", "ok.yaml", "--db", "."], 2, "not a usable flowcore database"),
    Case("run-db-in-a-missing-folder", ["run", "ok.yaml", "--db", "no/such/folder/x.db"], 2, "not a usable"),
    Case("run-db-a-text-file", ["run", "ok.yaml", "--db", "ok.yaml"], 2, "not a usable flowcore database"),
    Case("run-db-another-apps-sqlite", ["run", "ok.yaml", "--db", "other.db"], 2, "not a flowcore store",
         before=(lambda workdir, db: sql("CREATE TABLE t (x)")(workdir, workdir / "other.db"),)),
    Case("run-db-newer-schema", ["run", "ok.yaml"], 2, "newer flowcore",
         before=DONE + (sql("PRAGMA user_version = 99"),)),
    Case("submit-invalid-workflow", ["submit", "wf.yaml", "--json"], 2, "unknown type",
         files={"wf.yaml": "nodes: [{id: a, type: bogus}]\n"}),
    Case("submit-id-taken", ["submit", "ok.yaml", "--run-id", "q"], 2, "already exists", before=QUEUED),
    Case("submit-id-not-utf-8", ["submit", "ok.yaml", "--run-id", "\udcff"], 2, "--run-id"),
    Case("submit-trigger-not-json", ["submit", "ok.yaml", "--trigger", "{oops"], 2, "--trigger must be JSON"),
    Case("submit-trigger-nan", ["submit", "ok.yaml", "--trigger", "[NaN]", "--json"], 2, "NaN"),
    Case("resume-unknown-run", ["resume", "nope"], 2, "no run with id 'nope'", before=DONE),
    Case("resume-no-store", ["resume", "nope"], 2, "no flowcore database"),
    Case("resume-run-id-not-utf-8", ["resume", "\udcff"], 2, "run id", before=DONE),
    Case("resume-finished-run", ["resume", "done"], 2, "already finished", before=DONE),
    Case("resume-wait-nan", ["resume", "w", "--wait", "nan"], 2, "finite number of seconds"),
    Case("resume-wait-negative", ["resume", "w", "--wait", "-1"], 2, "finite number of seconds"),
    Case("resume-linger-nan", ["resume", "w", "--linger", "nan"], 2, "--linger"),
    Case("resume-max-parallel-zero", ["resume", "w", "--max-parallel", "0"], 2, "out of range"),
    Case("cancel-unknown-run", ["cancel", "nope"], 2, "no run with id 'nope'", before=DONE),
    Case("cancel-run-id-not-utf-8", ["cancel", "\udcff"], 2, "run id", before=DONE),
    Case("cancel-finished-run", ["cancel", "done", "--json"], 2, "already finished", before=DONE),
    Case("cancel-item-without-node", ["cancel", "w", "--item", "1"], 2, "give --node too", before=WAITING),
    Case("cancel-wait-inf", ["cancel", "w", "--wait", "inf"], 2, "finite number of seconds", before=WAITING),
    Case("status-unknown-run", ["status", "nope", "--json"], 2, "no run with id 'nope'", before=DONE),
    Case("status-no-store", ["status", "nope"], 2, "no flowcore database"),
    Case("status-run-id-not-utf-8", ["status", "d\udcff"], 2, "run id", before=DONE),
    Case("status-item-without-node", ["status", "done", "--item", "1"], 2, "--item needs --node", before=DONE),
    Case("status-node-unknown", ["status", "done", "--node", "zz"], 2, "has no node 'zz'", before=DONE),
    Case("status-item-of-a-plain-node", ["status", "done", "--node", "a", "--item", "1"], 2, "does not run per item",
         before=DONE),
    Case("status-another-apps-sqlite", ["status", "x", "--db", "other.db"], 2, "not a flowcore store",
         before=(lambda workdir, db: sql("CREATE TABLE t (x)")(workdir, workdir / "other.db"),)),
    Case("runs-status-unknown", ["runs", "--status", "exploded"], 2, "invalid choice"),
    Case("runs-limit-zero", ["runs", "--limit", "0"], 2, "out of range"),
    Case("runs-limit-negative", ["runs", "--limit", "-3"], 2, "out of range"),
    Case("runs-limit-not-a-number", ["runs", "--limit", "ten"], 2, "not a number"),
    Case("runs-limit-huge", ["runs", "--limit", "1" + "0" * 30, "--json"], 0, "", before=DONE),
    Case("runs-workflow-not-utf-8", ["runs", "--workflow", "\udcff", "--json"], 2, "--workflow", before=DONE),
    Case("runs-a-text-file", ["runs", "--db", "ok.yaml", "--json"], 2, "not a usable flowcore database"),
    Case("worker-max-runs-zero", ["worker", "--once", "--max-runs", "0"], 2, "out of range"),
    Case("worker-grace-nan", ["worker", "--once", "--grace", "nan"], 2, "--grace"),
    Case("worker-runner-unknown", ["worker", "--once", "--runner", "quantum"], 2, "invalid choice"),
    Case("worker-another-apps-sqlite", ["worker", "--db", "other.db"], 2, "not a flowcore store",
         before=(lambda workdir, db: sql("CREATE TABLE t (x)")(workdir, workdir / "other.db"),)),
    Case("simulate-fail-rate-above-one", ["simulate", "ok.yaml", "--fail-rate", "2"], 2, "--fail-rate"),
    Case("simulate-late-rate-nan", ["simulate", "ok.yaml", "--late-rate", "nan"], 2, "--late-rate"),
    Case("simulate-duplicate-rate-negative", ["simulate", "ok.yaml", "--duplicate-rate", "-0.5"], 2,
         "--duplicate-rate"),
    Case("simulate-seed-not-a-number", ["simulate", "ok.yaml", "--seed", "x"], 2, "invalid int value"),
    # -- triggers ---------------------------------------------------------------------------------------
    Case("trigger-not-json", ["run", "ok.yaml", "--trigger", "yes"], 2, "--trigger must be JSON"),
    Case("trigger-990-deep", ["run", "ok.yaml", "--trigger", "[" * 990 + "]" * 990], 2, "--trigger is nested"),
    Case("trigger-60000-brackets", ["run", "ok.yaml", "--trigger", "[" * 60_000], 2, "--trigger is nested"),
    Case("trigger-nan", ["run", "ok.yaml", "--trigger", "NaN", "--json"], 2, "NaN"),
    Case("trigger-infinity-in-a-list", ["run", "ok.yaml", "--trigger", "[1, -Infinity]"], 2, "Infinity"),
    Case("trigger-overflowing-float", ["run", "ok.yaml", "--trigger", "{\"x\": 1e999}"], 2, "1e999"),
    Case("trigger-5000-digit-number", ["run", "ok.yaml", "--trigger", "1" * 5000], 2, "--trigger must be JSON"),
    Case("trigger-foreach-over-a-number", ["run", "fan.yaml", "--trigger", "5", "--json"], 1, "list"),
    Case("trigger-select-fails-at-run-time", ["run", "wf.yaml", "--trigger", "\"x\"", "--json"], 1, "abs",
         files={"wf.yaml": "nodes: [{id: a, type: noop}, {id: b, type: noop}]\n"
                           "connections: [{from: a, to: b, select: 'abs(@)'}]\n"}),
    Case("trigger-condition-fails-at-run-time", ["run", "wf.yaml", "--trigger", "\"x\"", "--json"], 1, "abs",
         files={"wf.yaml": "nodes: [{id: a, type: noop}, {id: c, type: if, condition: 'abs(@)'}]\n"
                           "connections: [{from: a, to: c}]\n"}),
    Case("trigger-lone-surrogate", ["run", "ok.yaml", "--trigger", "\"\\ud800\""], 0, "\\ud800"),
    # -- node code that misbehaves ------------------------------------------------------------------------
    Case("node-sys-exit-serial", ["run", "wf.yaml", "--json", "--runner", "serial"], 1, "SystemExit",
         files=python_node("import sys\ndef f(x):\n    sys.exit(0)\n"), process=True),
    Case("node-keyboard-interrupt-serial", ["run", "wf.yaml", "--json", "--runner", "serial"], 1, "KeyboardInterrupt",
         files=python_node("def f(x):\n    raise KeyboardInterrupt\n"), process=True),
    Case("node-sys-exit-thread", ["run", "wf.yaml", "--json", "--runner", "thread"], 1, "SystemExit",
         files=python_node("import sys\ndef f(x):\n    sys.exit(3)\n")),
    Case("node-keyboard-interrupt-asyncio", ["run", "wf.yaml", "--json", "--runner", "asyncio"], 1,
         "KeyboardInterrupt", files=python_node("async def f(x):\n    raise KeyboardInterrupt\n")),
    Case("node-base-exception-serial", ["run", "wf.yaml", "--json", "--runner", "serial"], 1, "BaseException",
         files=python_node("def f(x):\n    raise BaseException('x')\n")),
    Case("node-base-exception-thread", ["run", "wf.yaml", "--json"], 1, "BaseException",
         files=python_node("def f(x):\n    raise BaseException('x')\n")),
    Case("node-str-of-error-raises", ["run", "wf.yaml", "--json", "--runner", "asyncio"], 1, "Unprintable",
         files=python_node("class Unprintable(Exception):\n    def __str__(self):\n        raise RuntimeError\n"
                           "def f(x):\n    raise Unprintable()\n")),
    Case("node-str-of-error-not-a-string", ["run", "wf.yaml", "--json"], 1, "Odd",
         files=python_node("class Odd(Exception):\n    def __str__(self):\n        return 5\n"
                           "def f(x):\n    raise Odd()\n")),
    Case("node-output-1000-deep", ["run", "wf.yaml", "--json"], 1, "nested more than",
         files=python_node(NESTED_1000)),
    Case("node-output-5000-digits", ["run", "wf.yaml", "--json"], 1, "not JSON",
         files=python_node("def f(x):\n    return 10 ** 5000\n")),
    Case("node-output-nan", ["run", "wf.yaml", "--json"], 1, "not JSON",
         files=python_node("def f(x):\n    return float('nan')\n")),
    Case("node-output-a-set", ["run", "wf.yaml", "--json"], 1, "not JSON",
         files=python_node("def f(x):\n    return {1}\n")),
    Case("node-output-tuple-port-name", ["run", "wf.yaml", "--json"], 1, "not JSON",
         files=python_node("from scheduler_core import Ports\ndef f(x):\n    return Ports({('a',): 1})\n")),
    Case("node-output-lone-surrogate", ["run", "wf.yaml"], 0, "\\ud800",
         files=python_node("def f(x):\n    return 'x\\ud800'\n")),
    Case("node-error-lone-surrogate", ["run", "wf.yaml"], 1, "\\udcff",
         files=python_node("def f(x):\n    raise ValueError('bad \\udcff')\n")),
    Case("node-log-markup-and-surrogate", ["run", "wf.yaml"], 0, "succeeded",
         files=python_node("def f(x, ctx):\n    ctx.logger.info('[/] \\ud800 \\x1b[31m')\n    return '[/]'\n")),
    Case("node-wrong-signature", ["run", "wf.yaml", "--json"], 2, "cannot be called as f(input)",
         files=python_node("def f():\n    return 1\n")),  # told at validation, not at run time
    Case("node-infinite-recursion", ["run", "wf.yaml", "--json", "--runner", "serial"], 1, "RecursionError",
         files=python_node("def f(x):\n    return f(x)\n")),
    Case("node-writes-to-fd-1-under-json", ["run", "wf.yaml", "--json"], 0, "succeeded",
         files=python_node("import os, subprocess, sys\ndef f(x):\n    os.write(1, b'raw on fd 1')\n"
                           "    subprocess.run([sys.executable, '-c', 'print(1)'])\n    print('print')\n"
                           "    return x\n"), process=True),
    Case("node-outlives-its-timeout-thread", ["run", "wf.yaml", "--json", "--grace", "0.2"], 1,
         "did not finish within its timeout",
         files=python_node("import time\ndef f(x):\n    time.sleep(60)\n", ", timeout: 0.3"), process=True),
    Case("node-markup-in-output-and-names", ["run", "wf.yaml", "--run-id", "id[/]"], 0, "[/]",
         files=python_node("def f(x):\n    return '[/] [bold]'\n", workflow_name="'wf [/]'")),
    Case("node-error-markup-then-status", ["status", "r"], 0, "bad [/] and [red]x[/red] \\x1b[31m",
         files=python_node("def f(x):\n    raise RuntimeError('bad [/] and [red]x[/red] \\x1b[31m')\n"),
         before=(["run", "wf.yaml", "--run-id", "r"],)),
    Case("node-output-terminal-escapes", ["run", "wf.yaml"], 0, "a\\x1b]0;title\\x07",
         files=python_node("def f(x):\n    return 'a\\x1b]0;title\\x07\\x9bz'\n")),
    Case("simulate-execute-5000-digits", ["simulate", "wf.yaml", "--execute"], 1, "not JSON",
         files=python_node("def f(x):\n    return 10 ** 5000\n")),
    Case("simulate-execute-nan-json", ["simulate", "wf.yaml", "--execute", "--json"], 1, "not JSON",
         files=python_node("def f(x):\n    return float('nan')\n")),
    Case("simulate-execute-1000-deep-json", ["simulate", "wf.yaml", "--execute", "--json"], 1, "nested more than",
         files=python_node(NESTED_1000)),
    Case("simulate-execute-unprintable-output", ["simulate", "wf.yaml", "--execute", "--json"], 1, "not JSON",
         files=python_node("class Odd:\n    def __repr__(self):\n        raise RuntimeError\n"
                           "def f(x):\n    return Odd()\n")),
    Case("simulate-execute-odd-port-names", ["simulate", "wf.yaml", "--execute"], 0, "→ null, 3",
         files=python_node("from scheduler_core import Ports\ndef f(x):\n    return Ports({None: 1, 3: 2})\n")),
    # -- answers and cancels ------------------------------------------------------------------------------
    Case("answer-not-json", ["resume", "w", "--node", "ask", "--port", "ship", "--input", "yes"], 2,
         "--input must be JSON", before=WAITING),
    Case("answer-nan", ["resume", "w", "--node", "ask", "--port", "ship", "--input", "NaN"], 2, "NaN", before=WAITING),
    Case("answer-nested-too-deep", ["resume", "w", "--node", "ask", "--port", "ship", "--input", "[" * 500 + "]" * 500],
         2, "--input is nested", before=WAITING),
    Case("answer-without-input", ["resume", "w", "--node", "ask", "--port", "ship"], 2, "--node needs --input",
         before=WAITING),
    Case("answer-without-node", ["resume", "w", "--input", "1"], 2, "name it with --node", before=WAITING),
    Case("answer-port-without-node", ["resume", "w", "--port", "ship"], 2, "name it with --node", before=WAITING),
    Case("answer-choice-missing", ["resume", "w", "--node", "ask", "--input", "1"], 2, "needs one of the choices",
         before=WAITING),
    Case("answer-choice-not-offered", ["resume", "w", "--node", "ask", "--port", "maybe", "--input", "1", "--json"], 2,
         "needs one of the choices", before=WAITING),
    Case("answer-unknown-node", ["resume", "w", "--node", "zz", "--port", "ship", "--input", "1"], 2, "no node 'zz'",
         before=WAITING),
    Case("answer-node-not-waiting", ["resume", "w", "--node", "b", "--input", "1"], 2, "not waiting",
         before=WAITING),
    Case("answer-item-of-a-plain-node", ["resume", "w", "--node", "ask", "--port", "ship", "--input", "1",
                                         "--item", "3"], 2, "not waiting", before=WAITING),
    Case("answer-item-not-indices", ["resume", "w", "--node", "ask", "--port", "ship", "--input", "1", "--item", "x"],
         2, "--item must be item indices", before=WAITING),
    Case("answer-node-not-utf-8", ["resume", "w", "--node", "\udcff", "--input", "1"], 2, "no node", before=WAITING),
    Case("answer-twice", ["resume", "w", "--node", "ask", "--port", "ship", "--input", "2"], 2, "already finished",
         before=WAITING + (["resume", "w", "--node", "ask", "--port", "hold", "--input", "1"],)),
    Case("answer-finished-run", ["resume", "done", "--node", "a", "--input", "1"], 2, "already finished", before=DONE),
    Case("answer-a-queued-run", ["resume", "q", "--node", "a", "--input", "1"], 2, "not waiting", before=QUEUED),
    Case("answer-while-driven-not-applied-in-time", ["resume", "w", "--node", "ask", "--port", "ship", "--input", "1",
                                                     "--wait", "0.2", "--json"], 3, "has not applied the request",
         before=WAITING + (live_driver("w"),)),
    Case("answer-while-driven-refused-at-once", ["resume", "w", "--node", "ask", "--port", "maybe", "--input", "1",
                                                 "--wait", "0.2"], 2, "needs one of the choices",
         before=WAITING + (live_driver("w"),)),
    Case("resume-while-driven", ["resume", "w"], 2, "is being driven by process", before=WAITING + (live_driver("w"),)),
    Case("cancel-while-driven-not-applied-in-time", ["cancel", "w", "--wait", "0.1", "--json"], 3,
         "has not applied the request", before=WAITING + (live_driver("w"),)),
    Case("cancel-unknown-node", ["cancel", "w", "--node", "zz"], 2, "no node 'zz'", before=WAITING),
    Case("cancel-node-not-utf-8", ["cancel", "w", "--node", "z\udcff"], 2, "no node", before=WAITING),
    Case("cancel-item-not-there", ["cancel", "w", "--node", "ask", "--item", "1"], 2, "no instance ask[1]",
         before=WAITING),
    Case("cancel-node-already-ended", ["cancel", "w", "--node", "first"], 2, "nothing left to cancel",
         before=WAITING),
    Case("cancel-reason-not-utf-8", ["cancel", "w", "--reason", "\udcff"], 0, "cancelled", before=WAITING),
    Case("cancel-twice", ["cancel", "q"], 2, "already finished", before=QUEUED + (["cancel", "q"],)),
    # -- a store changed by hand: refused with a message, never a traceback, never code run ------------
    Case("store-log-not-json", ["status", "done"], 2, "corrupt",
         before=DONE + (sql("UPDATE batches SET events = 'not json' WHERE run_id = 'done' AND idx = 0"),)),
    Case("store-log-unknown-event", ["status", "done", "--json"], 2, "corrupt",
         before=DONE + (sql("UPDATE batches SET events = '[{\"type\": \"Bogus\"}]' WHERE run_id = 'done'"),)),
    Case("store-log-unknown-node", ["status", "done"], 2, "corrupt",
         before=DONE + (sql("UPDATE batches SET events = replace(events, '\"node\": \"a\"', '\"node\": \"zz\"')"),)),
    Case("store-log-node-a-list", ["status", "done"], 2, "corrupt",
         before=DONE + (sql("UPDATE batches SET events = replace(events, '\"node\": \"a\"', '\"node\": [1]')"),)),
    Case("store-definition-changed", ["resume", "w", "--node", "ask", "--port", "ship", "--input", "1"], 2,
         "changed by hand", before=WAITING + (sql("UPDATE definitions SET definition = "
                                                  "replace(definition, 'noop', 'delay')"),)),
    Case("store-options-not-a-mapping", ["status", "w"], 2, "corrupt",
         before=WAITING + (sql("UPDATE runs SET options = '[1]'"),)),
    Case("store-options-null-resume", ["resume", "w", "--node", "ask", "--port", "ship", "--input", "1"], 2, "corrupt",
         before=WAITING + (sql("UPDATE runs SET options = 'null'"),)),
    Case("store-snapshot-garbage", ["status", "w"], 0, "waiting",
         before=WAITING + (sql("INSERT OR REPLACE INTO snapshots VALUES ('w', 1, '3', 'garbage')"),)),
    Case("store-inbox-body-not-json", ["resume", "w"], 3, "waiting",
         before=WAITING + (sql("INSERT INTO inbox (run_id, at, kind, body) VALUES ('w', 1.0, 'answer', 'x')"),)),
    Case("store-inbox-unknown-kind", ["resume", "w"], 3, "waiting",
         before=WAITING + (sql("INSERT INTO inbox (run_id, at, kind, body) VALUES ('w', 1.0, 'explode', '{}')"),)),
    Case("store-inbox-answer-without-node", ["resume", "w", "--json"], 3, "waiting",
         before=WAITING + (sql("INSERT INTO inbox (run_id, at, kind, body) VALUES ('w', 1.0, 'answer', '{}')"),)),
    Case("store-inbox-time-not-a-number", ["resume", "w"], 3, "waiting",
         before=WAITING + (sql("INSERT INTO inbox (run_id, at, kind, body) VALUES ('w', 'x', 'cancel', '{}')"),)),
    Case("store-lease-heartbeat-not-a-number", ["status", "w"], 0, "waiting",
         before=WAITING + (sql("INSERT OR REPLACE INTO leases VALUES ('w', 'x', 'h', 't', 'y')"),)),
    Case("store-summary-time-not-a-number", ["runs"], 0, "done",
         before=DONE + (sql("UPDATE runs SET started_at = 'x'"),)),
    Case("store-snapshot-a-pickle", ["status", "w"], 0, "waiting",
         before=WAITING + (lambda workdir, db: sql(
             "INSERT OR REPLACE INTO snapshots VALUES ('w', 1, '3', ?)")(workdir, db, _pickle_that_touches(workdir)),),
         after=lambda workdir: not (workdir / "PWNED").exists()),
    Case("store-read-of-another-apps-sqlite", ["runs", "--db", "other.db", "--json"], 2, "not a flowcore store",
         before=(lambda workdir, db: sql("CREATE TABLE t (x)")(workdir, workdir / "other.db"),),
         after=lambda workdir: _tables_and_journal(workdir / "other.db") == ({"t"}, "delete")),
    Case("store-status-made-up", ["runs", "--json"], 0, "exploded",
         before=DONE + (sql("UPDATE runs SET status = 'exploded'"),)),
]


def _names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


_names_are_unique()


# -- running a case ------------------------------------------------------------------------------

class CaseHung(BaseException):
    """Raised by the watchdog in the case's command: it took longer than IN_PROCESS_SECONDS."""


def _watchdog(signum, frame):
    raise CaseHung(f"no answer within {IN_PROCESS_SECONDS} s")


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def _write_files(case: Case, workdir: Path, module: str) -> None:
    for name, content in {**SHARED, **case.files}.items():
        path = workdir / name.replace("{mod}", module)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{mod}", module), encoding="utf-8")


def _message_lines(stderr: str) -> list:
    """Standard error without argparse's usage block (which names every option of the command)."""
    lines = stderr.splitlines()
    if lines and lines[0].startswith("usage:"):
        lines = [line for line in lines if line.startswith("flowcore") and ": error:" in line]
    return [line for line in lines if line.strip()]


def _runs_left_running(db: Path) -> list:
    """Runs stored ``running`` that no live process other than this one drives."""
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        try:
            rows = conn.execute("SELECT r.run_id, l.pid, l.host, l.token FROM runs r LEFT JOIN leases l "
                                "USING (run_id) WHERE r.status = 'running'").fetchall()
        except sqlite3.DatabaseError:
            return []  # not a flowcore store (a case's other application's file)
    finally:
        conn.close()
    left = []
    for run_id, pid, host, token in rows:
        live = (type(pid) is int and pid != os.getpid() and token is not None
                and driver_alive(Lease(pid=pid, host=host, token=token)))
        if not live:
            left.append(run_id)
    return left


class _Output:
    """Standard output and error as a process has them, for a command run in this one: file
    descriptors 1 and 2 go to files (a node's ``os.write(1, ...)`` is caught too), and ``sys.stdout``
    encodes strictly as UTF-8 (``sys.stderr`` with backslashes for what it cannot encode), as
    Python's own do. pytest's capture would replace what cannot be encoded, and hide the crash."""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
        self.saved = [os.dup(1), os.dup(2)]
        self.streams = sys.stdout, sys.stderr
        for fd, f in zip((1, 2), self.files):
            os.dup2(f.fileno(), fd)
        sys.stdout = io.TextIOWrapper(open(os.dup(1), "wb"), encoding="utf-8", errors="strict", line_buffering=True)
        sys.stderr = io.TextIOWrapper(open(os.dup(2), "wb"), encoding="utf-8", errors="backslashreplace",
                                      line_buffering=True)
        return self

    def __exit__(self, *exc):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.close()
            except (OSError, ValueError):
                pass
        sys.stdout, sys.stderr = self.streams
        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)
            os.close(saved)
        self.text = []
        for f in self.files:
            f.seek(0)
            self.text.append(f.read().decode("utf-8", errors="backslashreplace"))
            f.close()


def _in_process(argv: list) -> tuple:
    previous = signal.signal(signal.SIGALRM, _watchdog)
    signal.setitimer(signal.ITIMER_REAL, IN_PROCESS_SECONDS)
    try:
        with _Output() as output:
            try:
                code = main(list(argv))
            except SystemExit as exc:  # argparse
                code = exc.code
            except CaseHung:
                code = "hung"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    out, err = output.text
    return code, out, err


def _in_a_process(argv: list, workdir: Path, env: dict) -> tuple:
    try:
        done = subprocess.run([sys.executable, "-m", "adapters.cli", *argv], cwd=workdir, env=env,
                              capture_output=True, timeout=PROCESS_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"flowcore {' '.join(argv)[:200]} did not end within {PROCESS_SECONDS} s")
    return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLOWCORE_DB", str(tmp_path / "flowcore.db"))
    yield tmp_path
    while _CHILDREN:
        child = _CHILDREN.pop()
        child.kill()
        child.wait()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_input_gets_a_clear_answer(case: Case, workdir: Path):
    module = "corpus_" + "".join(c if c.isalnum() else "_" for c in case.name)
    _write_files(case, workdir, module)
    db = workdir / "flowcore.db"
    try:
        for step in case.before:
            if callable(step):
                step(workdir, db)
            else:
                _in_process(step)
        if case.process:
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
            code, out, err = _in_a_process(case.argv, workdir, env)
        else:
            code, out, err = _in_process(case.argv)
    finally:
        sys.modules.pop(module, None)

    shown = f"exit {code}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
    assert "Traceback" not in err, shown
    assert "Traceback" not in out or "--json" in case.argv, shown  # a record keeps its node's traceback as data
    assert code == case.code, shown
    for phrase in (case.says,) if isinstance(case.says, str) else case.says:
        assert phrase in err + out, shown
    lines = _message_lines(err)
    if code == 2:
        assert 1 <= len(lines) <= case.lines and len(err) <= 2000, shown  # a few short lines
        assert not out.strip() or "--json" in case.argv, shown
    if "--json" in case.argv and (out.strip() or code in (0, 1)):
        _strict_json(out)  # one value, and only JSON: no NaN, no stray line before or after
    if "--json" not in case.argv:
        assert not any(c in out + err for c in "\x1b\x07\x9b"), shown  # what a run supplies is shown escaped
    left = _runs_left_running(db)
    assert not left, f"left running with no process driving them: {left}\n{shown}"
    if case.after is not None:
        assert case.after(workdir), shown
