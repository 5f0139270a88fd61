"""The pages, rendered with Jinja2 from the templates and static files shipped in this package.

A run page carries its data as JSON in the page; ``run.js`` draws the timeline and the node panel
from it, and, on a live page, follows the run's server-sent events. ``report`` is the same page with
its style and script inlined: one file that needs no network.
"""
from __future__ import annotations

import json
import time
from importlib import resources

import jinja2

STATIC = {"style.css": "text/css", "run.js": "text/javascript", "runs.js": "text/javascript"}

_env = jinja2.Environment(loader=jinja2.PackageLoader("adapters.web", "templates"),
                          autoescape=jinja2.select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)


def _clock(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if isinstance(t, (int, float)) else ""


def _took(run) -> str:
    start, end = run.get("started_at"), run.get("finished_at")
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)):
        return ""
    s = end - start
    return f"{s:.2f} s" if s < 120 else f"{s / 60:.1f} min"


_env.filters["clock"] = _clock
_env.filters["took"] = _took


def asset(name: str) -> tuple[str, str] | None:
    """(text, media type) of a static file, or None."""
    if name not in STATIC:
        return None
    return resources.files("adapters.web").joinpath("static", name).read_text(encoding="utf-8"), STATIC[name]


def _json_in_html(value) -> str:
    """JSON to put inside a <script> element: nothing in it can close the element."""
    return (json.dumps(value, default=str).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def runs_page(runs: list[dict], *, more: bool, workflows: list[str], status: str, workflow: str) -> str:
    return _env.get_template("runs.html").render(runs=runs, more=more, workflows=workflows, status=status,
                                                 workflow=workflow,
                                                 statuses=("queued", "running", "waiting", "succeeded", "failed",
                                                           "cancelled"), inline=False)


def run_page(view: dict, *, live: bool, inline: bool = False) -> str:
    """The run page; ``inline``: style and script inside it (the report), else linked from /static."""
    return _env.get_template("run.html").render(
        v=view, run=view["run"], graph=view["graph"], data=_json_in_html(view), live=live, inline=inline,
        css=asset("style.css")[0] if inline else None,  # type: ignore[index]
        js=asset("run.js")[0] if inline else None)  # type: ignore[index]


def problem(title: str, message: str) -> str:
    """A page that says why the page asked for cannot be shown (an unknown run...)."""
    return _env.get_template("problem.html").render(title=title, message=message, inline=False)


def need_token() -> str:
    return _env.get_template("token.html").render(inline=True, css=asset("style.css")[0])  # type: ignore[index]
