"""The pages in a real browser: Debian's Chromium (/usr/bin/chromium), driven by Playwright's Python
package with that executable (no browser is ever downloaded), against ``flowcore serve`` running
as a process. Each test saves a screenshot under tests/artifacts/ (ignored by git)."""
from __future__ import annotations

import os
import resource
import subprocess

import pytest

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package; the browser tests "
                           f"must run in CI")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium): the browser tests need Debian's Chromium",
                allow_module_level=True)
_limit = resource.getrlimit(resource.RLIMIT_AS)[0]
if _limit != resource.RLIM_INFINITY and _limit < 64 << 30:
    # Chromium reserves tens of GB of address space up front and dies (SIGTRAP) under `ulimit -v`
    why = (f"Chromium cannot start under an address-space limit (ulimit -v: {_limit >> 20} MB); run the browser "
           f"tests without one")
    if os.environ.get("CI") == "true":
        raise RuntimeError(why)
    pytest.skip(why, allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' (playwright)")

from live_nodes import child_env, flowcore  # noqa: E402
from web_support import served, write_workflows  # noqa: E402

ARTIFACTS = os.path.join(os.path.dirname(__file__), "artifacts")
TIMEOUT = 20_000  # ms a page gets to show what a test waits for


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    workflows = write_workflows(base / "workflows")
    db = str(base / "pages.db")
    with served(db, workflows) as (api, _):
        yield api, db


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    yield page
    context.close()


def shot(page, name: str) -> None:
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"), full_page=True)


def started(api, workflow: str, run_id: str, trigger=None, *, until=("waiting",)) -> dict:
    status, body = api.post(f"/api/workflows/{workflow}/runs", {"trigger": trigger, "run_id": run_id})
    assert status == 201, body
    return api.wait_status(run_id, *until)


def answered(api, run_id: str) -> dict:
    started(api, "approval", run_id, {"draft": run_id})
    assert api.post(f"/api/runs/{run_id}/answers", {"node": "approve", "port": "publish", "input": "ok"})[0] == 200
    return api.wait_status(run_id, "succeeded")


def test_the_runs_list_finds_a_run(server, page):
    api, _ = server
    started(api, "fanout", "list-fanout", [1, 2, 3], until=("succeeded",))
    started(api, "fanout", "list-other", [4], until=("succeeded",))
    page.goto(api.base + "/")
    rows = page.locator("#runs tbody tr[data-run]")
    assert rows.count() >= 2
    page.fill("#search", "list-fan")
    sync_api.expect(page.locator("tr[data-run='list-fanout']")).to_be_visible()
    sync_api.expect(page.locator("tr[data-run='list-other']")).to_be_hidden()
    page.fill("#search", "")
    page.select_option("select[name=status]", "succeeded")
    page.click("form.filters button[type=submit]")
    sync_api.expect(page.locator("tr[data-run='list-fanout'] .badge")).to_have_text("succeeded")
    shot(page, "runs-list")
    page.click("tr[data-run='list-fanout'] a")
    sync_api.expect(page.locator("#run-status")).to_have_text("succeeded")


def test_a_run_page_has_one_timeline_bar_per_attempt(server, page):
    api, _ = server
    run = answered(api, "bars")
    attempts = sum(r["attempts"] for r in run["nodes"] if r["node"] != "approve")  # approve waits, it is no attempt
    assert attempts == 3  # draft once, publish twice (its first attempt fails)
    errors = []  # what the browser's console says went wrong (a request that failed: even the icon's)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{api.base}/runs/bars")
    sync_api.expect(page.locator("#timeline .bar[data-kind=attempt]")).to_have_count(attempts)
    sync_api.expect(page.locator("#timeline .bar[data-kind=wait]")).to_have_count(1)
    sync_api.expect(page.locator("#timeline .bar.s-failed")).to_have_count(1)
    page.click("#graph .node[data-node=publish]")
    sync_api.expect(page.locator("#panel table.attempts tr")).to_have_count(3)  # a header and two attempts
    sync_api.expect(page.locator("#panel")).to_contain_text("attempt 1 fails on purpose")
    sync_api.expect(page.locator("#panel")).to_contain_text('"published": "ok"')
    folded = page.locator("#panel table.attempts details")  # the first attempt's traceback, folded
    sync_api.expect(folded).to_have_count(1)
    folded.locator("summary").click()
    sync_api.expect(folded.locator("pre.tb")).to_contain_text("web_nodes.py")
    sync_api.expect(folded.locator("pre.tb")).to_contain_text("in flaky")
    shot(page, "run-page")
    assert errors == []


def test_approve_on_the_page_and_see_the_run_finish_without_reloading(server, page):
    api, _ = server
    started(api, "approval", "approve-me", {"draft": "hello"})
    page.goto(f"{api.base}/runs/approve-me")
    sync_api.expect(page.locator("#run-status")).to_have_text("waiting")
    sync_api.expect(page.locator("#waiting")).to_contain_text("Publish the draft?")
    sync_api.expect(page.locator("#graph .node[data-node=approve]")).to_have_class("node s-waiting selected")
    shot(page, "waiting-for-approval")
    page.evaluate("window.notReloaded = true")
    page.click("#waiting button[data-choice=publish]")
    sync_api.expect(page.locator("#run-status")).to_have_text("succeeded")
    sync_api.expect(page.locator("#graph .node[data-node=publish]")).to_have_class("node s-succeeded")
    sync_api.expect(page.locator("#graph .node[data-node=drop]")).to_have_class("node s-skipped")
    sync_api.expect(page.locator("#waiting")).to_be_hidden()
    assert page.evaluate("window.notReloaded") is True
    shot(page, "approved")
    assert api.run("approve-me")["status"] == "succeeded"


def test_cancel_a_running_run_from_the_page(server, page):
    api, _ = server
    started(api, "long", "cancel-me", until=("running",))
    page.goto(f"{api.base}/runs/cancel-me")
    sync_api.expect(page.locator("#graph .node[data-node=crunch]")).to_have_class("node s-running")
    page.click("#cancel-run")
    sync_api.expect(page.locator("#cancel-run")).to_have_text("Click again to confirm")
    page.click("#cancel-run")
    sync_api.expect(page.locator("#run-status")).to_have_text("cancelled")
    sync_api.expect(page.locator("#run-error")).to_contain_text("cancelled by request")
    sync_api.expect(page.locator("#cancel-run")).to_be_hidden()
    shot(page, "cancelled")
    assert api.run("cancel-me")["status"] == "cancelled"


def test_a_report_file_shows_graph_and_timeline_with_the_network_blocked(server, page, tmp_path):
    api, db = server
    answered(api, "reported")
    out = tmp_path / "report.html"
    done = subprocess.run(flowcore("report", "reported", "--db", db, "-o", out), env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    requested = []

    def only_the_file(route):
        requested.append(route.request.url)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()
    page.route("**/*", only_the_file)
    page.goto(out.as_uri())
    sync_api.expect(page.locator("#graph .node")).to_have_count(4)
    sync_api.expect(page.locator("#graph .node[data-node=publish]")).to_have_class("node s-succeeded")
    sync_api.expect(page.locator("#timeline .bar[data-kind=attempt]")).to_have_count(3)
    sync_api.expect(page.locator("#cancel-run")).to_have_count(0)  # a report answers nothing
    page.click("#graph .node[data-node=draft]")
    sync_api.expect(page.locator("#panel")).to_contain_text("working for 0.1 s")  # its log line
    shot(page, "report")
    assert requested == [out.as_uri()]  # the page needed nothing else


def test_give_a_wait_its_input_from_the_page(server, page):
    api, _ = server
    started(api, "pause", "pause-me")
    page.goto(f"{api.base}/runs/pause-me")
    ask = page.locator("#waiting [data-waiting=hold]")
    ask.locator("input.note").fill('{"go": true}')
    ask.locator("button").click()
    sync_api.expect(page.locator("#run-status")).to_have_text("succeeded")
    use = next(r for r in api.run("pause-me")["nodes"] if r["node"] == "use")
    assert use["output"] == {"go": True}


def test_what_a_person_types_in_an_answer_survives_a_live_update(server, page):
    api, _ = server
    started(api, "busy_wait", "typing", until=("running",))
    page.goto(f"{api.base}/runs/typing")
    sync_api.expect(page.locator("#live")).to_have_text("● live")
    note = page.locator("#waiting [data-waiting=hold] input.note")
    note.fill('{"go": "on"}')
    # while the person types, the run changes: the page redraws from the new data
    assert api.post("/api/runs/typing/cancel", {"node": "crunch"})[0] == 200
    sync_api.expect(page.locator("#graph .node[data-node=crunch]")).to_have_class("node s-cancelled")
    sync_api.expect(note).to_have_value('{"go": "on"}')
    sync_api.expect(note).to_be_focused()
    page.click("#waiting [data-waiting=hold] button")
    sync_api.expect(page.locator("#run-status")).to_have_text("succeeded")
    hold = next(r for r in api.run("typing")["nodes"] if r["node"] == "hold")
    assert hold["output"] == {"go": "on"}


def test_a_live_update_between_the_two_clicks_of_a_node_cancel_keeps_it_asking(server, page):
    api, _ = server
    started(api, "busy_wait", "confirm", until=("running",))
    page.goto(f"{api.base}/runs/confirm")
    sync_api.expect(page.locator("#live")).to_have_text("● live")
    page.click("#graph .node[data-node=crunch]")
    page.click("#cancel-node")
    sync_api.expect(page.locator("#cancel-node")).to_have_text("Click again to confirm")
    assert api.post("/api/runs/confirm/answers", {"node": "hold", "input": 1})[0] == 200  # the run changes
    sync_api.expect(page.locator("#graph .node[data-node=hold]")).to_have_class("node s-succeeded")
    sync_api.expect(page.locator("#cancel-node")).to_have_text("Click again to confirm")
    page.click("#cancel-node")
    sync_api.expect(page.locator("#run-status")).to_have_text("succeeded")
    sync_api.expect(page.locator("#graph .node[data-node=crunch]")).to_have_class("node s-cancelled selected")
    sync_api.expect(page.locator("#panel .pactions .message")).to_have_text("node cancelled")


def test_a_subworkflow_node_leads_to_its_child_run_and_back(server, page):
    api, _ = server
    started(api, "nest", "nest-1")
    page.goto(f"{api.base}/runs/nest-1")
    sub = page.locator("#graph .node[data-node=sub]")
    sync_api.expect(page.locator("#timeline")).to_contain_text("sub · waits")
    sub.click()
    page.click("#panel a.child-run")
    sync_api.expect(page.locator("#run-status")).to_have_text("waiting")
    assert page.url.endswith("/runs/nest-1/sub")
    sync_api.expect(page.locator("#run-parent")).to_contain_text("child of nest-1 (node sub)")
    page.click("#waiting [data-waiting=hold] button")  # answering the child carries the parent on
    sync_api.expect(page.locator("#run-status")).to_have_text("succeeded")
    api.wait_status("nest-1", "succeeded")
    page.click("#run-parent a")
    sync_api.expect(page.locator("#graph .node[data-node=after]")).to_have_class("node s-succeeded")
    page.wait_for_load_state("load")  # (measured with the page's style applied, not before)
    kind, status = sub.locator(".ntype").bounding_box(), sub.locator(".ncount").bounding_box()
    assert kind["x"] + kind["width"] < status["x"], "the node's type and its status (succeeded) overlap"


def test_cancel_one_node_from_its_panel_and_the_run_goes_on(server, page):
    api, _ = server
    started(api, "long", "node-cancel", until=("running",))
    page.goto(f"{api.base}/runs/node-cancel")
    page.click("#graph .node[data-node=crunch]")
    sync_api.expect(page.locator("#graph .node[data-node=crunch]")).to_have_class("node s-running selected")
    page.click("#cancel-node")
    page.click("#cancel-node")  # the second click confirms
    sync_api.expect(page.locator("#run-status")).to_have_text("succeeded")  # a node cancel is no failure
    sync_api.expect(page.locator("#graph .node[data-node=crunch]")).to_have_class("node s-cancelled selected")
    sync_api.expect(page.locator("#graph .node[data-node=after]")).to_have_class("node s-skipped")
    shot(page, "node-cancelled")


def test_start_a_run_from_the_runs_list(server, page):
    api, _ = server
    page.goto(api.base + "/")
    page.select_option("#start-workflow", "fanout")
    page.fill("#start-trigger", "[7, 8]")
    page.click("#start-form button[type=submit]")
    sync_api.expect(page.locator("#run-status")).to_have_text("succeeded")  # its page, followed live
    run_id = page.url.rsplit("/", 1)[1]
    assert [r["output"] for r in api.run(run_id)["nodes"] if r["node"] == "each"] == [7, 8]
    page.goto(api.base + "/")
    page.fill("#start-trigger", "{not json")
    page.click("#start-form button[type=submit]")
    sync_api.expect(page.locator("#start-message")).to_contain_text("not JSON")


def test_the_runs_list_follows_the_store(server, page):
    api, _ = server
    page.goto(api.base + "/?status=waiting")
    page.evaluate("window.notReloaded = true")
    started(api, "approval", "appears-later", {"draft": "x"})
    row = page.locator("tr[data-run='appears-later']")
    sync_api.expect(row.locator(".badge")).to_have_text("waiting", timeout=10_000)  # it appeared
    page.goto(api.base + "/")
    page.evaluate("window.notReloaded = true")
    assert api.post("/api/runs/appears-later/cancel", {"reason": "changed my mind"})[0] == 200
    sync_api.expect(row.locator(".badge")).to_have_text("cancelled", timeout=10_000)  # its status changed
    assert page.evaluate("window.notReloaded") is True
