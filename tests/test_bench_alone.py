"""tests/test_bench.py runs on its own too, not only when another test happened to put the repository on the path."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_tests_import_bench_when_run_alone():
    pytest_command = Path(sys.executable).with_name("pytest")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(pytest_command), "--collect-only", "-q", "-p", "no:cacheprovider", "tests/test_bench.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No module named 'bench'" not in done.stdout
