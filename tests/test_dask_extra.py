"""``--runner dask`` where the optional ``distributed`` package is missing: a clear refusal, exit 2."""
import subprocess
import sys

BLOCKED = "import sys; sys.modules['distributed'] = None; from adapters.cli import main; sys.exit(main(sys.argv[1:]))"


def test_the_dask_runner_without_its_extra_names_the_extra_to_install_and_exits_2(tmp_path):
    (tmp_path / "wf.yaml").write_text("nodes: [{id: a, type: noop}]\n")
    done = subprocess.run([sys.executable, "-I", "-c", BLOCKED, "run", "wf.yaml", "--runner", "dask",
                           "--db", str(tmp_path / "flowcore.db")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'flowcore[dask]'" in done.stderr
    assert "Traceback" not in done.stderr
    listed = subprocess.run([sys.executable, "-I", "-c", BLOCKED, "runs", "--json", "--db", str(tmp_path / "flowcore.db")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert listed.stdout.strip() in ("", "[]"), listed.stdout  # nothing was stored
