"""An RFC 9162 (RFC 6962) Merkle tree over the ledger's events, and its proofs.

The leaves are the events in id order; a leaf's data is the event's stored chain hash (32 raw bytes),
so the tree size is the number of events. Hashing is exactly the Certificate Transparency one, so a
root, an inclusion proof or a consistency proof can be checked by any RFC 6962 / 9162 verifier (Go's
golang.org/x/mod/sumdb/tlog, transparency-dev/merkle) and by the two small `verify_*` functions here,
which need nothing of the ledger:

    leaf_hash(d)     = SHA-256(0x00 || d)
    node_hash(l, r)  = SHA-256(0x01 || l || r)
    MTH({})          = SHA-256("")
    MTH(D[n])        = node_hash(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two < n

Pure and stdlib only: no I/O, so the store decides how leaves are read.
"""

from collections.abc import Iterable, Sequence
from hashlib import sha256

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """The 0x00 prefix keeps a leaf from ever being read as an inner node (RFC 6962 §2.1)."""
    return sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The 0x01 prefix separates inner nodes from leaves (second-preimage resistance)."""
    return sha256(b"\x01" + left + right).digest()


def root(leaves: Iterable[bytes]) -> bytes:
    """MTH of the leaf data, read once in order: O(n) time, O(log n) memory.

    The stack holds the roots of the perfect subtrees so far, largest first (one per set bit of the
    count, RFC 9162 §2.1.2). Leaf i+1 merges as many times as the count i+1 has trailing zero
    bits. Folding the stack right to left at the end is the recursive definition's split at the
    largest power of two, applied from the right.
    """
    stack = []
    count = 0
    for data in leaves:
        h = sha256(b"\x00" + data).digest()
        count += 1
        merges = count
        while not merges & 1:
            h = sha256(b"\x01" + stack.pop() + h).digest()
            merges >>= 1
        stack.append(h)
    if not stack:
        return EMPTY_ROOT
    h = stack.pop()
    while stack:
        h = sha256(b"\x01" + stack.pop() + h).digest()
    return h


def prefix_roots(leaves: Iterable[bytes], sizes: Iterable[int]) -> dict[int, bytes]:
    """{n: MTH of the first n leaves} for every n in `sizes`, reading the leaves once: checking many
    checkpoints of one ledger costs one pass, not one per checkpoint."""
    wanted = sorted(set(sizes))
    roots = {0: EMPTY_ROOT} if wanted and wanted[0] == 0 else {}
    pending = iter(n for n in wanted if n > 0)
    target = next(pending, None)
    stack: list[bytes] = []
    count = 0
    for data in leaves:
        if target is None:
            break
        h = sha256(b"\x00" + data).digest()
        count += 1
        merges = count
        while not merges & 1:
            h = sha256(b"\x01" + stack.pop() + h).digest()
            merges >>= 1
        stack.append(h)
        if count == target:
            folded = stack[-1]
            for left in reversed(stack[:-1]):
                folded = sha256(b"\x01" + left + folded).digest()
            roots[count] = folded
            target = next(pending, None)
    return roots


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1): where RFC 9162 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    return root(map(leaves.__getitem__, range(start, end)))


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D_n) of RFC 9162 §2.1.3.1: the sibling subtree roots, from the leaf upward.

    `leaves` needs random access (a list of the events' hashes will do); each leaf is hashed
    once, so a proof costs about one `root()` over the whole tree.
    """
    start, end = 0, len(leaves)
    if not 0 <= index < end:
        raise ValueError(f"leaf index {index} is not in a tree of {end} leaves")
    path = []
    while end - start > 1:
        middle = start + _split(end - start)
        if index < middle:
            path.append(_subtree(leaves, middle, end))
            end = middle
        else:
            path.append(_subtree(leaves, start, middle))
            start = middle
    path.reverse()
    return path


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D_n) of RFC 9162 §2.1.4.1: that the first old_size leaves are unchanged.

    Empty when old_size is 0 or n (every tree extends the empty one; a tree extends itself), as
    `verify_consistency` expects.
    """
    size = len(leaves)
    if not 0 <= old_size <= size:
        raise ValueError(f"old size {old_size} is not between 0 and the tree size {size}")
    if old_size in (0, size):
        return []
    proof = []
    start, end, m, known = 0, size, old_size, True  # SUBPROOF(m, D[start:end], known)
    while m < end - start:
        middle = start + _split(end - start)
        if m <= middle - start:
            proof.append(_subtree(leaves, middle, end))
            end = middle
        else:
            proof.append(_subtree(leaves, start, middle))
            m -= middle - start
            start = middle
            known = False
    if not known:
        proof.append(_subtree(leaves, start, end))
    proof.reverse()
    return proof


def _hashes(*values) -> bool:
    return all(isinstance(v, bytes) and len(v) == HASH_SIZE for v in values)


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does `proof` put the leaf hash `leaf` at `index` in the tree `root_hash`?

    `leaf` is `leaf_hash(data)`, not the data. The size is trusted as given: it must come signed
    with the root (a checkpoint), since a proof for leaf 0 of 3 leaves also fits 4 leaves.
    """
    if not (0 <= index < size and _hashes(leaf, root_hash, *proof)):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root_hash


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is the tree `new_root` the tree `old_root` with leaves appended?

    RFC 9162 defines the proof for 0 < old_size < new_size. Like transparency-dev/merkle, an equal
    size needs an empty proof and the same root; an empty old tree needs an empty proof (and, here,
    its root must be the empty tree's).
    """
    if not (0 <= old_size <= new_size and _hashes(old_root, new_root, *proof)):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a perfect subtree: the old root is the proof's first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
