"""The ledger's Merkle tree as c2sp.org/tlog-tiles: static tiles anyone can fetch and check with standard tools.

The tree is the one checkpoints sign (ledger/merkle.py): leaf i is the chain hash of event i + 1, so the
roots are today's. Tiles have height 8:

    tile/<L>/<N>[.p/<W>]          256 (or W, at the right edge) 32-byte hashes at level L: leaf hashes at
                                  level 0; at level L > 0, each the Merkle Tree Hash of a full tile below
    tile/entries/<N>[.p/<W>]      the entries tile/0/<N> hashes: each a big-endian uint16 length (32)
                                  then the entry, which is the event's 32-byte chain hash

N is written in 3-digit groups, all but the last prefixed with `x` (1234067 -> x001/x234/067). A tree of
size s has floor(s / 256**L) hashes at level L: full tiles, then a partial one of that count mod 256.

A path names its bytes for good in an append-only log, so files are only ever added: `export` writes the
tiles a tree has that the directory lacks, checks the ones it has, and replaces only `checkpoint`.
"""

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from . import merkle

HEIGHT = 8
WIDTH = 1 << HEIGHT  # hashes in a full tile
HASH = merkle.HASH_SIZE
ENTRY_SIZE = HASH  # an entry is an event's chain hash
ENTRY_PREFIX = ENTRY_SIZE.to_bytes(2, "big")
MAX_LEVEL = 63
MAX_INDEX = 2**63 - 1
# at most 7 groups: MAX_INDEX has 19 digits (a longer path is refused before int() meets its digit limit)
_TILE_PATH = re.compile(r"tile/(entries|0|[1-9][0-9]?)/((?:x[0-9]{3}/){0,6}[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?")


class TileError(Exception):
    """A tile directory or checkpoint that cannot be written or served; one line."""


@dataclass(frozen=True)
class Tile:
    """One resource: a hash tile at `level` (or an entry bundle, level None), its index and width."""

    level: int | None
    index: int
    width: int

    @property
    def full(self):
        return self.width == WIDTH

    def path(self):
        """Its path under the prefix, as tlog-tiles spells it."""
        level = "entries" if self.level is None else str(self.level)
        return f"tile/{level}/{index_path(self.index)}" + ("" if self.full else f".p/{self.width}")


def index_path(index):
    """N in zero-padded 3-digit path elements, all but the last beginning with `x`."""
    groups = []
    while True:
        groups.append(f"{index % 1000:03d}")
        index //= 1000
        if not index:
            break
    groups.reverse()
    return "/".join([f"x{group}" for group in groups[:-1]] + [groups[-1]])


def parse_path(path):
    """The Tile a request path (`tile/...`, after the prefix) names, or None: one spelling per tile only (no
    leading zero groups, L 0..63, W 1..255), so a cache or a file system never holds one tile twice."""
    match = _TILE_PATH.fullmatch(path)
    if not match:
        return None
    level_text, index_text, width_text = match.groups()
    groups = index_text.split("/")
    if len(groups) > 1 and groups[0] == "x000":
        return None
    index = int("".join(group.lstrip("x") for group in groups))
    level = None if level_text == "entries" else int(level_text)
    width = int(width_text) if width_text else WIDTH
    if width_text and width >= WIDTH or level is not None and level > MAX_LEVEL or index > MAX_INDEX:
        return None
    return Tile(level, index, width)


