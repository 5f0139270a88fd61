"""``flowcore serve``'s JSON API (DESIGN.md, "Server and web pages"): a real server process where the
process matters (its worker drives runs, SIGTERM stops it, a token guards it), Starlette's
TestClient over the same app for the refusals and for schemathesis, which fuzzes every operation
of the OpenAPI document: no input gets a 500."""
from __future__ import annotations

import json
import urllib.parse
import os
import subprocess
import time

import pytest

pytest.importorskip("fastapi", reason="the web libraries are not installed: pip install -e '.[test]'")

import schemathesis  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

from adapters.engine import Engine  # noqa: E402
from adapters.web.app import Server, create_app  # noqa: E402
from live_nodes import child_env, flowcore  # noqa: E402
from web_support import Api, free_port, served, sse_events, write_workflows  # noqa: E402


@pytest.fixture
def workflows(tmp_path):
    return write_workflows(tmp_path / "workflows")


def test_a_host_other_than_loopback_without_a_token_is_refused(tmp_path):
    env = {k: v for k, v in child_env().items() if k != "FLOWCORE_TOKEN"}
    done = subprocess.run(flowcore("serve", "--db", tmp_path / "s.db", "--host", "0.0.0.0", "--port", "0"),
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "token" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "s.db").exists()


def test_served_run_is_answered_and_finishes_and_matches_status_json(tmp_path, workflows):
    db = str(tmp_path / "s.db")
    with served(db, workflows) as (api, _):
        status, body = api.post("/api/workflows/approval/runs", {"trigger": {"text": "hello"}, "run_id": "a1"})
        assert (status, body) == (201, {"run_id": "a1", "status": "queued"})
        run = api.wait_status("a1", "waiting")  # the server's worker started it; it waits for a person
        assert [r["status"] for r in run["nodes"]] == ["succeeded", "waiting", "pending", "pending"]
        status, body = api.post("/api/runs/a1/answers", {"node": "approve", "port": "reject-me", "input": None})
        assert status == 409 and "reject-me" in body["detail"]
        status, body = api.post("/api/runs/a1/answers", {"node": "approve", "port": "publish", "input": "ok"})
        assert status == 200 and body["state"] == "applied"
        run = api.wait_status("a1", "succeeded")
        publish = next(r for r in run["nodes"] if r["node"] == "publish")
        assert publish["attempts"] == 2 and publish["output"] == {"published": "ok"}
        status, body = api.post("/api/runs/a1/answers", {"node": "approve", "port": "publish", "input": "again"})
        assert status == 409 and "finished" in body["detail"]
    cli = subprocess.run(flowcore("status", "a1", "--db", db, "--json"), env=child_env(), capture_output=True,
                         text=True, timeout=60)
    assert json.loads(cli.stdout) == run  # GET /api/runs/{id} is the --json object


def test_events_follow_a_run_until_it_ends(tmp_path, workflows):
    with served(str(tmp_path / "s.db"), workflows) as (api, _):
        api.post("/api/workflows/approval/runs", {"run_id": "e1"})
        api.wait_status("e1", "waiting")
        import threading

        got: list = []
        reader = threading.Thread(target=lambda: got.extend(sse_events(api.base + "/api/runs/e1/events")))
        reader.start()
        api.post("/api/runs/e1/answers", {"node": "approve", "port": "publish", "input": 1})
        reader.join(30)
        assert not reader.is_alive(), "the event stream did not end with the run"
        final = {r["node"]: r for r in api.run("e1")["nodes"]}
        # a page still follows a waiting run when the server stops: its stream ends, quietly
        api.post("/api/workflows/pause/runs", {"run_id": "e2"})
        api.wait_status("e2", "waiting")
        still_open = threading.Thread(target=sse_events, args=(api.base + "/api/runs/e2/events",))
        still_open.start()
        time.sleep(0.3)  # (the stream has begun)
    still_open.join(10)
    assert not still_open.is_alive(), "an event stream outlived the server"
    names = [name for name, _ in got]
    assert names[0] == "run" and names[-1] == "end"
    statuses = [data["run"]["status"] for name, data in got if name == "run"]
    assert statuses[0] == "waiting" and statuses[-1] == "succeeded"
    assert len(statuses) >= 2  # one per change, not one per look
    # one `record` event per change of a record, each the record as GET /api/runs/{id} has it
    changes = [(data["node"], data["status"]) for name, data in got if name == "record"]
    assert ("approve", "succeeded") in changes and changes.count(("approve", "succeeded")) == 1
    last = {data["node"]: data for name, data in got if name == "record"}
    assert all(final[node] == record for node, record in last.items())
    first = next(data for name, data in got if name == "run")["run"]["nodes"]
    assert {r["node"] for r in first if r["status"] != final[r["node"]]["status"]} <= set(last)


