"""``flowcore serve`` and ``flowcore report``: their arguments and what they do. The web libraries
(FastAPI, uvicorn) are imported only when ``serve`` runs."""
from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys
import threading
import time

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def add_commands(sub, db_help: str) -> None:
    p = sub.add_parser("serve", help="web pages and a JSON API over the store, with a worker")
    p.add_argument("--db", help=db_help)
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1; any other "
                                                         "needs a token)")
    p.add_argument("--port", type=int, default=8765, help="the port (default 8765; 0: any free one)")
    p.add_argument("--workflows", metavar="DIR", help="the directory of the workflow files new runs may start from "
                                                      "(none: the server starts no runs)")
    p.add_argument("--no-worker", action="store_true", help="drive no runs here (another worker does)")
    p.add_argument("--token", help="the token every request must carry (default: $FLOWCORE_TOKEN); required on "
                                   "a host other than loopback")
    p = sub.add_parser("report", help="write a run's page as one HTML file that needs no network")
    p.add_argument("run_id")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write it (default: RUN_ID.html; - for "
                                                          "standard output)")
    p.add_argument("--db", help=db_help)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cmd_serve(args, out, *, db_path, user_error) -> int:
    token = args.token or os.environ.get("FLOWCORE_TOKEN") or None
    if not is_loopback(args.host) and not token:
        raise user_error(f"--host {args.host} is not a loopback address: anyone who reaches it could answer and "
                         f"cancel runs, so a token is needed (--token TOKEN or FLOWCORE_TOKEN)")
    if args.workflows is not None and not os.path.isdir(args.workflows):
        raise user_error(f"--workflows {args.workflows}: no such directory")
    if not 0 <= args.port <= 65535:
        raise user_error(f"--port {args.port} is not a port number (0 to 65535)")
    try:
        import uvicorn

        from .app import Server, create_app
    except ImportError as exc:
        raise user_error(f"flowcore serve needs the web libraries ({exc.name} is missing): "
                         f"pip install 'flowcore[serve]'") from None
    from rich.console import Console

    from ..engine import Engine
    from ..terminal import visible
    from ..worker import Worker

    err = Console(stderr=True, soft_wrap=True)

    def log(line: str) -> None:
        err.print(visible(f"{time.strftime('%H:%M:%S')} serve: {line}", lines=True), highlight=False, markup=False)

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host.strip("[]"), args.port))
    except OSError as exc:
        raise user_error(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    engine = Engine(db=db_path(args))
    served = Server(engine, workflows=args.workflows, token=token)
    app = create_app(served)
    worker = thread = None
    if not args.no_worker:
        worker = Worker(engine, log=log)
    server = _Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, access_log=False))
    if worker is not None:
        thread = threading.Thread(target=worker.run_forever, name="flowcore-worker", daemon=True)
        thread.start()
    port = sock.getsockname()[1]
    host = f"[{args.host.strip('[]')}]" if family == socket.AF_INET6 else args.host
    log(f"http://{host}:{port}/ over {engine.store.path}" + ("" if worker else " (no worker: another process drives "
                                                                                "the runs)")
        + (", token required" if token else "") + "; stop with Ctrl-C or SIGTERM")
    def stop(signum, frame):  # flags only: the handler may interrupt a thread holding the worker's locks
        server.should_exit = True
        served.closing.set()
        if worker is not None:
            worker.request_stop()
    # SIGINT and SIGTERM stop serving: open event streams end (``closing``), the worker starts nothing
    # new and lets its attempts finish, and the command exits 0. The handler stays until the worker is
    # done, so a second Ctrl-C while it winds down does not cut that short.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])  # until SIGINT or SIGTERM
    finally:
        if worker is not None:
            worker.stop()
            thread.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log("stopped")
    return 0


def _Server(config):
    """uvicorn's server, leaving the signals to ``cmd_serve`` (uvicorn's own handlers would raise the
    signal again once it has stopped, ending the process before the worker is done)."""
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            yield
    return Server(config)


def cmd_report(args, out, *, stored_engine, user_error) -> int:
    from .pages import run_page
    from .view import run_view

    engine = stored_engine(args)
    html = run_page(run_view(engine.store, args.run_id), live=False, inline=True)
    target = args.output or f"{args.run_id.replace('/', '_')}.html"  # (a child run's id has slashes: PARENT/node)
    if target == "-":
        sys.stdout.write(html)
        return 0
    try:
        with open(target, "w", encoding="utf-8") as f:
            f.write(html)
    except OSError as exc:
        raise user_error(f"cannot write {target}: {exc.strerror or exc}") from None
    out.print(f"wrote {target}", highlight=False, markup=False, soft_wrap=True)
    return 0
