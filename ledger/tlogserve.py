"""`ledger serve`'s transparency-log routes: each ledger's Merkle tree as c2sp.org/tlog-tiles, read-only.

A Datasette plugin (serving.ledger_datasette registers it). The URL prefix of a ledger NAME is
`/NAME/-/tlog`:

    /NAME/-/tlog/checkpoint                 the checkpoint file given for NAME (`--checkpoint NAME=FILE`),
                                            once its tree is checked to be the ledger's
    /NAME/-/tlog/tile/<L>/<N>[.p/<W>]       hash tiles (ledger/tiles.py)
    /NAME/-/tlog/tile/entries/<N>[.p/<W>]   entry bundles

Level-0 tiles and entry bundles are read from the ledger's rows per request (256 rows by id). A tile
above level 0 stands for 65,536 events or more, so the roots of the full level-0 tiles are computed once
and kept per server (32 bytes per 256 events), and extended as the ledger grows; the event at the cache's
edge is checked before it grows, so a rewrite there is read afresh (one further back is `ledger verify`'s
to find, and an auditor's: the level-0 tiles would not hash to the cached ones). Serving never signs: the
checkpoint is a file a signer wrote (`ledger checkpoint`, `collect --checkpoint-dir`'s latest.checkpoint).
"""

import os
import threading
import weakref

from datasette import hookimpl
from datasette.utils.asgi import Response

from . import checkpoint as notes
from . import tiles
from .tiles import WIDTH

IMMUTABLE = "public, max-age=31536000, immutable"
PARTIAL = "public, max-age=300"  # a partial tile's bytes never change either, but a log may drop it later
CHECKPOINT = "no-cache"  # mutable: clients must see a new one at once
_OCTETS = "application/octet-stream"


_checkpoints = weakref.WeakKeyDictionary()  # Datasette -> {ledger name: checkpoint file}; kept out of its metadata


def configure(datasette, checkpoints):
    """Serve these checkpoint files ({ledger name: path}) at their ledgers' /NAME/-/tlog/checkpoint."""
    _checkpoints[datasette] = dict(checkpoints)


class _Tree:
    """One ledger's cached upper levels: the roots of its full level-0 tiles, rolled up like tiles.Levels. The
    last cached event's hash is checked before the cache grows: a ledger rewritten under the server is read
    again from the start."""

    def __init__(self):
        self.lock = threading.Lock()
        self._reset()

    def _reset(self):
        self.levels = tiles.Levels()
        self.tiles = 0  # full level-0 tiles whose roots are in levels.rows[1]
        self.last = None  # the hash of the last event they cover

    def update(self, conn, count):
        with self.lock:
            if self.tiles:
                row = conn.execute("SELECT hash FROM event_log WHERE id = ?", [self.tiles * WIDTH]).fetchone()
                if row is None or row[0] != self.last:  # a Row under Datasette, never equal to a tuple
                    self._reset()
            full = count // WIDTH
            if full <= self.tiles:
                return
            rows = conn.execute("SELECT hash FROM event_log WHERE id > ? AND id <= ? ORDER BY id",
                                [self.tiles * WIDTH, full * WIDTH])
            while True:
                chunk = [row[0] for row in rows.fetchmany(WIDTH * 64)]
                if not chunk:
                    break
                roots = b"".join(tiles.tile_root(tiles.leaf_hashes(chunk[i:i + WIDTH]))
                                 for i in range(0, len(chunk), WIDTH))
                self.levels.extend_level(1, roots)
                self.last = chunk[-1]
            self.tiles = full

    def hashes(self, conn, level, first, count):
        """`count` hashes at a tile level from `first`: level 0 from the rows, above from the cache."""
        if level == 0:
            return tiles.leaf_hashes(_entries(conn, first, count))
        return self.levels.hashes(level, first, count)


_trees = weakref.WeakKeyDictionary()  # Datasette -> {ledger file: _Tree}: each server reads its ledgers afresh
_trees_lock = threading.Lock()


def _tree(datasette, path):
    with _trees_lock:
        return _trees.setdefault(datasette, {}).setdefault(os.path.abspath(path), _Tree())