def tiles_of(size):
    """Every tile a tree of `size` leaves has, level by level, with its entry bundles: the full ones, then
    the partial one at each level's right edge."""
    found = []
    level = 0
    while size >> (HEIGHT * level):
        count = size >> (HEIGHT * level)
        found += [Tile(level, n, WIDTH) for n in range(count // WIDTH)]
        if count % WIDTH:
            found.append(Tile(level, count // WIDTH, count % WIDTH))
        level += 1
    return found


def in_tree(tile, size):
    """Whether a tree of `size` leaves holds `tile` (its level and entries alike), as full or as a partial tile
    of that width at some smaller size: what a server may answer for, a log growing to `size`."""
    count = size >> (HEIGHT * (tile.level or 0))
    return (tile.index + 1) * WIDTH <= count if tile.full else tile.index * WIDTH + tile.width <= count


def tile_root(hashes):
    """The Merkle Tree Hash of a full tile's 256 hashes (a perfect subtree of height 8)."""
    level = [hashes[i:i + HASH] for i in range(0, len(hashes), HASH)]
    while len(level) > 1:
        level = [sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0]


def leaf_hashes(entries):
    """Level-0 tile bytes for a run of entries."""
    return b"".join(sha256(b"\x00" + entry).digest() for entry in entries)


def bundle(entries):
    """An entry bundle: each entry with its big-endian uint16 length."""
    return b"".join(ENTRY_PREFIX + entry for entry in entries)


def subtree_hash(hashes_at, start, height):
    """MTH of the perfect subtree of 2**height leaves from `start` (aligned to its size), from the hashes of a
    level: `hashes_at(level, first, count)` gives `count` 32-byte hashes at tile level `level` (level 0: leaf
    hashes). A subtree of height 8L + b is the MTH of 2**b hashes at level L."""
    level, rest = divmod(height, HEIGHT)
    row = hashes_at(level, start >> (HEIGHT * level), 1 << rest)
    nodes = [row[i:i + HASH] for i in range(0, len(row), HASH)]
    while len(nodes) > 1:
        nodes = [sha256(b"\x01" + nodes[i] + nodes[i + 1]).digest() for i in range(0, len(nodes), 2)]
    return nodes[0]


def tree_root(hashes_at, size):
    """The root of the tree of `size` leaves from tile hashes: its perfect subtrees left to right (one per set
    bit of the size, largest first), folded from the right as RFC 9162 splits."""
    if size == 0:
        return merkle.EMPTY_ROOT
    parts, start = [], 0
    for height in range(size.bit_length() - 1, -1, -1):
        if size >> height & 1:
            parts.append(subtree_hash(hashes_at, start, height))
            start += 1 << height
    root = parts.pop()
    while parts:
        root = merkle.node_hash(parts.pop(), root)
    return root


class Levels:
    """The hashes of every tile level of a tree, from its entries: level 0 the leaf hashes, level L the roots
    of the full tiles of level L - 1, each level one bytes string. Grows as entries are added."""

    def __init__(self):
        self.rows = [bytearray()]

    @property
    def size(self):
        return len(self.rows[0]) // HASH

    def extend(self, entries):
        """Append entries (in order); full tiles roll their root up into the level above."""
        for start in range(0, len(entries), WIDTH):
            self.extend_level(0, leaf_hashes(entries[start:start + WIDTH]))

    def extend_level(self, level, hashes):
        """Append hashes to a level: those of its tiles that became full add their roots to the level above."""
        while len(self.rows) <= level:
            self.rows.append(bytearray())
        row = self.rows[level]
        before = len(row) // HASH
        row += hashes
        first, last = before // WIDTH, len(row) // HASH // WIDTH
        if first < last:
            self.extend_level(level + 1, b"".join(tile_root(row[n * WIDTH * HASH:(n + 1) * WIDTH * HASH])
                                                  for n in range(first, last)))

    def hashes(self, level, first, count):
        row = self.rows[level] if level < len(self.rows) else b""
        data = bytes(row[first * HASH:(first + count) * HASH])
        if len(data) != count * HASH:
            raise TileError(f"no {count} hashes from {first} at level {level}: the tree has {self.size} leaves")
        return data

    def tile(self, tile):
        """The bytes of a hash tile of this tree."""
        return self.hashes(tile.level, tile.index * WIDTH, tile.width)

    def root(self, size=None):
        return tree_root(self.hashes, self.size if size is None else size)


@dataclass(frozen=True)
class Exported:
    """What `export` did: the tree size published, tiles written, tiles already there (and checked)."""

    size: int
    written: int
    kept: int


def export(directory, entries, checkpoint_note, size, root):
    """Write the tiles and entry bundles of the tree of `entries` (the first `size` of them are the tree) to
    `directory`, then `directory/checkpoint`. A tile already there must hold the same bytes (else TileError:
    the ledger or the directory was rewritten, and nothing is overwritten); the tiles' root must be the
    checkpoint's `root`; the checkpoint is replaced last and atomically, so a reader who fetches it finds
    every tile it needs."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    entries = entries[:size]
    levels = Levels()
    levels.extend(entries)
    if levels.root() != root:
        raise TileError(f"the ledger's first {size} events do not hash to the checkpoint's root: it was rewritten "
                        "(or changed while it was read); nothing was written")
    _check_previous(directory, levels)
    written = kept = 0
    for tile in tiles_of(size):
        for resource in (tile, Tile(None, tile.index, tile.width)) if tile.level == 0 else (tile,):
            if resource.level is None:
                first = resource.index * WIDTH
                data = bundle(entries[first:first + resource.width])
            else:
                data = levels.tile(resource)
            if _put(directory / resource.path(), data):
                written += 1
            else:
                kept += 1
    _replace(directory / "checkpoint", checkpoint_note.encode("utf-8"))
    return Exported(size, written, kept)


def _check_previous(directory, levels):
    """A checkpoint already published there must be a prefix of this tree: else the ledger was rolled back
    or rewritten since, and the published files stay as evidence."""
    from . import checkpoint as notes
    path = directory / "checkpoint"
    try:
        raw = path.read_bytes()[:notes.MAX_NOTE_BYTES + 1]
    except FileNotFoundError:
        return
    except OSError as error:
        raise TileError(f"{path}: cannot read ({error.strerror})") from None
    try:
        previous, _ = notes.parse(raw)
    except notes.CheckpointError as error:
        raise TileError(f"{path}: {error}; move it aside to publish here") from None
    if previous.size > levels.size:
        raise TileError(f"{path} publishes {previous.size} events and the ledger has {levels.size}: it was rolled "
                        "back since; nothing was written")
    if levels.root(previous.size) != previous.root:
        raise TileError(f"{path}: the ledger's first {previous.size} events no longer hash to the published root: "
                        "it was rewritten since; nothing was written")


def _put(path, data):
    """Create `path` holding `data`, whole, unless it exists: then it must hold `data`. True if written."""
    try:
        with open(path, "rb") as handle:
            existing = handle.read(len(data) + 1)
    except FileNotFoundError:
        existing = None
    except OSError as error:
        raise TileError(f"{path}: cannot read ({error.strerror})") from None
    if existing is not None:
        if existing != data:
            raise TileError(f"{path} holds other bytes than the ledger's tile: the ledger or the directory was "
                            "rewritten; nothing is overwritten")
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tile-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.link(temporary, path)
    except FileExistsError:  # another writer of the same tree got there first: it must agree
        return _put(path, data)
    except OSError as error:
        raise TileError(f"{path}: cannot write ({error.strerror})") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return True


def _replace(path, data):
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".checkpoint-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise TileError(f"{path}: cannot write ({error.strerror})") from None


def publish(db, directory, signer=None, verifier=None, checkpoint_file=None, origin=None):
    """`ledger tiles`: sign the head of a ledger that verifies (as `ledger checkpoint` does) with `signer`, or
    publish the checkpoint in `checkpoint_file` (cosigned, say) once `verifier`'s signature on it checks, and
    write the tiles of its tree beside it."""
    from . import checkpoint as notes
    from . import pinning
    if checkpoint_file is None:
        note = pinning.signed_head(db, signer, origin)
        head, _ = notes.parse(note)
    else:
        note = pinning.read_note(checkpoint_file)
        try:
            head = notes.verify(note, verifier, origin)
        except notes.CheckpointError as error:
            raise TileError(f"{checkpoint_file}: {error}") from None
        note = note.decode("utf-8")
    entries = pinning.leaves(db, head.size)
    if len(entries) < head.size:
        raise TileError(f"the checkpoint is of {head.size} events and the ledger has {len(entries)}: it was cut "
                        "shorter since")
    return export(directory, entries, note, head.size, head.root)
