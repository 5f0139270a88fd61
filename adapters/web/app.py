"""The HTTP side of ``flowcore serve``: the JSON API (DESIGN.md, "Server and web pages"), server-sent
events, and the pages.

Why FastAPI: the OpenAPI document comes from the typed request models, and the same models turn a
body of the wrong shape into a 422 before any of our code sees it; it is Starlette underneath (ASGI,
streaming responses for the events), served by uvicorn.

The server reads the store, and writes to it only through a run's inbox (answers, cancels: the
process driving the run applies them) and ``Engine.submit`` (new runs, from the workflow files of
``--workflows DIR`` only: nothing in a request is ever a workflow or code).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import math
import os
import threading
import time
from typing import Any, Literal

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import inbox
from ..engine import Engine
from ..inbox import RequestPending, answer_problem
from ..nodes import nesting_problem
from ..recovery import RunRefused
from ..store import ENDED, StoreError, UnknownRun
from ..workflow_file import WorkflowError, load_workflow
from . import pages
from .view import run_view

COOKIE = "flowcore_token"
STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "cancelled")
APPLY_WAIT = 5.0  # seconds an answer or cancel waits for the process driving the run to apply it
EVENTS_POLL = 0.25  # seconds between two looks at a run whose events a page follows
RUN_ID_CHARS = 200
RUNS_SHOWN = 500  # the runs list shows the newest; filters narrow it


class Answer(BaseModel):
    """An answer to a waiting ``hil`` (``port``: one of its choices) or ``wait``."""
    model_config = ConfigDict(extra="forbid")
    node: str = Field(max_length=500)
    item: list[int] | None = None
    port: str | None = Field(default=None, max_length=500)
    input: Any = None


class Cancel(BaseModel):
    """Cancel the whole run (no ``node``), or one node's instances that have not ended (or one ``item``)."""
    model_config = ConfigDict(extra="forbid")
    node: str | None = Field(default=None, max_length=500)
    item: list[int] | None = None
    reason: str | None = Field(default=None, max_length=2000)


class NewRun(BaseModel):
    """A new run of a workflow of ``--workflows DIR``: its trigger (any JSON) and, optionally, its id."""
    model_config = ConfigDict(extra="forbid")
    trigger: Any = None
    run_id: str | None = Field(default=None, min_length=1, max_length=RUN_ID_CHARS)


class Outcome(BaseModel):
    """What became of a request: ``applied`` (the run as it is now in ``run``), or ``pending`` (202: no
    process applied it yet; it stays in the run's inbox and is applied when one drives the run)."""
    state: Literal["applied", "pending"]
    message: str
    run: dict | None = None


class Created(BaseModel):
    run_id: str
    status: str


class RunSummary(BaseModel):
    run_id: str
    workflow: str
    status: str
    started_at: float | None
    finished_at: float | None


class WorkflowInfo(BaseModel):
    name: str
    file: str
    nodes: int | None
    problems: list[str]


def _problem(value) -> str | None:
    """Why a value from a request cannot be kept as JSON text, or None."""
    problem = nesting_problem(value)
    if problem:
        return f"is {problem}"
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            return "holds a number that is not finite (JSON has no NaN or Infinity)"
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return "holds text that is not valid UTF-8"
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return None


def _check(value, what: str) -> None:
    problem = _problem(value)
    if problem:
        raise HTTPException(422, f"{what} {problem}")


def _text(value: str, what: str) -> str:
    if _problem(value):
        raise HTTPException(404, f"no {what} {value!r}")
    return value


