"""Made with flowcore at commit d5463c7 (before the schema had a version): see tests/test_store_migrations.py."""
import os
import sqlite3
import sys

from adapters import Engine, engine as engine_module

db = sys.argv[1]
if os.path.exists(db):
    os.remove(db)
engine_module.SNAPSHOT_EVERY = 1  # every drive leaves a (pickled) snapshot

DONE = {"name": "done", "nodes": [{"id": "each", "type": "foreach"}, {"id": "x", "type": "noop"},
                                  {"id": "all", "type": "merge"}],
        "connections": [{"from": "each", "to": "x", "port": "iteration"}, {"from": "x", "to": "all"}]}
APPROVAL = {"name": "approval",
            "nodes": [{"id": "draft", "type": "noop"},
                      {"id": "ask", "type": "hil", "prompt": "Send it?", "choices": ["send", "drop"]},
                      {"id": "sent", "type": "noop"}, {"id": "dropped", "type": "noop"},
                      {"id": "items", "type": "foreach"},
                      {"id": "check", "type": "hil", "choices": ["ok", "no"]}],
            "connections": [{"from": "draft", "to": "ask"}, {"from": "ask", "to": "sent", "port": "send"},
                            {"from": "ask", "to": "dropped", "port": "drop"},
                            {"from": "draft", "to": "items"},
                            {"from": "items", "to": "check", "port": "iteration"}]}
CAPPED = {"name": "capped",
          "nodes": [{"id": "ask", "type": "hil"}, {"id": "later", "type": "hil"}]
          + [{"id": f"a{i}", "type": "noop"} for i in range(3)] + [{"id": f"b{i}", "type": "noop"} for i in range(3)],
          "connections": [{"from": "ask", "to": f"a{i}"} for i in range(3)]
          + [{"from": "later", "to": f"b{i}"} for i in range(3)]}

e = Engine(runner="serial", db=db)
assert e.run(DONE, trigger=[1, 2, 3], run_id="done").status == "succeeded"
assert e.run(APPROVAL, trigger=[1, 2], run_id="waiting").status == "waiting"
assert e.run(CAPPED, run_id="capped", max_parallel=1).status == "waiting"
e2 = Engine(runner="serial", db=db)
assert e2.resume("capped", node="ask", input="go", max_parallel=3).status == "waiting"
e2.store.close()
assert e.run(DONE, trigger=[4], run_id="stuck").status == "succeeded"
e.store.close()
conn = sqlite3.connect(db)
# what a driver SIGKILLed between its last step and the summary update left behind
conn.execute("UPDATE runs SET status = 'running', finished_at = NULL WHERE run_id = 'stuck'")
conn.commit()
conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
conn.execute("PRAGMA journal_mode = DELETE")  # one self-contained file to commit
conn.close()
print(sqlite3.connect(db).execute("SELECT run_id, status, options FROM runs").fetchall())
print(sqlite3.connect(db).execute("SELECT run_id, idx, version, length(state) FROM snapshots").fetchall())
