"""tlog-tiles: what `ledger tiles` writes and `ledger serve` serves, checked by an independent client written
from the spec (tests/tlog_reference.py), at the edges of a tile (1, 255, 256, 257 leaves) and past the
second level (65,536 and more)."""

import asyncio
import hashlib
import os
import shutil
import sqlite3

import pytest

from ledger import checkpoint as notes
from ledger import merkle, store, tiles
from ledger.findings import RunResult, Sighting
from ledger.serving import ledger_datasette
from tlog_reference import Refused, audit, directory_fetch, mth, path

SIZES = [1, 255, 256, 257, 65_536, 65_537, 70_000]
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def synthetic(path, events, tags=5_000):
    """A ledger of `events` events through the store's own append: run 1 adds every tag, later runs move them."""
    db = store.open_db(path)
    appended, run = 0, 0
    while appended < events:
        run += 1
        chunk = [(f"team/app{n % 40}", f"v{n}") for n in range(min(tags, events - appended))]
        at = f"2026-01-01T00:00:00.{run:06d}Z"
        digest = [f"sha256:{hashlib.sha256(f'{repo}:{tag}:{run}'.encode()).hexdigest()}" for repo, tag in chunk]
        sightings = [Sighting("tiles.example", repo, tag, at, d, MANIFEST) for (repo, tag), d in zip(chunk, digest)]
        run_id = store.start_run(db, "registry", ["tiles.example"])
        counts = store.append_run(db, run_id, RunResult(observations=sightings))
        appended += counts["added"] + counts["moved"]
    db.close()


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A 70,000-event ledger, its leaves, a signer and a verifier key text."""
    directory = tmp_path_factory.mktemp("big")
    path = str(directory / "big.db")
    synthetic(path, 70_000)
    db = store.open_readonly(path)
    leaves = [row[0] for row in db.execute("SELECT hash FROM event_log ORDER BY id")]
    db.close()
    signer = notes.parse_signer(notes.new_key("tiles.example/big")[0])
    return {"path": path, "leaves": leaves, "signer": signer, "vkey": signer.verifier.text(), "dir": directory}


def signed(big, size, origin="tiles.example/big"):
    return notes.sign(notes.Checkpoint(origin, size, merkle.root(big["leaves"][:size])), big["signer"])


def test_tile_paths_are_the_specs():
    assert tiles.index_path(1234067) == "x001/x234/067" and tiles.index_path(0) == "000"
    assert tiles.Tile(0, 1234067, 256).path() == "tile/0/x001/x234/067" == path(0, 1234067)
    assert tiles.Tile(None, 5, 3).path() == "tile/entries/005.p/3" == path("entries", 5, 3)
    for level, n, width in [(0, 0, 1), (3, 999, 255), (63, 1000, 256), (None, 123456789, 17)]:
        assert tiles.parse_path(tiles.Tile(level, n, width).path()) == tiles.Tile(level, n, width)
    for bad in ["tile/0/1", "tile/0/x000/001", "tile/0/001.p/256", "tile/0/001.p/0", "tile/0/001.p/010",
                "tile/64/000", "tile/00/000", "tile/data/000", "tile/0/001/", "tile/0/x01/000", "tile/-1/000",
                "tile/0/" + "x999/" * 1500 + "999", "tile/0/x009/x223/x372/x036/x854/x775/808"]:
        assert tiles.parse_path(bad) is None, bad  # an index past 2**63 - 1 of any length too (not a ValueError)
    assert tiles.parse_path("tile/0/x009/x223/x372/x036/x854/x775/807") == tiles.Tile(0, 2**63 - 1, 256)
    # the spec's example: 70,000 leaves are 273 full level-0 tiles, one of width 112, one full level-1 tile,
    # one of width 17, and one level-2 tile of width 1; 256 leaves a full tile and a level-1 tile of width 1
    shape = [(t.level, t.width) for t in tiles.tiles_of(70_000)]
    assert shape.count((0, 256)) == 273 and (0, 112) in shape and shape[273:] == [(0, 112), (1, 256), (1, 17), (2, 1)]
    assert [(t.level, t.index, t.width) for t in tiles.tiles_of(256)] == [(0, 0, 256), (1, 0, 1)]


def test_levels_agree_with_the_merkle_tree_at_every_size():
    entries = [hashlib.sha256(str(i).encode()).digest() for i in range(1030)]
    levels = tiles.Levels()
    for start in range(0, 1030, 97):  # grown unevenly, across tile edges
        levels.extend(entries[start:start + 97])
    for size in [0, 1, 2, 255, 256, 257, 511, 512, 513, 1024, 1030]:
        assert levels.root(size) == merkle.root(entries[:size])


def test_exported_tiles_pass_an_independent_check_at_every_edge_written_once(big, tmp_path, ledger):
    """One directory, published at growing sizes: each time the reference client agrees with the signed root,
    and every file written before keeps its bytes (full tiles and older partial ones alike)."""
    out, pub = tmp_path / "log", tmp_path / "log.pub"
    pub.write_text(big["vkey"] + "\n")
    ledger.path = big["path"]
    seen = {}
    for size in SIZES:
        (tmp_path / "cp").write_text(signed(big, size))
        printed = ledger("tiles", str(out), "--checkpoint", str(tmp_path / "cp"), "--key", str(pub)).output
        assert f"tree of {size} events" in printed
        assert audit(directory_fetch(out), big["vkey"]) == ("tiles.example/big", size,
                                                            merkle.root(big["leaves"][:size]))
        files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert all(files[name] == data for name, data in seen.items() if name != "checkpoint")
        seen = files
    assert "tile/0/000.p/1" in seen and "tile/0/000.p/255" in seen and "tile/2/000.p/1" in seen  # kept
    again = ledger("tiles", str(out), "--checkpoint", str(tmp_path / "cp"), "--key", str(pub)).output
    assert "0 tiles written" in again


def test_ledger_tiles_signs_the_head_with_an_origin(big, tmp_path, ledger):
    key = tmp_path / "k"
    key.write_text(big["signer"].text() + "\n")
    ledger.path = big["path"]
    ledger("tiles", str(tmp_path / "log"), "--key", str(key), "--origin", "ledger.example/big/-/tlog")
    origin, size, _ = audit(directory_fetch(tmp_path / "log"), big["vkey"])
    assert (origin, size) == ("ledger.example/big/-/tlog", 70_000)
    assert "seal " in (tmp_path / "log" / "checkpoint").read_text()  # the head's seal line, as ledger checkpoint


@pytest.mark.parametrize("victim", ["tile/0/005", "tile/0/273.p/112", "tile/1/000", "tile/1/001.p/17",
                                    "tile/2/000.p/1", "tile/entries/005", "tile/entries/273.p/112", "checkpoint"])
def test_a_tampered_tile_or_entry_is_refused(big, tmp_path, victim):
    out = tmp_path / "log"
    tiles.export(out, big["leaves"], signed(big, 70_000), 70_000, merkle.root(big["leaves"]))
    audit(directory_fetch(out), big["vkey"])
    data = bytearray((out / victim).read_bytes())
    data[len(data) // 2] ^= 1
    (out / victim).write_bytes(bytes(data))
    with pytest.raises(Refused):
        audit(directory_fetch(out), big["vkey"])


def test_a_truncated_or_padded_bundle_is_refused(big, tmp_path):
    out = tmp_path / "log"
    tiles.export(out, big["leaves"], signed(big, 300), 300, merkle.root(big["leaves"][:300]))
    bundle = out / "tile/entries/001.p/44"
    for changed in [bundle.read_bytes()[:-1], bundle.read_bytes() + b"\x00\x00", bundle.read_bytes()[34:]]:
        bundle.write_bytes(changed)
        with pytest.raises(Refused):
            audit(directory_fetch(out), big["vkey"])


def test_ledger_tiles_refuses_a_directory_it_would_overwrite(big, tmp_path, ledger):
    """A tile already published with other bytes, or a published checkpoint the ledger does not extend: exit 1,
    and every file stays as it was."""
    out, pub = tmp_path / "log", tmp_path / "log.pub"
    pub.write_text(big["vkey"])
    ledger.path = big["path"]
    (tmp_path / "cp").write_text(signed(big, 600))
    ledger("tiles", str(out), "--checkpoint", str(tmp_path / "cp"), "--key", str(pub))
    tile = out / "tile/0/001"
    tile.write_bytes(tile.read_bytes()[::-1])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (tmp_path / "cp").write_text(signed(big, 900))
    result = ledger("tiles", str(out), "--checkpoint", str(tmp_path / "cp"), "--key", str(pub), expect=1)
    assert "tile/0/001 holds other bytes" in result.output and "\n" not in result.output.strip()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # a checkpoint of more events than the ledger's prefix being published: rolled back
    (tmp_path / "cp").write_text(signed(big, 500))
    out2 = tmp_path / "log2"
    shutil.copytree(out, out2)
    tile2 = out2 / "tile/0/001"
    tile2.write_bytes(tile2.read_bytes()[::-1])
    result = ledger("tiles", str(out2), "--checkpoint", str(tmp_path / "cp"), "--key", str(pub), expect=1)
    assert "publishes 600 events and the ledger has 500: it was rolled back" in result.output
    # a checkpoint whose root is not the ledger's
    forged = notes.sign(notes.Checkpoint("tiles.example/big", 10, bytes(32)), big["signer"])
    (tmp_path / "cp").write_text(forged)
    result = ledger("tiles", str(tmp_path / "log3"), "--checkpoint", str(tmp_path / "cp"), "--key", str(pub),
                    expect=1)
    assert "do not hash to the checkpoint's root" in result.output and not (tmp_path / "log3" / "checkpoint").exists()


def test_ledger_tiles_needs_a_key_and_a_checkpoint_by_it(big, tmp_path, ledger):
    ledger.path = big["path"]
    assert "give --key" in ledger("tiles", str(tmp_path / "log"), expect=2).output
    (tmp_path / "cp").write_text(signed(big, 5))
    other = notes.new_key("tiles.example/big")[1]
    result = ledger("tiles", str(tmp_path / "log"), "--checkpoint", str(tmp_path / "cp"), "--key", other, expect=1)
    assert "signed by another key" in result.output and not (tmp_path / "log").exists()


# -- served --------------------------------------------------------------------------------------------------


def served(datasette):
    """A fetch for the reference client over Datasette's in-process ASGI client, and the raw responses."""
    responses = {}

    def fetch(name):
        async def get():
            return await datasette.client.get(f"/big/-/tlog/{name}")
        response = asyncio.run(get())
        responses[name] = response
        if response.status_code != 200:
            raise Refused(f"{name}: {response.status_code}")
        return response.content
    return fetch, responses