def test_a_token_guards_every_request_and_page(tmp_path, workflows):
    with served(str(tmp_path / "s.db"), workflows, token="s3cret", host="0.0.0.0") as (api, _):
        for path in ("/api/runs", "/api/workflows", "/openapi.json"):
            assert api.get(path, token=None)[0] == 401
            assert api.get(path, token="wrong")[0] == 401
            assert api.get(path)[0] == 200
        assert api.post("/api/workflows/approval/runs", {"run_id": "t1"}, token=None)[0] == 401
        assert api.get("/api/runs/t1", token=None)[0] == 401
        assert api.get("/", token=None)[0] == 401
        import http.cookiejar
        import urllib.request

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        with opener.open(api.base + "/?token=s3cret", timeout=30) as page:  # sets the cookie, then the page
            assert page.status == 200 and "runs" in page.read().decode()
        assert [c.name for c in jar] == ["flowcore_token"]
        with opener.open(api.base + "/api/workflows", timeout=30) as r:
            assert r.status == 200
        assert api.get("/?token=wrong", token=None)[0] == 401


def test_a_second_ctrl_c_while_serve_winds_down_does_not_cut_it_short(tmp_path, monkeypatch, capsys):
    import signal
    import threading
    import urllib.request

    from adapters.cli import main
    from adapters.worker import Worker

    port = free_port()
    stop = Worker.stop

    def stop_then_ctrl_c(self):
        os.kill(os.getpid(), signal.SIGINT)  # an impatient second Ctrl-C, while the worker winds down
        stop(self)
    monkeypatch.setattr(Worker, "stop", stop_then_ctrl_c)

    def first_ctrl_c():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=5).close()
                break
            except OSError:
                time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=first_ctrl_c, daemon=True).start()
    code = main(["serve", "--db", str(tmp_path / "s.db"), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 0 and "interrupted" not in err and err.rstrip().endswith("serve: stopped"), err


# -- the app in process (TestClient) -----------------------------------------------------------

@pytest.fixture
def client(tmp_path, workflows):
    engine = Engine(db=str(tmp_path / "app.db"))
    Engine(store=engine.store).run(os.path.join(workflows, "fanout.yaml"), trigger=[1, 2, 3], run_id="done1")
    with TestClient(create_app(Server(engine, workflows=workflows)), base_url="http://127.0.0.1") as c:
        yield c, engine


def test_unknown_runs_and_workflows_are_404(client):
    c, _ = client
    assert c.get("/api/runs/nope").status_code == 404
    assert c.post("/api/runs/nope/cancel", json={}).status_code == 404
    assert c.post("/api/runs/nope/answers", json={"node": "x"}).status_code == 404
    assert c.post("/api/workflows/nope/runs", json={}).status_code == 404
    assert c.post("/api/workflows/..%2Fapproval/runs", json={}).status_code == 404
    page = c.get("/runs/nope")  # a page for a person, not JSON
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "No such run" in page.text and "no run &#39;nope&#39;" in page.text


def test_refusals_are_409_and_bad_bodies_422(client):
    c, engine = client
    r = c.post("/api/runs/done1/cancel", json={})
    assert r.status_code == 409 and "finished" in r.json()["detail"]
    c.post("/api/workflows/long/runs", json={"run_id": "q1"})
    r = c.post("/api/runs/q1/cancel", json={"node": "no-such-node"})
    assert r.status_code == 409 and "no-such-node" in r.json()["detail"]
    r = c.post("/api/runs/q1/answers", json={"node": "crunch", "input": 1})
    assert r.status_code == 409
    assert c.post("/api/workflows/approval/runs", json={"run_id": "q1"}).status_code == 409  # a taken id
    for bad in ({"trigger": {"x": float("nan")}}, {"run_id": 5}, {"run_id": ""}):
        assert c.post("/api/workflows/approval/runs", content=json.dumps(bad),
                      headers={"Content-Type": "application/json"}).status_code == 422, bad
    for unreadable in (b"{not json", b'{"node": "crunch", "input": "\xff"}',  # not UTF-8
                       b'{"node": "crunch", "input": ' + b"[" * 5000 + b"]" * 5000 + b"}"):  # too deep to parse
        r = c.post("/api/runs/q1/answers", content=unreadable, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"] == "invalid request", unreadable[:40]
    assert c.post("/api/runs/q1/cancel", json={"item": [1]}).status_code == 422
    assert c.get("/api/runs", params={"limit": 0}).status_code == 422
    assert c.get("/api/runs", params={"status": "sleeping"}).status_code == 422


def test_a_workflow_or_code_in_a_request_is_never_run(client, tmp_path):
    c, engine = client
    marker = tmp_path / "ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    before = engine.runs()
    workflow = {"name": "evil", "nodes": [{"id": "x", "type": "python", "call": "os:system",
                                           "params": {"command": f"touch {marker}"}}], "connections": []}
    for body in ({"workflow": workflow}, {"trigger": 1, "definition": workflow}, {"code": code},
                 {"trigger": 1, "call": "os:system"}):
        assert c.post("/api/workflows/approval/runs", json=body).status_code == 422, body
        assert c.post("/api/runs/done1/answers", json={"node": "approve", **body}).status_code == 422
    assert c.post("/api/workflows/evil/runs", json={"trigger": workflow}).status_code == 404
    # as data, code is only data: a trigger and an answer are stored as they are, never evaluated
    assert c.post("/api/workflows/fanout/runs", json={"trigger": [code], "run_id": "d1"}).status_code == 201
    engine.resume("d1")
    assert engine.status("d1").to_dict()["nodes"][1]["output"] == code
    assert not marker.exists()
    assert {r["run_id"] for r in engine.runs()} - {r["run_id"] for r in before} == {"d1"}


def test_the_run_view_has_a_bar_per_attempt(client):
    c, engine = client
    view = c.get("/api/runs/done1/view").json()
    assert view["run"] == c.get("/api/runs/done1").json()
    attempts = [a for a in view["attempts"] if a["kind"] == "attempt"]
    assert sorted(a["name"] for a in attempts) == ["collect", "each[0]", "each[1]", "each[2]", "items"]
    assert view["instances"]["each[1]"]["input"] == 2
    assert {n["id"]: n["status"] for n in view["graph"]["nodes"]} == {"items": "succeeded", "each": "succeeded",
                                                                     "collect": "succeeded"}
    events = c.get("/api/runs/done1/events")  # an ended run: its state, then the end
    assert [line for line in events.text.splitlines() if line.startswith("event:")] == ["event: run", "event: end"]


def _points(path: str, samples: int = 20) -> list[tuple[float, float]]:
    """Points along an SVG path of M, C and L commands (what ``graph_view`` draws)."""
    import re

    points, at = [], None
    for command, numbers in re.findall(r"([MCL])([^MCL]*)", path):
        xy = [tuple(map(float, pair.split(","))) for pair in numbers.split()]
        if command == "M":
            at = xy[0]
            continue
        ends = [at, *xy] if command == "C" else [at, xy[0], xy[0], xy[0]]
        for i in range(samples + 1):
            t = i / samples
            weights = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3)
            points.append(tuple(sum(w * p[k] for w, p in zip(weights, ends)) for k in (0, 1)))
        at = xy[-1]
    return points


def test_no_edge_of_the_graph_is_drawn_across_a_node_it_does_not_join():
    from adapters.web.view import graph_view
    from adapters.workflow_file import compiled, load_workflow

    # bottom -> done skips the layer of `again`, and went straight through it
    example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "patterns",
                           "wcp22_recursion.yaml")
    view = graph_view(compiled(load_workflow(example), max_parallel=8), [])
    boxes = {n["id"]: n for n in view["nodes"]}
    for edge in view["edges"]:
        for node in boxes.values():
            if node["id"] in (edge["from"], edge["to"]):
                continue
            inside = [(x, y) for x, y in _points(edge["path"])
                      if node["x"] < x < node["x"] + node["w"] and node["y"] < y < node["y"] + node["h"]]
            assert not inside, f"the edge {edge['from']} -> {edge['to']} crosses node {node['id']}"


def test_what_follows_a_loop_is_drawn_below_its_body():
    from adapters.web.view import graph_view
    from adapters.workflow_file import compiled, load_workflow

    example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "patterns",
                           "wcp21_structured_loop.yaml")
    y = {n["id"]: n["y"] for n in graph_view(compiled(load_workflow(example), max_parallel=8), [])["nodes"]}
    assert y["review"] < y["review.draft"] < y["review.check"] < y["publish"]  # publish runs after the loop