def _loopback_host(host: str) -> bool:
    """Whether a Host header names a loopback address (``127.0.0.1:8765``, ``localhost``, ``[::1]:8765``)."""
    from .commands import is_loopback

    if host.startswith("["):
        name = host[1:host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        name = host.split(":")[0]
    else:
        name = host  # a name without a port, or a bare IPv6 address
    return is_loopback(name)


class Server:
    """What the app serves: one engine over one store, the workflows directory, the token."""

    def __init__(self, engine: Engine, workflows: str | None = None, token: str | None = None):
        self.engine = engine
        self.workflows = workflows
        self.token = token or None
        # set when the server is asked to stop: event streams end at their next look, so none is
        # still open (and cancelled, with a traceback) when the server's grace period runs out
        self.closing = threading.Event()

    @property
    def store(self):
        return self.engine.store

    def info(self, run_id: str):
        _text(run_id, "run")
        try:
            return self.store.info(run_id)
        except UnknownRun:
            raise HTTPException(404, f"no run {run_id!r}") from None

    def view(self, run_id: str) -> dict:
        self.info(run_id)
        try:
            return run_view(self.store, run_id)
        except RunRefused as exc:
            raise HTTPException(409, str(exc)) from None

    def workflow_files(self) -> dict[str, tuple[str, object]]:
        """name -> (file, workflow or WorkflowError) of each workflow file in --workflows DIR."""
        found: dict[str, tuple[str, object]] = {}
        if not self.workflows or not os.path.isdir(self.workflows):
            return found
        for entry in sorted(os.listdir(self.workflows)):
            if not entry.endswith((".yaml", ".yml", ".json")) or entry.startswith("."):
                continue
            path = os.path.join(self.workflows, entry)
            try:
                wf = load_workflow(path)
            except WorkflowError as exc:
                found.setdefault(os.path.splitext(entry)[0], (path, exc))
                continue
            found.setdefault(wf.name, (path, wf))
        return found


def create_app(server: Server) -> FastAPI:
    app = FastAPI(title="flowcore", version="1", docs_url=None, redoc_url=None,  # their pages load from a CDN
                  description="Watch runs, answer approvals, cancel, and start runs of the server's workflows.")
    app.state.server = server

    @app.middleware("http")
    async def need_token(request: Request, call_next):
        if server.token is None:
            # no token: the server listens on loopback, and serves only requests addressed to a
            # loopback name, so a web page whose name was pointed at 127.0.0.1 (DNS rebinding)
            # cannot answer or cancel runs through a visitor's browser
            if not _loopback_host(request.headers.get("host", "")):
                return JSONResponse({"detail": "this server answers only requests to a loopback address "
                                               "(127.0.0.1, localhost); give it a token to serve others"},
                                    status_code=403)
            return await call_next(request)
        given = request.query_params.get("token")
        if given is not None and request.method == "GET" and not request.url.path.startswith("/api/"):
            if hmac.compare_digest(given.encode(), server.token.encode()):  # a page: keep it in a cookie
                response = RedirectResponse(request.url.remove_query_params("token"), status_code=303)
                response.set_cookie(COOKIE, server.token, httponly=True, samesite="strict")
                return response
        header = request.headers.get("authorization", "")
        sent = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        if not hmac.compare_digest(sent.encode("utf-8", "replace"), server.token.encode()):
            if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
                return JSONResponse({"detail": "a token is needed: Authorization: Bearer TOKEN"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            return HTMLResponse(pages.need_token(), status_code=401)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()]
        return JSONResponse({"detail": "invalid request", "problems": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # FastAPI's own, for a body it cannot read: not UTF-8, or nested too deep
            return JSONResponse({"detail": "invalid request", "problems": [
                "body: cannot be read as JSON (it is not UTF-8, or it is nested too deep to parse)"]}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(StoreError)
    async def store_failed(request: Request, exc: StoreError):
        return JSONResponse({"detail": f"the store failed: {exc}"}, status_code=503)

    # -- the API --------------------------------------------------------------------------------

    @app.get("/api/runs", response_model=list[RunSummary], tags=["runs"])
    def list_runs(status: Literal["queued", "running", "waiting", "succeeded", "failed", "cancelled"] | None = None,
                  workflow: str | None = Query(default=None, max_length=500),
                  limit: int | None = Query(default=None, ge=1, le=100_000)):
        """Run summaries, oldest first (the newest ``limit``), as ``flowcore runs --json``."""
        if workflow is not None and _problem(workflow):
            return []
        return server.engine.runs(status=status, workflow=workflow, limit=limit)

    @app.get("/api/runs/{run_id:path}/view", tags=["pages"])
    def get_view(run_id: str) -> dict:
        """What the run page shows: the run, each attempt with its times, the waits, inputs and log
        lines per instance, the graph's layout."""
        return server.view(run_id)

    @app.get("/api/runs/{run_id:path}/events", tags=["runs"],
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "a `record` event per record change (the record as in "
                                             "GET /api/runs/{id}), a `run` event (the run page's data) "
                                             "after each look that found changes, `end` when the run ends"}})
    async def run_events(run_id: str, request: Request):
        """Server-sent events: a ``run`` event with the page's data each time the run's record
        changes, and ``end`` when the run has ended."""
        server.info(run_id)
        return StreamingResponse(_events(server, run_id, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/workflows", response_model=list[WorkflowInfo], tags=["workflows"])
    def list_workflows():
        """The workflows new runs can be started from (the files of ``--workflows DIR``)."""
        out = []
        for name, (path, wf) in server.workflow_files().items():
            ok = not isinstance(wf, WorkflowError)
            out.append({"name": name, "file": os.path.basename(path), "nodes": len(wf.nodes) if ok else None,
                        "problems": [] if ok else [str(p) for p in wf.problems]})
        return out

    @app.post("/api/workflows/{name}/runs", status_code=201, response_model=Created, tags=["workflows"])
    def start_run(name: str, body: NewRun = Body(default_factory=NewRun)):
        """Submit a new run of workflow ``name`` (queued: the worker starts it)."""
        _check(body.trigger, "trigger")
        if body.run_id is not None and _problem(body.run_id):
            raise HTTPException(422, "run_id is not valid UTF-8 text")
        found = server.workflow_files().get(_text(name, "workflow"))
        if found is None:
            raise HTTPException(404, f"no workflow {name!r} in the server's workflows directory")
        path, wf = found
        if isinstance(wf, WorkflowError):
            raise HTTPException(409, str(wf))
        try:
            run_id = server.engine.submit(path, trigger=body.trigger, run_id=body.run_id, path=os.path.abspath(path))
        except (RunRefused, WorkflowError) as exc:
            raise HTTPException(409, str(exc)) from None
        return {"run_id": run_id, "status": "queued"}

    @app.post("/api/runs/{run_id:path}/answers", response_model=Outcome, tags=["runs"],
              responses={202: {"model": Outcome}, 404: {}, 409: {}})
    def answer(run_id: str, body: Answer):
        """Answer a waiting instance. Written to the run's inbox; the process driving the run (this
        server's worker, or another) applies it. 200 applied, 202 not applied yet, 409 refused."""
        _check(body.input, "input")
        for text, what in ((body.node, "node"), (body.port, "port")):
            if text is not None and _problem(text):
                raise HTTPException(409, f"run {run_id!r} has no such {what}")
        info = server.info(run_id)
        if info.status in ENDED:
            raise HTTPException(409, f"run {run_id!r} has already finished ({info.status}); there is nothing to answer")
        try:
            state = server.engine.status(run_id).state
        except RunRefused as exc:
            raise HTTPException(409, str(exc)) from None
        problem = answer_problem(state, body.node, body.item, body.port)
        if problem:
            raise HTTPException(409, f"run {run_id!r}: {problem}")
        seq = server.store.post(run_id, "answer", {"node": body.node, "item": list(inbox.item_path(body.item)),
                                                   "port": body.port, "value": body.input}, at=time.time())
        request = inbox.await_request(server.store, run_id, seq, APPLY_WAIT)
        if request.state == "refused":
            raise HTTPException(409, f"run {run_id!r}: {request.reason}")
        if request.state == "pending":
            return JSONResponse(status_code=202, content={
                "state": "pending", "run": None,
                "message": "no process has applied the answer yet; it stays in the run's inbox and is applied when "
                           "a worker drives the run"})
        return {"state": "applied", "message": "answered", "run": server.view(run_id)["run"]}

    @app.post("/api/runs/{run_id:path}/cancel", response_model=Outcome, tags=["runs"],
              responses={202: {"model": Outcome}, 404: {}, 409: {}})
    def cancel(run_id: str, body: Cancel = Body(default_factory=Cancel)):
        """Cancel the run, or a node (an item) of it, wherever it is. 200 applied, 202 not applied yet,
        409 refused (the run has ended, the node has nothing left to cancel)."""
        for text, what in ((body.node, "node"), (body.reason, "reason")):
            if text is not None and _problem(text):
                raise HTTPException(422, f"{what} is not valid UTF-8 text")
        if body.item is not None and body.node is None:
            raise HTTPException(422, "item names an item of a node: give node too")
        server.info(run_id)
        try:
            result = server.engine.cancel(run_id, node=body.node, item=body.item, reason=body.reason, wait=APPLY_WAIT)
        except RequestPending as exc:
            return JSONResponse(status_code=202, content={"state": "pending", "message": str(exc), "run": None})
        except RunRefused as exc:
            raise HTTPException(409, str(exc)) from None
        return {"state": "applied", "message": "cancelled", "run": result.to_dict()}

    # declared after the routes below a run (a run id may hold a slash: {run_id:path})
    @app.get("/api/runs/{run_id:path}", tags=["runs"])
    def get_run(run_id: str) -> dict:
        """The run as ``flowcore status RUN_ID --json`` prints it."""
        server.info(run_id)
        try:
            return server.engine.status(run_id).to_dict()  # what status --json does
        except RunRefused as exc:
            raise HTTPException(409, str(exc)) from None

    # -- pages ----------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def runs_page(status: str | None = None, workflow: str | None = None):
        runs = server.engine.runs(status=status if status in STATUSES else None,
                                  workflow=workflow if workflow and not _problem(workflow) else None,
                                  limit=RUNS_SHOWN + 1)
        startable = [name for name, (_, wf) in server.workflow_files().items() if not isinstance(wf, WorkflowError)]
        return pages.runs_page(list(reversed(runs))[:RUNS_SHOWN], more=len(runs) > RUNS_SHOWN, workflows=startable,
                               status=status if status in STATUSES else "", workflow=workflow or "")

    @app.get("/runs/{run_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(run_id: str):
        try:
            view = server.view(run_id)
        except HTTPException as exc:  # a page, for a person: not the API's JSON
            title = "No such run" if exc.status_code == 404 else "This run cannot be shown"
            return HTMLResponse(pages.problem(title, str(exc.detail)), status_code=exc.status_code)
        return pages.run_page(view, live=True)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        asset = pages.asset(name)
        if asset is None:
            raise HTTPException(404, "no such file")
        text, media = asset
        return HTMLResponse(text, media_type=media)

    return app


async def _events(server: Server, run_id: str, request: Request):
    """One ``run`` event with the page's data each time the run's summary or log grows, preceded (after
    the first) by one ``record`` event per record that changed since the last (the record as in the
    ``--json`` object); ``end`` once it has ended. A look costs one read of the run's summary and of
    the steps logged since the last."""
    seen = -1
    status = None
    records: dict | None = None  # (node, item) -> the record as last sent
    last_beat = time.monotonic()
    while True:
        if server.closing.is_set() or await request.is_disconnected():
            return  # (a page following the run says it is reconnecting)
        try:
            info, batches, _ = await asyncio.to_thread(server.store.load, run_id, max(seen, 0))
        except StoreError:
            await asyncio.sleep(EVENTS_POLL)
            continue
        steps = max(seen, 0) + len(batches)
        if steps != seen or info.status != status:
            seen, status = steps, info.status
            try:
                view = await asyncio.to_thread(run_view, server.store, run_id)
            except RunRefused:
                return
            now = {(r["node"], json.dumps(r["item"])): r for r in view["run"]["nodes"]}
            if records is not None:
                for key, record in now.items():
                    if records.get(key) != record:
                        yield f"event: record\ndata: {json.dumps(record, default=str)}\n\n"
            records = now
            yield f"event: run\ndata: {json.dumps(view, default=str)}\n\n"
            last_beat = time.monotonic()
            if info.status in ENDED:
                yield "event: end\ndata: {}\n\n"
                return
        elif time.monotonic() - last_beat > 15:
            yield ": still here\n\n"  # keeps proxies from closing a quiet stream
            last_beat = time.monotonic()
        await asyncio.sleep(EVENTS_POLL)