def test_served_tiles_pass_the_independent_check_at_every_edge(big, tmp_path):
    cp = tmp_path / "cp"
    datasette = ledger_datasette([big["path"]], checkpoints={"big": str(cp)})
    fetch, responses = served(datasette)
    for size in SIZES:  # the checkpoint file is re-read on every request: a signer replaces it
        cp.write_text(signed(big, size))
        assert audit(fetch, big["vkey"])[1] == size
    exported = tmp_path / "log"
    tiles.export(exported, big["leaves"], signed(big, 70_000), 70_000, merkle.root(big["leaves"]))
    for p in exported.rglob("*"):
        if p.is_file() and p.name != "checkpoint":
            assert fetch(str(p.relative_to(exported))) == p.read_bytes()
    full, partial, check = responses["tile/1/000"], responses["tile/0/273.p/112"], responses["checkpoint"]
    assert full.headers["content-type"] == "application/octet-stream"
    assert "immutable" in full.headers["cache-control"] and "immutable" not in partial.headers["cache-control"]
    assert check.headers["content-type"] == "text/plain; charset=utf-8" and check.headers["cache-control"] == "no-cache"


def test_served_tiles_refuse_what_the_tree_lacks_and_other_spellings(big, tmp_path):
    datasette = ledger_datasette([big["path"]])
    fetch, responses = served(datasette)
    for name in ["tile/0/274", "tile/0/273.p/113", "tile/1/001", "tile/3/000.p/1", "tile/entries/274",
                 "tile/0/5", "tile/0/x000/005", "tile/0/005.p/256", "tile/1/000.p/0", "checkpoint",
                 "tile/0/" + "x999/" * 1500 + "999"]:
        with pytest.raises(Refused):
            fetch(name)
        assert responses[name].status_code == 404, name
    assert fetch("tile/0/273.p/111") == tiles.leaf_hashes(big["leaves"][273 * 256:273 * 256 + 111])


