"""Where the code a python node calls comes from: ``call: module:function``, relative to its workflow.

Rules (the README's "Node code" section says the same):

- The module is looked for first in the workflow file's folder, then in the working directory,
  by an explicit search of those two folders only; otherwise it is imported as usual (installed
  packages, ``PYTHONPATH``). Neither folder is ever put on ``sys.path``, so a file beside a
  workflow cannot hide a module of the standard library or an installed package from anyone else
  (flowcore, its dependencies, the application that embeds it).
- The standard library and installed packages win. A module beside the workflow that has the name
  of one of them is refused, with a message that says to rename it: importing it under that name
  would shadow the real one for the whole process.
- A module beside a workflow is registered in ``sys.modules`` under its plain name (so the
  functions it holds pickle by reference, for the dask runner, and it imports once per process).
  A second workflow whose folder holds a different file of the same name is refused at load,
  naming both files: one process cannot hold two modules under one name.
- A workflow module may import its own siblings (``import helpers``): a finder placed *after* the
  usual ones finds such names in the folders of the workflows loaded so far, so it never shadows
  anything, and refuses a name that two of those folders hold.

Nothing here changes ``sys.path``.
"""
from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading


class CallNotImportable(Exception):
    """A ``call`` that does not name a function flowcore can import; the message says why."""


_LOCK = threading.RLock()
_FOLDERS: list[str] = []  # folders of the workflows loaded so far, for sibling imports
_SEARCH: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("flowcore_call_search", default=None)


def search_folders(base_dir: str | None) -> tuple[str, ...]:
    """The folders a call of a workflow in ``base_dir`` is looked for in first: that folder (None
    for a workflow given as a dict), then the working directory."""
    cwd = os.getcwd()
    folder = os.path.abspath(base_dir) if base_dir else None
    return (folder, cwd) if folder and folder != cwd else (cwd,)


def calls_from(base_dir: str | None):
    """Resolve the calls of the node types built inside this block relative to ``base_dir`` (a
    workflow file's folder; None for a workflow given as a dict: the working directory only)."""
    return calls_searched_in(search_folders(base_dir))


@contextlib.contextmanager
def calls_searched_in(folders: tuple[str, ...]):
    """Resolve the calls of the node types built inside this block in ``folders`` first (what
    ``search_folders`` gave where the workflow was loaded: a worker process rebuilds its nodes so)."""
    token = _SEARCH.set(folders)
    try:
        yield
    finally:
        _SEARCH.reset(token)


def current_search_folders() -> tuple[str, ...]:
    """The folders the calls being resolved now are looked for in first (see ``calls_from``)."""
    return _SEARCH.get() or search_folders(None)


def import_call(call: str, base_dir: str | None = None, *, folders: tuple | None = None):
    """``module:function`` -> the function, its module looked for in ``base_dir`` (the workflow's
    folder) and the working directory first (or in ``folders``, from ``search_folders``);
    ``CallNotImportable`` saying what is wrong."""
    if not isinstance(call, str) or ":" not in call:
        raise CallNotImportable(f"call must look like 'module:function', not {call!r}")
    module_name, _, attr = call.partition(":")
    try:
        module = import_module(module_name, folders or search_folders(base_dir))
    except CallNotImportable as exc:
        raise CallNotImportable(f"call {call!r}: {exc}") from None
    except (Exception, SystemExit) as exc:  # a module may also call sys.exit() when it is imported
        raise CallNotImportable(f"call {call!r}: cannot import module {module_name!r} "
                                f"({type(exc).__name__}: {exc})") from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise CallNotImportable(f"call {call!r}: module {module_name!r} has no {attr!r}")
    if not callable(fn):
        raise CallNotImportable(f"call {call!r} is not callable")
    return fn


def import_module(module_name: str, folders: tuple[str, ...]):
    """The module ``module_name`` (dotted names too), looked for in ``folders`` first."""
    top = module_name.partition(".")[0]
    with _LOCK:
        folder, spec = _find_beside(top, folders)
        if spec is not None:
            _check_not_shadowing(top, spec, folders)
            _load_beside(top, spec, folder)
    return importlib.import_module(module_name)


def _find_beside(top: str, folders: list[str]):
    """(folder, spec) of module ``top`` in the first of ``folders`` that holds it, or (None, None)."""
    for folder in folders:
        spec = importlib.machinery.PathFinder.find_spec(top, [folder])
        if spec is not None:
            return folder, spec
    return None, None


def _location(spec) -> str:
    where = spec.origin if spec.origin not in (None, "namespace") else list(spec.submodule_search_locations)[0]
    return os.path.realpath(where)


def _module_location(module) -> str | None:
    where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", None) or ()), None)
    return os.path.realpath(where) if where else None


def _check_not_shadowing(top: str, spec, folders: list[str]) -> None:
    """Refuse a module beside the workflow named like one of the standard library or an installed one."""
    mine = _location(spec)
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        raise CallNotImportable(f"{mine} has the name of the standard-library module {top!r}, which flowcore "
                                f"does not let a workflow's module shadow; rename the file")
    searched = {os.path.realpath(folder) for folder in folders}
    others = [p for p in sys.path if os.path.realpath(p or os.curdir) not in searched]
    elsewhere = importlib.machinery.PathFinder.find_spec(top, others)
    if elsewhere is not None and _location(elsewhere) != mine:
        raise CallNotImportable(f"{mine} has the name of the installed module {top!r} ({_location(elsewhere)}), "
                                f"which flowcore does not let a workflow's module shadow; rename the file")


def _load_beside(top: str, spec, folder: str) -> None:
    """Register the module of ``spec`` as ``sys.modules[top]``, unless it is there already; refuse
    when another file holds that name in this process."""
    mine = _location(spec)
    loaded = sys.modules.get(top)
    if loaded is not None:
        there = _module_location(loaded)
        if there == mine:
            return
        raise CallNotImportable(f"module {top!r} of this workflow ({mine}) clashes with module {top!r} already "
                                f"loaded from {there or 'elsewhere'} (another workflow's?): one process holds one "
                                f"module per name; rename one of them")
    if folder not in _FOLDERS:  # before it runs: its own imports may name its siblings
        _FOLDERS.append(folder)
    module = importlib.util.module_from_spec(spec)
    sys.modules[top] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(top, None)
        raise


class _SiblingFinder:
    """Finds, after every usual finder failed, a top-level module in the folders of the workflows
    loaded so far: what a workflow's module imports of its own folder (``import helpers``)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if path is not None or "." in name:
            return None
        with _LOCK:
            found = [(folder, spec) for folder in _FOLDERS
                     if (spec := importlib.machinery.PathFinder.find_spec(name, [folder])) is not None]
        if len(found) > 1:
            raise ImportError(f"module {name!r} is in the folders of several workflows "
                              f"({', '.join(folder for folder, _ in found)}); flowcore cannot tell which one "
                              f"is meant: rename one of them", name=name)
        return found[0][1] if found else None


def _install_sibling_finder() -> None:
    if not any(isinstance(f, _SiblingFinder) or f is _SiblingFinder for f in sys.meta_path):
        sys.meta_path.append(_SiblingFinder)


_install_sibling_finder()
