"""c2sp.org/tlog-witness: `ledger witness` answers add-checkpoint as the spec says (409 for another old size,
422 for a bad proof, replays refused), its cosignatures check by an independent reader (tests/tlog_reference.py),
and `ledger checkpoint --witness` and `ledger verify --witness` use them, all over real loopback HTTP."""

import base64
import hashlib
import threading

import pytest
import requests

from ledger import checkpoint as notes
from ledger import merkle, witness
from sandbox.loopback import LoopbackServer
from tlog_reference import cosigned
from test_tiles import synthetic

ORIGIN = "witnessed.example/log"


def b64(data):
    return base64.b64encode(data).decode()


@pytest.fixture
def log():
    leaves = [hashlib.sha256(str(i).encode()).digest() for i in range(600)]
    signer = notes.parse_signer(notes.new_key(ORIGIN)[0])

    def note(size, origin=ORIGIN, by=signer, root=None):
        return notes.sign(notes.Checkpoint(origin, size, root or merkle.root(leaves[:size])), by)
    return leaves, signer, note


@pytest.fixture
def served(tmp_path, log):
    """A witness of the log on a loopback port: (base URL, its public key, the Witness)."""
    leaves, signer, _ = log
    key = tmp_path / "witness.key"
    public = witness.write_new_key(key, "witness.example/w1")
    assert (key.stat().st_mode & 0o777) == 0o600
    state = witness.Witness(str(tmp_path / "state.db"), witness.load_cosigner(str(key)), {ORIGIN: signer.verifier})
    server = witness.server(state, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", public, state
    server.shutdown()
    server.server_close()
    state.close()


def add(base, old, proof, note):
    body = f"old {old}\n" + "".join(b64(node) + "\n" for node in proof) + "\n" + note
    return requests.post(f"{base}/add-checkpoint", data=body.encode(), timeout=10)


def test_the_witness_protocol(served, log):
    base, public, state = served
    leaves, signer, note = log
    first = add(base, 0, [], note(100))
    assert first.status_code == 200 and first.text.startswith("\u2014 witness.example/w1 ")
    assert cosigned((note(100) + first.text).encode(), public.text()) is not None  # checked from the spec
    # the same request again (a replay): the witness is at 100 now
    replay = add(base, 0, [], note(100))
    assert (replay.status_code, replay.text, replay.headers["Content-Type"]) == (409, "100\n", "text/x.tlog.size")
    # a newer checkpoint with the wrong old size, then a bad proof, then the right one
    assert add(base, 50, merkle.consistency_proof(leaves[:300], 50), note(300)).status_code == 409
    bad = merkle.consistency_proof(leaves[:300], 100)
    bad[0] = bytes(32)
    assert add(base, 100, bad, note(300)).status_code == 422
    assert add(base, 100, merkle.consistency_proof(leaves[:301], 100), note(300)).status_code == 422  # another tree's
    good = add(base, 100, merkle.consistency_proof(leaves[:300], 100), note(300))
    assert good.status_code == 200 and cosigned((note(300) + good.text).encode(), public.text())
    # rolled back: an older (validly signed) checkpoint, and a replay of the accepted request
    assert add(base, 300, [], note(200)).status_code == 400  # old size larger than the checkpoint's
    assert add(base, 100, merkle.consistency_proof(leaves[:300], 100), note(300)).status_code == 409
    assert add(base, 0, [], note(200)).text == "300\n"
    # the same size again: the same root is cosigned again, another root is a 409
    assert add(base, 300, [], note(300)).status_code == 200
    assert add(base, 300, [], note(300, root=bytes(32))).status_code == 409
    assert state.conn.execute("SELECT size, root FROM logs").fetchall() == [(300, merkle.root(leaves[:300]))]


def test_the_witness_refuses_unknown_logs_bad_signatures_and_malformed_requests(served, log):
    base, _, _ = served
    leaves, signer, note = log
    assert add(base, 0, [], note(10, origin="other.example/log")).status_code == 404
    impostor = notes.parse_signer(notes.new_key(ORIGIN)[0])
    assert add(base, 0, [], note(10, by=impostor)).status_code == 403
    forged = note(10).replace(b64(merkle.root(leaves[:10])), b64(merkle.root(leaves[:11])))
    assert add(base, 0, [], forged).status_code == 403
    assert add(base, 0, [bytes(32)], note(10)).status_code == 422  # a proof from size 0 must be empty
    for body in [b"", b"old 01\n\n" + note(10).encode(), b"new 0\n\n" + note(10).encode(),
                 b"old 0\nnot base64\n\n" + note(10).encode(), b"old 0\n\nnot a checkpoint\n",
                 b"old 0\n" + (b64(bytes(32)) + "\n").encode() * 64 + b"\n" + note(10).encode(), b"\xff\n\n"]:
        assert requests.post(f"{base}/add-checkpoint", data=body, timeout=10).status_code == 400, body
    assert requests.get(f"{base}/add-checkpoint", timeout=10).status_code == 405
    assert requests.post(f"{base}/other", data=b"x", timeout=10).status_code == 404
    big = b"old 0\n\n" + b"x" * (witness.MAX_REQUEST + 1)
    assert requests.post(f"{base}/add-checkpoint", data=big, timeout=10).status_code == 413
    assert add(base, 0, [], note(10)).status_code == 200  # none of that moved it


def test_keys_are_cosignature_v1_keys(tmp_path):
    public = witness.write_new_key(tmp_path / "w", "witness.example/w2")
    text = public.text()
    name, key_id, key = text.split("+", 2)
    raw = base64.b64decode(key)
    assert raw[0] == 4 and hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex() == key_id
    assert witness.load_cosigner_verifier(str(tmp_path / "w.pub")) == public
    with pytest.raises(witness.WitnessError, match="already exists"):
        witness.write_new_key(tmp_path / "w", "witness.example/w2")
    with pytest.raises(witness.WitnessError, match="not a cosignature/v1 key"):
        witness.parse_cosigner_verifier(notes.new_key("log.example")[1])  # a log's (type 0x01) key
    with pytest.raises(witness.WitnessError, match="damaged"):
        witness.parse_cosigner_verifier(text[:len(name) + 1] + "00000000" + text[len(name) + 9:])


@pytest.fixture
def witnessed(tmp_path, ledger):
    """A ledger of 300 events, its key, and a witness of it."""
    synthetic(ledger.path, 300, tags=300)
    key = str(tmp_path / "ledger.key")
    ledger("checkpoint", "--new-key", key, "--name", ORIGIN)
    logs = {ORIGIN: notes.load_verifier(key + ".pub")}
    wkey = tmp_path / "w.key"
    public = witness.write_new_key(wkey, "witness.example/w1")
    state = witness.Witness(str(tmp_path / "state.db"), witness.load_cosigner(str(wkey)), logs)
    server = witness.server(state, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"key": key, "url": f"http://127.0.0.1:{server.server_port}", "wkey": str(wkey) + ".pub",
           "public": public, "state": state}
    server.shutdown()
    server.server_close()
    state.close()


def test_checkpoint_with_witnesses_and_verify_requiring_them(witnessed, ledger, tmp_path):
    w = witnessed
    out = ledger("checkpoint", "--key", w["key"], "--witness", w["url"], "--witness-key", w["wkey"]).output
    assert cosigned(out.encode(), w["public"].text()) is not None
    (tmp_path / "cp").write_text(out)
    again = ledger("checkpoint", "--key", w["key"], "--witness", w["url"], "--witness-key", w["wkey"]).output
    assert cosigned(again.encode(), w["public"].text()) is not None  # the 409 told it the witness's size
    ok = ledger("verify", "--expect", str(tmp_path / "cp"), "--key", w["key"] + ".pub", "--witness", w["wkey"]).output
    assert "1 pin hold" in ok
    plain = ledger("checkpoint", "--key", w["key"]).output
    (tmp_path / "plain").write_text(plain)
    other = witness.write_new_key(tmp_path / "w2", "witness.example/w2").text()
    failed = ledger("verify", "--expect", str(tmp_path / "plain"), "--key", w["key"] + ".pub", "--witness", w["wkey"],
                    expect=1).output
    assert "cosigned by 0 of the 1 witnesses given (none), 1 needed" in failed
    both = ["verify", "--expect", str(tmp_path / "cp"), "--key", w["key"] + ".pub", "--witness", w["wkey"],
            "--witness", other]
    assert "1 of the 2 witnesses given (witness.example/w1), 2 needed" in ledger(*both, expect=1).output
    assert "1 pin hold" in ledger(*both, "--witness-threshold", "1").output
    line = next(line for line in out.splitlines() if line.startswith("\u2014 witness.example/w1 "))
    blob = bytearray(base64.b64decode(line.split(" ")[2]))
    blob[10] ^= 1  # the timestamp: the signature covers it
    (tmp_path / "cp").write_text(out.replace(line.split(" ")[2], b64(bytes(blob))))
    assert "cosigned by 0 of" in ledger("verify", "--expect", str(tmp_path / "cp"), "--key", w["key"] + ".pub",
                                        "--witness", w["wkey"], expect=1).output


def test_a_witness_that_saw_more_refuses_a_rolled_back_ledger(witnessed, ledger, tmp_path):
    w = witnessed
    leaves = [row["hash"] for row in ledger.rows("SELECT hash FROM event_log ORDER BY id")]
    signer = notes.load_signer(w["key"])
    bigger = notes.sign(notes.Checkpoint(ORIGIN, 300, merkle.root(leaves)), signer)
    smaller = notes.sign(notes.Checkpoint(ORIGIN, 200, merkle.root(leaves[:200])), signer)
    assert w["state"].add_checkpoint(f"old 0\n\n{smaller}".encode()).status == 200
    proof = "".join(b64(node) + "\n" for node in merkle.consistency_proof(leaves, 200))
    assert w["state"].add_checkpoint(f"old 200\n{proof}\n{bigger}".encode()).status == 200
    # the ledger now rolled back to 250 events' worth of tree: a witness at 300 refuses it, and says why
    w["state"].conn.execute("UPDATE logs SET size = 301")
    result = ledger("checkpoint", "--key", w["key"], "--witness", w["url"], "--witness-key", w["wkey"], expect=1)
    assert "has cosigned a tree of 301 events, larger than this checkpoint's 300: the ledger was rolled back" in (
        result.output)
    w["state"].conn.execute("UPDATE logs SET size = 300, root = ?", [bytes(32)])
    result = ledger("checkpoint", "--key", w["key"], "--witness", w["url"], "--witness-key", w["wkey"], expect=1)
    assert "has cosigned another tree of 300 events" in result.output


def test_malformed_lines_in_a_witness_answer_are_ignored_not_a_crash(witnessed, ledger):
    """A witness (or what stands between) answering 200 with lines that are not signature lines: the ones by
    the given key that verify are kept, the rest ignored, as the spec asks; none left is one line, exit 1."""
    w = witnessed
    junk = "\u2014 witness.example/w1 AAAA\n\u2014 witness.example/w1 not base64!\n\u2014 \n"

    def answer(request):
        real = requests.post(f"{w['url']}/add-checkpoint", data=request.body(), timeout=10)
        extra = real.text if request.path.endswith("/real/add-checkpoint") else ""
        headers = [("Content-Type", real.headers["Content-Type"])]
        request.send(real.status_code, (junk + extra).encode() if real.status_code == 200 else real.content, headers)
    with LoopbackServer({"POST": answer}) as hostile:
        out = ledger("checkpoint", "--key", w["key"], "--witness", hostile.url + "/real",
                     "--witness-key", w["wkey"]).output
        assert cosigned(out.encode(), w["public"].text()) is not None and out.count("\u2014 witness.example/w1") == 1
        result = ledger("checkpoint", "--key", w["key"], "--witness", hostile.url + "/junk",
                        "--witness-key", w["wkey"], expect=1)
        assert "no cosignature by a given --witness-key verifies" in result.output


def test_witness_options_go_together(witnessed, ledger):
    w = witnessed
    assert "go together" in ledger("checkpoint", "--key", w["key"], "--witness", w["url"], expect=2).output
    assert "needs --witness KEY" in ledger("verify", "--witness-threshold", "1", expect=2).output
    assert "needs --expect checkpoint files" in ledger("verify", "--witness", w["wkey"], expect=2).output
    other = witness.write_new_key(w["wkey"][:-4] + "x", "witness.example/wx")
    result = ledger("checkpoint", "--key", w["key"], "--witness", w["url"], "--witness-key", other.text(), expect=1)
    assert "no cosignature by a given --witness-key verifies" in result.output


def test_ledger_witness_serves_until_a_signal(tmp_path, log):
    import re
    import subprocess
    import sys
    leaves, signer, note = log
    (tmp_path / "log.pub").write_text(signer.verifier.text())
    key = str(tmp_path / "w.key")
    made = subprocess.run([sys.executable, "-m", "ledger", "witness", "--new-key", key, "--name",
                           "witness.example/cli"], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and made.stdout.startswith("witness.example/cli+")
    process = subprocess.Popen([sys.executable, "-m", "ledger", "witness", "--state", str(tmp_path / "state.db"),
                                "--key", key, "--log", f"{ORIGIN} {tmp_path / 'log.pub'}", "--port", "0"],
                               stderr=subprocess.PIPE, text=True)
    try:
        port = re.search(r"127\.0\.0\.1:(\d+)/add-checkpoint", process.stderr.readline()).group(1)
        answer = add(f"http://127.0.0.1:{port}", 0, [], note(5))
        assert answer.status_code == 200 and cosigned((note(5) + answer.text).encode(), made.stdout.strip())
    finally:
        process.terminate()
        _, rest = process.communicate(timeout=30)
    assert process.returncode == 0 and "witness: stopped" in rest
    refused = subprocess.run([sys.executable, "-m", "ledger", "witness", "--key", key], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and "at least one --log" in refused.stderr


def test_the_witness_keeps_connections_alive(served, log):
    base, _, _ = served
    leaves, _, note = log
    with requests.Session() as session:
        first = session.post(f"{base}/add-checkpoint", data=f"old 0\n\n{note(10)}".encode(), timeout=10)
        proof = "".join(b64(node) + "\n" for node in merkle.consistency_proof(leaves[:20], 10))
        second = session.post(f"{base}/add-checkpoint", data=f"old 10\n{proof}\n{note(20)}".encode(), timeout=10)
        assert (first.status_code, second.status_code) == (200, 200)
        assert first.headers.get("Connection") != "close" and len(session.adapters["http://"].poolmanager.pools) == 1