def test_the_served_log_is_read_only(big, tmp_path):
    cp = tmp_path / "cp"
    cp.write_text(signed(big, 1000))
    datasette = ledger_datasette([big["path"]], checkpoints={"big": str(cp)})

    async def ask(method, name):
        return await datasette.client.request(method, f"/big/-/tlog/{name}")
    for method in ("POST", "PUT", "DELETE"):
        for name in ("checkpoint", "tile/0/000", "tile/entries/000"):
            response = asyncio.run(ask(method, name))
            assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD", (method, name)
    assert asyncio.run(ask("GET", "checkpoint")).content == cp.read_bytes()


def test_a_checkpoint_that_is_not_the_ledgers_is_not_served(big, tmp_path):
    """A rewritten ledger (or a checkpoint of another one) under `ledger serve`: 503, not a checkpoint whose
    tiles would not hold."""
    copy = str(tmp_path / "big.db")
    shutil.copy(big["path"], copy)
    cp = tmp_path / "cp"
    cp.write_text(signed(big, 1000))
    fetch, responses = served(ledger_datasette([copy], checkpoints={"big": str(cp)}))
    assert fetch("checkpoint") == cp.read_bytes()
    conn = sqlite3.connect(copy)
    conn.execute("DROP TRIGGER event_log_append_only_update")
    conn.execute("UPDATE event_log SET hash = ? WHERE id = 3", [bytes(32)])
    conn.commit()
    conn.close()
    fetch, responses = served(ledger_datasette([copy], checkpoints={"big": str(cp)}))
    with pytest.raises(Refused):
        fetch("checkpoint")
    assert responses["checkpoint"].status_code == 503 and "not this ledger's" in responses["checkpoint"].text
    cp.write_text(signed(big, 70_001))
    with pytest.raises(Refused):
        fetch("checkpoint")
    cp.write_text("not a checkpoint")
    with pytest.raises(Refused):
        fetch("checkpoint")
    assert responses["checkpoint"].status_code == 503