# -- every operation of the OpenAPI document, fuzzed ------------------------------------------

def _fuzzed_app(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    workflows = write_workflows(base / "workflows")
    engine = Engine(db=str(base / "fuzz.db"))
    engine.run(os.path.join(workflows, "fanout.yaml"), trigger=[1, 2], run_id="done1")
    engine.submit(os.path.join(workflows, "approval.yaml"), run_id="queued1")
    app = create_app(Server(engine, workflows=workflows))

    async def addressed_to_loopback(scope, receive, send):  # schemathesis's client asks for host "testserver"
        if scope["type"] == "http":
            scope = dict(scope, headers=[(k, b"127.0.0.1" if k == b"host" else v) for k, v in scope["headers"]])
        await app(scope, receive, send)
    return addressed_to_loopback


FUZZ_APP = None


def _schema(tmp_path_factory):
    """The app's OpenAPI document as schemathesis reads it (its pytest plugin does not run under this
    pytest: the operations' strategies are used with hypothesis directly)."""
    global FUZZ_APP
    if FUZZ_APP is None:
        FUZZ_APP = _fuzzed_app(tmp_path_factory)
    return schemathesis.openapi.from_asgi("/openapi.json", FUZZ_APP)


OPERATIONS = ["GET /api/runs", "GET /api/runs/{run_id}", "GET /api/runs/{run_id}/view", "GET /api/workflows",
              "POST /api/workflows/{name}/runs", "POST /api/runs/{run_id}/answers", "POST /api/runs/{run_id}/cancel"]


def test_the_openapi_document_lists_the_api(tmp_path_factory):
    labels = {op.ok().label for op in _schema(tmp_path_factory).get_all_operations()}
    assert labels == set(OPERATIONS) | {"GET /api/runs/{run_id}/events"}  # the stream: tested above


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_input_gets_a_500(label, tmp_path_factory):
    operation = _schema(tmp_path_factory).find_operation_by_label(label)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy())
    def check(case):
        response = case.call()
        assert response.status_code < 500, f"{case.method} {case.formatted_path} {case.body!r}: {response.text[:500]}"
    check()


