"""The main job, end to end: start a local registry, push sample images,
collect, move a tag, collect again, and show what the ledger knows with its own
commands (tags, changes, history, at, runs, verify); then how to browse it."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

# sandbox/ is a package of this source tree, not installed (see ARCHITECTURE.md): the repository root goes on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sandbox import LocalRegistry, Pusher  # noqa: E402

BIN = Path(sys.executable).parent
DB = "demo.db"


def step(text):
    print(f"\n== {text}", flush=True)


def run(*args, check=True):
    print("$ " + shlex.join(args), flush=True)
    code = subprocess.run([str(BIN / args[0]), *args[1:]]).returncode
    if check and code != 0:
        sys.exit(code)


def main():
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(DB + suffix):
            os.remove(DB + suffix)
    with LocalRegistry() as registry:
        host = registry.host
        step(f"a local registry (docker-registry) on {registry.host}; pushing sample images")
        push = Pusher(registry.url)
        push.image("acme/web", "1.0", seed="web-1.0", author="web team", labels={"team": "web"})
        push.image("acme/web", "prod", seed="web-1.0", author="web team", labels={"team": "web"})
        push.image("acme/api", "2.3.1", seed="api", created="2024-06-01T12:00:00.123456789+02:00")
        push.index("acme/base", "latest", [("amd64", None), ("arm64", "v8")], seed="base")
        old_tool, _, _ = push.image("tools/debug", "old", seed="debug")

        step("first collect: every tag is new")
        run("ledger", "collect", registry.host, "--db", DB)

        step("someone pushes a new image to acme/web:prod and deletes tools/debug:old")
        push.image("acme/web", "prod", seed="web-2.0", author="web team", labels={"team": "web"})
        push.delete("tools/debug", old_tool)

        step("second collect: one tag moved, one removed")
        run("ledger", "collect", registry.host, "--db", DB)

    step("what every tag points to now")
    run("ledger", "tags", "--db", DB)
    step("what changed in the second run: the move and the removal")
    run("ledger", "changes", "--since", "run:1", "--db", DB)
    step("the whole history of acme/web:prod, oldest first")
    run("ledger", "history", f"{host}/acme/web:prod", "--db", DB)
    step("what acme/web:prod pointed to when the first run finished")
    run("ledger", "at", "run:1", f"{host}/acme/web:prod", "--db", DB)
    step("the runs")
    run("ledger", "runs", "--db", DB)
    step("the hash chain")
    run("ledger", "verify", "--db", DB)
    name = Path(DB).stem
    print(f"\nThe ledger is {DB}. To look at it in a browser, with acme/web:prod's timeline:\n"
          f"  .venv/bin/ledger serve --db {DB}\n"
          f"  then open http://127.0.0.1:8001/{name}/-/timeline?tag={host}/acme/web:prod\n"
          f"  and every tag of acme/ stacked, with changes per day: "
          f"http://127.0.0.1:8001/{name}/-/timelines?pattern={host}/acme/*\n"
          f"Or ask it in SQL: .venv/bin/sqlite-utils {DB} \"SELECT * FROM tag_history\" --table "
          f"(and `sqlite3 {DB} \"DELETE FROM events\"` is refused).")

if __name__ == "__main__":
    main()