def test_the_upper_levels_follow_a_growing_ledger(tmp_path):
    """The server keeps the roots of full level-0 tiles; the ledger grows under it and they grow with it."""
    path = str(tmp_path / "grow.db")
    synthetic(path, 600, tags=600)
    datasette = ledger_datasette([path])

    def get(name):
        async def fetch():
            return await datasette.client.get(f"/grow/-/tlog/{name}")
        return asyncio.run(fetch())
    assert get("tile/1/000.p/2").status_code == 200 and get("tile/1/000.p/3").status_code == 404
    synthetic(path, 200, tags=200)  # 200 more moves: 800 events
    db = store.open_readonly(path)
    leaves = [row[0] for row in db.execute("SELECT hash FROM event_log ORDER BY id")]
    db.close()
    assert len(leaves) == 800
    level0 = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]
    assert get("tile/1/000.p/3").content == b"".join(mth(level0[i * 256:(i + 1) * 256]) for i in range(3))


def test_serve_checkpoint_option_names_its_ledger(big, tmp_path):
    from ledger.serving import checkpoint_files
    (tmp_path / "cp").write_text("x")
    assert checkpoint_files({"big": "b.db"}, [str(tmp_path / "cp")]) == {"big": str(tmp_path / "cp")}
    assert checkpoint_files({"big": "b.db", "o": "o.db"}, [f"o={tmp_path / 'cp'}"]) == {"o": str(tmp_path / "cp")}
    for given, match in [([str(tmp_path / "cp")], "say whose it is"), ([f"o={tmp_path / 'none'}"], "not a readable")]:
        with pytest.raises(store.StoreError, match=match):
            checkpoint_files({"big": "b.db", "o": "o.db"}, given)
    assert os.path.exists(tmp_path / "cp")
