"""The main job, end to end: start a local registry, push sample images,
collect, move a tag, collect again, and show what the ledger knows."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

# The sandbox (local registry, pusher, proxies) is test-only: it lives in tests/, not in the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
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


def show(sql):
    run("sqlite-utils", DB, sql, "--table")


def main():
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(DB + suffix):
            os.remove(DB + suffix)
    with LocalRegistry() as registry:
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

    step("replaced tags (what was overwritten, from what to what)")
    show("SELECT repo, tag, substr(old_digest, 1, 19) AS old_digest, substr(new_digest, 1, 19) AS new_digest, "
         "replaced_at FROM replaced_tags")
    step("removed tags")
    show("SELECT repo, tag, substr(last_digest, 1, 19) AS last_digest, removed_at FROM removed_tags")
    step("what every tag points to now")
    show("SELECT repo, tag, substr(digest, 1, 19) AS digest, substr(image, 1, 19) AS image, created "
         "FROM current_tags ORDER BY repo, tag")
    step("the platforms of acme/base:latest (attestations are marked, not listed)")
    show("SELECT p.architecture, p.variant, substr(p.digest, 1, 19) AS digest FROM platforms p "
         "JOIN current_tags t ON t.digest = p.index_digest WHERE t.repo = 'acme/base' AND p.attestation = 0")
    step("the hash chain")
    run("ledger", "verify", "--db", DB)
    print(f"\nThe ledger is {DB}: try `sqlite3 {DB} \"DELETE FROM events\"` (refused), "
          f"or `.venv/bin/sqlite-utils {DB} \"SELECT * FROM tag_history\" --table`.")


if __name__ == "__main__":
    main()
