"""The arrows only point inward: the core stays pure, runners never reach into adapters."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPURE = {"time", "threading", "asyncio", "os", "sys", "sqlite3", "logging", "random", "socket", "subprocess",
          "concurrent", "io", "pathlib", "shutil", "tempfile", "datetime", "runners", "adapters", "uuid", "secrets"}


def imported_modules(package: str):
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path.name, alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield path.name, node.module.split(".")[0]


def test_scheduler_core_imports_nothing_impure():
    bad = [(f, m) for f, m in imported_modules("scheduler_core") if m in IMPURE]
    assert bad == []


def test_scheduler_core_never_calls_open_or_reads_a_clock():
    for path in (ROOT / "scheduler_core").rglob("*.py"):
        text = path.read_text()
        assert "open(" not in text and "time.time" not in text and "datetime.now" not in text, path


def test_runners_never_import_adapters():
    assert [(f, m) for f, m in imported_modules("runners") if m == "adapters"] == []