def _entries(conn, first, count):
    rows = [row[0] for row in conn.execute("SELECT hash FROM event_log WHERE id > ? AND id <= ? ORDER BY id",
                                           [first, first + count])]
    if len(rows) != count or any(not isinstance(row, bytes) or len(row) != tiles.ENTRY_SIZE for row in rows):
        raise tiles.TileError(f"events {first + 1}..{first + count} are not all there as 32-byte hashes")
    return rows


def _count(conn):
    return conn.execute("SELECT coalesce(max(id), 0) FROM event_log").fetchone()[0]


def _tile_bytes(tree, tile):
    """The bytes of `tile` of the ledger's current tree, or None when the tree does not (yet) hold it."""
    def read(conn):
        count = _count(conn)
        if not tiles.in_tree(tile, count):
            return None
        if tile.level is None:
            return tiles.bundle(_entries(conn, tile.index * WIDTH, tile.width))
        if tile.level > 0:
            tree.update(conn, count)
        return tree.hashes(conn, tile.level, tile.index * WIDTH, tile.width)
    return read


def _checked_root(tree, size):
    """The root of the ledger's tree of `size` events (None if it has fewer), from tiles as a client would."""
    def read(conn):
        count = _count(conn)
        if size > count:
            return None
        tree.update(conn, count)
        return tiles.tree_root(lambda level, first, n: tree.hashes(conn, level, first, n), size)
    return read


def _text(status, message):
    return Response.text(message + "\n", status=status, headers={"Cache-Control": "no-store"})


def _ledger(datasette, request):
    """(database, its file) when the URL names a ledger being served, else None."""
    name = request.url_vars["database"]
    database = datasette.databases.get(name)
    if database is None or name.startswith("_") or not database.path:
        return None
    return database


def _not_read(request):
    """The log is read-only: anything but GET and HEAD is 405, before the ledger is looked at."""
    if request.method in ("GET", "HEAD"):
        return None
    return Response.text("the log is read-only: GET or HEAD\n", status=405,
                         headers={"Allow": "GET, HEAD", "Cache-Control": "no-store"})


async def tile_route(datasette, request):
    refused = _not_read(request)
    if refused:
        return refused
    database = _ledger(datasette, request)
    tile = tiles.parse_path(request.url_vars["path"])
    if database is None or tile is None:
        return _text(404, "not found")
    try:
        data = await database.execute_fn(_tile_bytes(_tree(datasette, database.path), tile))
    except tiles.TileError as error:
        return _text(500, str(error))
    if data is None:
        return _text(404, f"the tree has no tile {tile.path()} (yet)")
    return Response(data, content_type=_OCTETS, headers={"Cache-Control": IMMUTABLE if tile.full else PARTIAL})


async def checkpoint_route(datasette, request):
    refused = _not_read(request)
    if refused:
        return refused
    database = _ledger(datasette, request)
    file = _checkpoints.get(datasette, {}).get(request.url_vars["database"]) if database else None
    if file is None:
        return _text(404, "no checkpoint is served for this ledger (ledger serve --checkpoint NAME=FILE)")
    try:
        with open(file, "rb") as handle:
            raw = handle.read(notes.MAX_NOTE_BYTES + 1)
        head, _ = notes.parse(raw)
    except OSError as error:
        return _text(503, f"the checkpoint file cannot be read ({error.strerror})")
    except notes.CheckpointError as error:
        return _text(503, f"the checkpoint file is not a checkpoint: {error}")
    root = await database.execute_fn(_checked_root(_tree(datasette, database.path), head.size))
    if root != head.root:
        return _text(503, f"the checkpoint file's tree of {head.size} events is not this ledger's: not served")
    return Response(raw, content_type="text/plain; charset=utf-8", headers={"Cache-Control": CHECKPOINT})


@hookimpl
def register_routes():
    return [(r"^/(?P<database>[^/]+)/-/tlog/checkpoint$", checkpoint_route),
            (r"^/(?P<database>[^/]+)/-/tlog/(?P<path>tile/.+)$", tile_route)]