def test_report_writes_one_file_and_refuses_an_unknown_run(client, tmp_path):
    c, engine = client
    db = engine.store.path
    done = subprocess.run(flowcore("report", "done1", "--db", db, "-o", "-"), env=child_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    html = done.stdout
    assert html.startswith("<!doctype html>") and "<svg" in html and "FlowcoreRun.start(false)" in html
    assert 'src="' not in html and "<link" not in html  # nothing to fetch: style and script are inline
    assert "each[2]" in html  # the data of every instance
    done = subprocess.run(flowcore("report", "nope", "--db", db, "-o", tmp_path / "x.html"), env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "nope" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.html").exists()


def test_without_a_token_only_requests_to_a_loopback_name_are_served(tmp_path, workflows):
    """A page on another site whose name resolves to 127.0.0.1 (DNS rebinding) gets nothing."""
    engine = Engine(db=str(tmp_path / "h.db"))
    app = create_app(Server(engine, workflows=workflows))
    for base, status in (("http://127.0.0.1:8765", 200), ("http://localhost", 200), ("http://[::1]:8765", 200),
                         ("http://evil.example", 403), ("http://evil.example:8765", 403)):
        with TestClient(app, base_url=base) as c:
            assert c.get("/api/runs").status_code == status, base
            assert c.post("/api/workflows/long/runs", json={}).status_code == (201 if status == 200 else 403)


def test_serve_refuses_a_busy_port_and_a_missing_workflows_dir(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(flowcore("serve", "--db", tmp_path / "s.db", "--port", port), env=child_env(),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run(flowcore("serve", "--db", tmp_path / "s.db", "--workflows", tmp_path / "nowhere"),
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "nowhere" in done.stderr


def test_the_runs_page_shows_the_newest_runs_and_says_so(client, monkeypatch):
    from adapters.web import app as web_app

    c, engine = client
    for i in range(3):
        engine.submit(os.path.join(engine.store.path.rsplit("/", 1)[0], "workflows", "long.yaml"), run_id=f"n{i}")
    monkeypatch.setattr(web_app, "RUNS_SHOWN", 2)
    page = c.get("/").text
    assert "n2" in page and "n1" in page and "n0" not in page and "The newest 2 runs are shown" in page
    page = c.get("/", params={"status": "succeeded"}).text
    assert "done1" in page and "n2" not in page and "newest" not in page


def test_the_api_over_a_postgresql_store(postgres_url, workflows):
    engine = Engine(db=postgres_url)
    engine.run(os.path.join(workflows, "fanout.yaml"), trigger=[1, 2], run_id="pg1")
    engine.submit(os.path.join(workflows, "long.yaml"), run_id="pg2")
    with TestClient(create_app(Server(engine, workflows=workflows)), base_url="http://127.0.0.1") as c:
        assert [r["run_id"] for r in c.get("/api/runs").json()] == ["pg1", "pg2"]
        assert c.get("/api/runs/pg1").json() == json.loads(json.dumps(engine.status("pg1").to_dict()))
        assert "event: end" in c.get("/api/runs/pg1/events").text
        assert c.post("/api/runs/pg2/cancel", json={"reason": "not now"}).json()["run"]["status"] == "cancelled"
        assert "each[1]" in c.get("/runs/pg1").text


def test_a_run_id_with_a_slash_a_space_and_a_question_mark_is_reachable(client, workflows):
    c, engine = client
    odd = "team/a b?c#é"
    engine.submit(os.path.join(workflows, "long.yaml"), run_id=odd)
    quoted = urllib.parse.quote(odd, safe="")
    assert c.get(f"/api/runs/{quoted}").json()["run_id"] == odd
    assert c.get(f"/api/runs/{quoted}/view").json()["run"]["run_id"] == odd
    page = c.get(f"/runs/{quoted}")
    assert page.status_code == 200 and "team/a b?c#é" in page.text
    assert c.post(f"/api/runs/{quoted}/cancel", json={}).json()["run"]["status"] == "cancelled"
    assert "event: end" in c.get(f"/api/runs/{quoted}/events").text
    assert f'href="/runs/{urllib.parse.quote(odd, safe="/")}"' in c.get("/").text.replace("%3F", "%3F")
