"""The RFC 9162 Merkle tree: roots, proofs and their verifiers, checked against the RFC's recursive
definitions and against vectors published by others (transparency-dev/merkle, a real CT log)."""

import base64
import hashlib
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.merkle import (EMPTY_ROOT, consistency_proof, inclusion_proof, leaf_hash, node_hash, root,
                           verify_consistency, verify_inclusion)


# The definitions of RFC 9162 §2.1 (draft-ietf-trans-rfc6962-bis-42 text), as literally as Python allows.
def split(n):
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def mth(d):
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = split(len(d))
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m, d):
    if len(d) == 1:
        return []
    k = split(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m, d, b):
    if m == len(d):
        return [] if b else [mth(d)]
    k = split(len(d))
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


LEAVES = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(300)]  # like event chain hashes
ROOTS = [mth(LEAVES[:n]) for n in range(len(LEAVES) + 1)]
ZERO = bytes(32)


def flipped(proof, i, bit):
    changed = list(proof)
    changed[i] = bytes(b ^ (1 << bit % 8) if j == bit // 8 else b for j, b in enumerate(changed[i]))
    return changed


def flip(value, bit=0):
    return flipped([value], 0, bit)[0]


# transparency-dev/merkle testonly/constants.go (LeafInputs, RootHashes): RFC 6962 reference data.
REFERENCE_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                              "606162636465666768696a6b6c6d6e6f")]
REFERENCE_ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]


def test_the_hashes_are_rfc_6962s():
    assert EMPTY_ROOT == REFERENCE_ROOTS[0] == hashlib.sha256(b"").digest()
    assert leaf_hash(b"") == REFERENCE_ROOTS[1]
    assert node_hash(leaf_hash(b""), leaf_hash(b"\x00")) == REFERENCE_ROOTS[2]


def test_roots_are_the_published_reference_roots():
    for n, want in enumerate(REFERENCE_ROOTS):
        assert root(REFERENCE_LEAVES[:n]) == want, n
        assert root(iter(REFERENCE_LEAVES[:n])) == want, n


def test_the_streamed_root_is_the_recursive_definition_for_every_size_below_300():
    for n in range(300):
        assert root(leaf for leaf in LEAVES[:n]) == ROOTS[n], n  # a generator: read once, in order


_PEAK = """
import hashlib, sys, tracemalloc
from ledger.merkle import root
leaves = (hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(int(sys.argv[1])))
tracemalloc.start()
got = root(leaves)
print(got.hex(), tracemalloc.get_traced_memory()[1])
"""


def test_the_root_reads_its_leaves_once_in_logarithmic_memory():
    """Measured in a process of its own: tracemalloc counts every thread's allocations, and a server
    another test left running would be counted too."""
    n = 2**15 + 5  # 32,773 leaves: a list of them alone would take over a megabyte
    out = subprocess.run([sys.executable, "-c", _PEAK, str(n)], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}).stdout
    got, peak = out.split()
    assert bytes.fromhex(got) == mth([hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)])
    assert int(peak) < 4096


def test_the_rfc_example_tree_of_seven_leaves():
    """RFC 9162 §2.1.5, node names as in its figure."""
    d = LEAVES[:7]
    a, b, c, dd, e, f = (leaf_hash(x) for x in d[:6])
    j = leaf_hash(d[6])
    g, h, i = node_hash(a, b), node_hash(c, dd), node_hash(e, f)
    k, l = node_hash(g, h), node_hash(i, j)
    assert root(d) == node_hash(k, l)
    assert inclusion_proof(d, 0) == [b, h, l]
    assert inclusion_proof(d, 3) == [c, g, l]
    assert inclusion_proof(d, 4) == [f, j, k]
    assert inclusion_proof(d, 6) == [i, k]
    assert consistency_proof(d, 3) == [c, dd, g, l]
    assert consistency_proof(d, 4) == [l]
    assert consistency_proof(d, 6) == [i, j, k]


def test_every_inclusion_proof_below_80_leaves_is_the_rfc_path_and_verifies():
    for n in range(1, 80):
        for m in range(n):
            proof = inclusion_proof(LEAVES[:n], m)
            assert proof == path(m, LEAVES[:n]), (n, m)
            assert len(proof) <= math.ceil(math.log2(n))
            assert verify_inclusion(m, n, leaf_hash(LEAVES[m]), proof, ROOTS[n]), (n, m)


def inclusion_forgeries(m, n, leaf, proof):
    """Every way the transparency-dev/merkle tests corrupt a proof, and more."""
    yield "leaf", (m, n, flip(leaf), proof, ROOTS[n])
    yield "leaf data instead of its hash", (m, n, LEAVES[m], proof, ROOTS[n])
    yield "root", (m, n, leaf, proof, flip(ROOTS[n], 255))
    for i in range(len(proof)):
        for bit in (0, 7, 8 * i + m % 8 + 100, 255):
            yield f"bit {bit} of proof[{i}]", (m, n, leaf, flipped(proof, i, bit), ROOTS[n])
    for other in [-1, n, *range(n)]:
        if other != m:
            yield f"index {other}", (other, n, leaf, proof, ROOTS[n])
    yield "size 0", (m, 0, leaf, proof, ROOTS[n])
    for size in range(m + 1, n + 5):  # another tree, with its true root
        if size != n:
            yield f"tree of {size}", (m, size, leaf, proof, ROOTS[size])
    if proof:
        yield "truncated", (m, n, leaf, proof[:-1], ROOTS[n])
        yield "first dropped", (m, n, leaf, proof[1:], ROOTS[n])
        yield "short element", (m, n, leaf, [proof[0][:31], *proof[1:]], ROOTS[n])
        yield "inserted", (m, n, leaf, [proof[0], ZERO, *proof[1:]], ROOTS[n])
    yield "root appended", (m, n, leaf, [*proof, ROOTS[n]], ROOTS[n])
    yield "zero appended", (m, n, leaf, [*proof, ZERO], ROOTS[n])
    yield "empty appended", (m, n, leaf, [*proof, b""], ROOTS[n])
    yield "zero prepended", (m, n, leaf, [ZERO, *proof], ROOTS[n])


@pytest.mark.slow
def test_every_corrupted_inclusion_proof_below_80_leaves_fails():
    for n in range(1, 80):
        for m in range(n):
            leaf = leaf_hash(LEAVES[m])
            proof = inclusion_proof(LEAVES[:n], m)
            for what, args in inclusion_forgeries(m, n, leaf, proof):
                assert not verify_inclusion(*args), (n, m, what)


def test_no_single_bit_flip_anywhere_passes_an_inclusion_proof():
    n = 13
    for m in range(n):
        leaf, proof = leaf_hash(LEAVES[m]), inclusion_proof(LEAVES[:n], m)
        for bit in range(256):
            assert not verify_inclusion(m, n, flip(leaf, bit), proof, ROOTS[n])
            assert not verify_inclusion(m, n, leaf, proof, flip(ROOTS[n], bit))
            for i in range(len(proof)):
                assert not verify_inclusion(m, n, leaf, flipped(proof, i, bit), ROOTS[n]), (m, i, bit)


def test_every_consistency_proof_below_80_leaves_is_the_rfc_proof_and_verifies():
    for n in range(80):
        for m in range(n + 1):
            proof = consistency_proof(LEAVES[:n], m)
            assert proof == (subproof(m, LEAVES[:n], True) if 0 < m < n else []), (n, m)
            assert len(proof) <= math.ceil(math.log2(n)) + 1 if n else not proof
            assert verify_consistency(m, n, ROOTS[m], ROOTS[n], proof), (n, m)


def consistency_forgeries(m, n, proof):
    yield "old root", (m, n, flip(ROOTS[m]), ROOTS[n], proof)
    yield "new root", (m, n, ROOTS[m], flip(ROOTS[n], 255), proof)
    yield "swapped roots", (m, n, ROOTS[n], ROOTS[m], proof)
    for i in range(len(proof)):
        for bit in (0, 7, 8 * i + m % 8 + 100, 255):
            yield f"bit {bit} of proof[{i}]", (m, n, ROOTS[m], ROOTS[n], flipped(proof, i, bit))
    for old in {m - 1, m + 1, m ^ 2, 0, n} - {m}:
        yield f"old size {old}", (old, n, ROOTS[m], ROOTS[n], proof)
    for old in range(1, n + 1):  # another old tree, with its true root
        if old != m:
            yield f"old tree of {old}", (old, n, ROOTS[old], ROOTS[n], proof)
    yield "new size below the old", (m, m - 1, ROOTS[m], ROOTS[n], proof)
    for new in range(m, n + 5):  # another new tree, with its true root
        if new != n:
            yield f"new tree of {new}", (m, new, ROOTS[m], ROOTS[new], proof)
    yield "empty", (m, n, ROOTS[m], ROOTS[n], [])
    yield "truncated", (m, n, ROOTS[m], ROOTS[n], proof[:-1])
    yield "first dropped", (m, n, ROOTS[m], ROOTS[n], proof[1:])
    yield "short element", (m, n, ROOTS[m], ROOTS[n], [proof[0][:31], *proof[1:]])
    for extra in (ROOTS[m], ROOTS[n], proof[0], ZERO):
        yield "appended", (m, n, ROOTS[m], ROOTS[n], [*proof, extra])
        yield "prepended", (m, n, ROOTS[m], ROOTS[n], [extra, *proof])
    yield "empty appended", (m, n, ROOTS[m], ROOTS[n], [*proof, b""])


@pytest.mark.slow
def test_every_corrupted_consistency_proof_below_80_leaves_fails():
    for n in range(2, 80):
        for m in range(1, n):
            proof = consistency_proof(LEAVES[:n], m)
            for what, args in consistency_forgeries(m, n, proof):
                assert not verify_consistency(*args), (n, m, what)


def test_no_single_bit_flip_anywhere_passes_a_consistency_proof():
    n = 13
    for m in range(1, n):
        proof = consistency_proof(LEAVES[:n], m)
        for bit in range(256):
            assert not verify_consistency(m, n, flip(ROOTS[m], bit), ROOTS[n], proof)
            assert not verify_consistency(m, n, ROOTS[m], flip(ROOTS[n], bit), proof)
            for i in range(len(proof)):
                assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], flipped(proof, i, bit)), (m, i, bit)


def test_the_tree_size_is_taken_on_trust_so_it_must_come_signed_with_the_root():
    """A proof's shape depends only on the index and size, and some sizes share a shape: a proof for
    leaf 0 of 3 leaves also passes as one of 4 leaves with the same root. A checkpoint signs the
    size with the root, which is why the verifiers take both from it."""
    leaf, proof = leaf_hash(LEAVES[0]), inclusion_proof(LEAVES[:3], 0)
    assert verify_inclusion(0, 4, leaf, proof, ROOTS[3])
    assert not verify_inclusion(0, 4, leaf, proof, ROOTS[4])
    proof = consistency_proof(LEAVES[:3], 1)
    assert verify_consistency(1, 4, ROOTS[1], ROOTS[3], proof)
    assert not verify_consistency(1, 4, ROOTS[1], ROOTS[4], proof)


def test_the_trivial_consistency_cases():
    """Equal sizes and an empty old tree need an empty proof (as transparency-dev/merkle)."""
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert verify_consistency(5, 5, ROOTS[5], ROOTS[5], [])
    assert not verify_consistency(0, 5, ZERO, ROOTS[5], [])  # the empty tree has one root
    assert not verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [ROOTS[5]])
    assert not verify_consistency(5, 5, ROOTS[5], ROOTS[4], [])
    assert not verify_consistency(5, 5, ROOTS[5], ROOTS[5], [ROOTS[5]])
    assert not verify_consistency(6, 5, ROOTS[6], ROOTS[5], consistency_proof(LEAVES[:6], 5))
    assert not verify_consistency(-1, 5, ROOTS[5], ROOTS[5], [])


def test_random_larger_trees():
    rng = random.Random(12)
    for n in sorted(rng.sample(range(80, 300), 12)) + [256, 257, 299]:
        d = LEAVES[:n]
        for m in rng.sample(range(n), 5) + [0, n - 1]:
            proof = inclusion_proof(d, m)
            assert proof == path(m, d)
            assert verify_inclusion(m, n, leaf_hash(d[m]), proof, ROOTS[n])
            assert not verify_inclusion(m, n, leaf_hash(d[m]), flipped(proof, rng.randrange(len(proof)), 9), ROOTS[n])
        for m in rng.sample(range(1, n), 5) + [1, min(128, n - 1), n - 1]:
            proof = consistency_proof(d, m)
            assert proof == subproof(m, d, True)
            assert verify_consistency(m, n, ROOTS[m], ROOTS[n], proof)
            assert not verify_consistency(m, n, ROOTS[m], ROOTS[n], flipped(proof, rng.randrange(len(proof)), 9))


class Counted:
    """A sequence that counts its reads: a proof should cost one pass over the leaves, not more."""

    def __init__(self, leaves):
        self.leaves, self.reads = leaves, 0

    def __len__(self):
        return len(self.leaves)

    def __getitem__(self, i):
        self.reads += 1
        return self.leaves[i]


def test_a_proof_reads_each_leaf_at_most_once():
    for n in (1, 2, 7, 100, 257):
        for m in (0, n // 3, n - 1):
            leaves = Counted(LEAVES[:n])
            assert inclusion_proof(leaves, m) == path(m, LEAVES[:n])
            assert leaves.reads == n - 1  # every leaf but the proven one
            leaves = Counted(LEAVES[:n])
            consistency_proof(leaves, m + 1)
            assert leaves.reads <= n


def test_proofs_refuse_positions_outside_the_tree():
    for bad in (-1, 5):
        with pytest.raises(ValueError, match="not in a tree of 5 leaves"):
            inclusion_proof(LEAVES[:5], bad)
    for bad in (-1, 6):
        with pytest.raises(ValueError, match="not between 0 and the tree size 5"):
            consistency_proof(LEAVES[:5], bad)
    with pytest.raises(ValueError):
        inclusion_proof([], 0)
    assert not verify_inclusion(0, 0, leaf_hash(b""), [], EMPTY_ROOT)
    assert verify_inclusion(0, 1, leaf_hash(LEAVES[0]), [], ROOTS[1])
    assert not verify_inclusion(0, 1, leaf_hash(LEAVES[0])[:31], [], ROOTS[1][:31])
    assert not verify_inclusion(0, 1, leaf_hash(LEAVES[0]).hex(), [], ROOTS[1].hex())


def hexes(*values):
    return [bytes.fromhex(v) for v in values]


def test_the_published_proof_vectors():
    """transparency-dev/merkle proof/verify_test.go: its leaf numbers there are 1-based."""
    leaves = REFERENCE_LEAVES
    inclusion = {
        (0, 8): hexes("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        (5, 8): hexes("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        (2, 3): hexes("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        (1, 5): hexes("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
    }
    for (m, n), want in inclusion.items():
        assert inclusion_proof(leaves[:n], m) == want
        assert verify_inclusion(m, n, leaf_hash(leaves[m]), want, REFERENCE_ROOTS[n])
    consistency = {
        (1, 8): inclusion[0, 8],
        (6, 8): hexes("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        (2, 5): hexes("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        (6, 7): hexes("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                      "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    }
    for (m, n), want in consistency.items():
        assert consistency_proof(leaves[:n], m) == want
        assert verify_consistency(m, n, REFERENCE_ROOTS[m], REFERENCE_ROOTS[n], want)


# Google's Argon 2020 Certificate Transparency log, as stored in golang/mod sumdb/tlog/testdata/argon2020:
# get-sth, get-entries?start=10000&end=10000, get-proof-by-hash and get-sth-consistency?first=3654490.
ARGON_SIZE = 961984013
ARGON_ROOT = "dwlueapdd7LaOEnX2W2Wp9v2XE+KzejHRQGHwEx0oaM="
ARGON_OLD_SIZE = 3654490
ARGON_OLD_ROOT = "AuIZ5V6sDUj1vn3Y1K85oOaQ7y+FJJKtyRTl1edIKBQ="
ARGON_LEAF_INDEX = 10000
ARGON_LEAF = (
    "AAAAAAFelPhqUwAAAAViMIIFXjCCBEagAwIBAgIRAOodHzZdqWIFzYyl/SovhCMwDQYJKoZIhvcNAQELBQAwgZAxCzAJBgNVBAYTAkdCMRsw"
    "GQYDVQQIExJHcmVhdGVyIE1hbmNoZXN0ZXIxEDAOBgNVBAcTB1NhbGZvcmQxGjAYBgNVBAoTEUNPTU9ETyBDQSBMaW1pdGVkMTYwNAYDVQQD"
    "Ey1DT01PRE8gUlNBIERvbWFpbiBWYWxpZGF0aW9uIFNlY3VyZSBTZXJ2ZXIgQ0EwHhcNMTcwMjE1MDAwMDAwWhcNMjAwNDE2MjM1OTU5WjBf"
    "MSEwHwYDVQQLExhEb21haW4gQ29udHJvbCBWYWxpZGF0ZWQxHTAbBgNVBAsTFFBvc2l0aXZlU1NMIFdpbGRjYXJkMRswGQYDVQQDDBIqLmxh"
    "bmRsb3Jkcy5jb20uYXUwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQCtPBKKHj4zdrGlCjgTHzb5gx9JCs97DwvBz60f14gDufF2"
    "haWbOxyJ0a3opAMsZnOr8HkARVCwxdqG/PTfACcb0QM7FOlzvxGqxataTYiChwvkkif8F9GlJw69HuHgzhusPf1Ytfk3ps1PRC14MkyrS4kw"
    "Prk/Le4XdkqRpRw62wG4V6IkbzsNMEOl1H8EgUbfyapdOcVxHjIzvBVy56fBRKG05Fr5wNq3Acak5kYZdNsLhhmlrqAfAjiombW3hb3V5blJ"
    "dRC0BDdYHv2+zKey6LqJ1FDoXo6IzbzPpC+aifZy47YX+/N1U64Qn5xlDg7mOP8JXfkNJHbU1TJZHif5AgMBAAGjggHhMIIB3TAfBgNVHSME"
    "GDAWgBSQr2o6lFoL2JDqElZz30O0Oija5zAdBgNVHQ4EFgQUNQSLjkoz01I+iuuoC5lgEp0anhcwDgYDVR0PAQH/BAQDAgWgMAwGA1UdEwEB"
    "/wQCMAAwHQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCME8GA1UdIARIMEYwOgYLKwYBBAGyMQECAgcwKzApBggrBgEFBQcCARYdaHR0"
    "cHM6Ly9zZWN1cmUuY29tb2RvLmNvbS9DUFMwCAYGZ4EMAQIBMFQGA1UdHwRNMEswSaBHoEWGQ2h0dHA6Ly9jcmwuY29tb2RvY2EuY29tL0NP"
    "TU9ET1JTQURvbWFpblZhbGlkYXRpb25TZWN1cmVTZXJ2ZXJDQS5jcmwwgYUGCCsGAQUFBwEBBHkwdzBPBggrBgEFBQcwAoZDaHR0cDovL2Ny"
    "dC5jb21vZG9jYS5jb20vQ09NT0RPUlNBRG9tYWluVmFsaWRhdGlvblNlY3VyZVNlcnZlckNBLmNydDAkBggrBgEFBQcwAYYYaHR0cDovL29j"
    "c3AuY29tb2RvY2EuY29tMC8GA1UdEQQoMCaCEioubGFuZGxvcmRzLmNvbS5hdYIQbGFuZGxvcmRzLmNvbS5hdTANBgkqhkiG9w0BAQsFAAOC"
    "AQEACyHqxUzrexToY7tOv4+kyGPP2D27P1tQpyzeAl1bPObiMhNK2b9vvBLDWAaqm8c0YL1h+DBdLoWzf3xFsIkTCVCjWJTNSNlcYtgRk6or"
    "1s7jWsfXzWqsnPjPPmTIOCw7EfH7Yme3oxPs3UUsmShAgPwNohAtL9GqlqMiKM6v1WU3NHt01jEoNP23LRa6KeNK6AH6WHJykzL223IlhgXj"
    "HTeuQj6lR+TNrQXJuhwTXYe+20rrpPQxc1Pn7AqnvfWgmicRQ7gdIcr4V6+ecTvLfNOaJ0ZYe5G5giuAAdTm7F57pk04f4gyZNYKrj88mvbk"
    "oriN8b6jcWExtrYO6bm2TwAA"
)
ARGON_AUDIT_PATH = """
T46AmJsuOM/gFiGlUp+IJJebp+1Z5qratFNW7U0JyOQ= 9Jj1Feodn42uRYEfffkV4HF/EIPFQ5Zo9IwkxbQ2uhk=
D53/1oCNebF4J59HHgioovKZxrmrKcVuCVhy3Izg8Ck= wSFDgGSrsXRPA+1c8WHoAFCsWeUv8NDyP/Q/SgsyVyY=
516/RcwsgdwdzHn18v1dJHqBkgFUbNhmCIWOGjsMJaE= naTFY2ajLFgrgs5XUl+zJYZnnlJksLGsA1VYwpLfqbY=
mKBRJo6qao+0Kdh/rhGkZUbHUAxMhrtrclrTpIbNjIg= Co4ueOFE7lpifLio94irxxsv1wFMMaK3tPu2ZQkHlro=
yRgy800K6JMYCC05sWfqF2kvCg2riT/pVM+nEa6V5+0= n2O38XJZC8/Wpbwi9HhgVizlUyeUHVZvYyQB1607MRc=
go3tAjuNfNSCj87y2Rg1xOroDknGN1eaf3cgvzObf7Q= 8D0Mj3/J7ySSnFb0afIHYXv6rlOhECnsebY6XKi1IR8=
6rcez46ZU8M5vPiWVMAUfJfAOV0pPP/mch/lYzZhj/M= 2rtIeXrPvSdUyHc5maIgSAVB2BzaKaupWxSAiVayDE4=
nniW/IMFQPN5xw8UsHFn7CRStYbm1gLu7NNa6kkRqJQ= mRPPi7sQS22MduIEyvcNzCNFqIt6kLwYPkNKrVtIcu8=
JvTivzESNS9wHI8aph5a7uieVmtS/p9PciMZ5D6GyOo= UTyQd+Ym0wY4zG+qK806bBORwi1CSVvFQ/KknnqoZj8=
hXODrqN+ff+U6zPqRQ+ZQKs6im1fPcxIerDSfNwflhE= II6GE+WY/DrpZzfHztLwkR46o37zVkNLCyPYlf68zA0=
d609kWWcNBllbA8Jb/ad4XAVVGnScLRmtP8FYyr+Dck= rikBsP0G0gioXRpBFED2CzQdSLrGPvRd0bEcbEZw1rI=
GXIElfmnRuWfbA4z7ubV/UwlpSRUbUeec7oL5HDDnh0= pR0SH/NYP6s9+8azWwaeUXA4Ze/3WCIgMfh5YW6wvcE=
f3GuAKYVrF8RBg3s15jvA/YvV9oAliWtzP/imwPhQVA= WHn8zDxlVgkV+lSlmzaOdfSBrTHoRr5nT3d76q0KKWE=
f2uV2ZxVgULzLPKuZcowRY3ZY7fRlX59iDBjV1R8kNQ= NzQVjJsvQwbi7WStMr9oFkh9VbHfK7LB6o7WwAqwNTs=
C0LttBeYHZHgL+032JIcJC3CTBIyza/hsbmJUgJfmDI= nixU5CWTFVDlF4BGdcU6kA7WSYurEpe9jRWc+F/7sOc=
"""
ARGON_CONSISTENCY = """
80Sfbj6UQEdVSZCSIgh9NMPj3vCBzcc1A48B2crJSWg= FZcrgAHUk6nNPviJZq8kEK6jCG1d18pJOFE45ZDc1TQ=
Q67reWXmPBo1UfmwBap4Xi9PMPfFdUSSw3WGlRZdG7k= eJ7CyhR4PxzBxDIsWgrVYW1eFUb9ndgf46tFmiqVrxA=
QrDwp062Grm5WY8KdrhFsBuuNjGzRox2Jb8PmVL5OYw= XM4YMjMEdLH/XJam/ZWyaP14k3cmsOtnPsOWQ54lW1s=
SGiBh+jOTGccXU48ZzgQ88lRcBmtB4wz4oSDndv2QTg= WAS6txqNLYKGL1GdBdpqmV42TTfn6cJsuDsqLXuTCNI=
QFmRS0rirUA7ZN3lxFjDncV+E1OCrn3NUB4RCp+5fzc= Hdbp7It2XBNZmNDBpCN/KPd7vfVqxgzwOosqVIaEA9E=
mxvHL0ZiblBdD7j7pIa1jlfB0gSqfJ6oX0UGo7L0VsU= q5hjyvoW6TL/PThgcitpDcSTrnKX2p1+aqscqH2euRA=
jTOWDqt3IHj2NVFeezyBz2ofpru+ztEywqKUAfFclKI= GIRn0w3HqJdvU9j1WVD//eR6lk2AaTVjyzjsJNP8U88=
x52GJvxG81fnQBrgOTbll1A5tz95/LXK0Ag1NhB0r1I= 6/0OqrcTgc3o5dD5PymmoC96lB9yLPFuTHVvLy8fSGk=
Gf+iKLfcXO5l4JEFmsZvSdG5q1uEeWPfYLrds6pmjz0= DGuaco+McyM3AfRSF6qX7RwSetwe2ieYJmxw5e9rVx0=
2tQJ9V32hnYp+fdpP6TcjmgJmLeNVOMKM0Ml1kk4cNU= 3PapK+IkyJr8I9yAErAmzuZezzLMzsg+PfeRCgNW8NQ=
s6xiYeejb+wtqHA+URJZ2I/SCPyIW8coP6aB00FJbMY= z9lSpmdTcr5M5ZzKlc4EPh3SrSypKFdk6JUF/UccaZU=
GXIElfmnRuWfbA4z7ubV/UwlpSRUbUeec7oL5HDDnh0= pR0SH/NYP6s9+8azWwaeUXA4Ze/3WCIgMfh5YW6wvcE=
f3GuAKYVrF8RBg3s15jvA/YvV9oAliWtzP/imwPhQVA= WHn8zDxlVgkV+lSlmzaOdfSBrTHoRr5nT3d76q0KKWE=
f2uV2ZxVgULzLPKuZcowRY3ZY7fRlX59iDBjV1R8kNQ= NzQVjJsvQwbi7WStMr9oFkh9VbHfK7LB6o7WwAqwNTs=
C0LttBeYHZHgL+032JIcJC3CTBIyza/hsbmJUgJfmDI= nixU5CWTFVDlF4BGdcU6kA7WSYurEpe9jRWc+F/7sOc=
"""


def b64s(text):
    return [base64.b64decode(word) for word in text.split()]


def test_proofs_from_a_real_certificate_transparency_log_verify():
    new_root, old_root = base64.b64decode(ARGON_ROOT), base64.b64decode(ARGON_OLD_ROOT)
    leaf = leaf_hash(base64.b64decode(ARGON_LEAF))
    audit_path, consistency = b64s(ARGON_AUDIT_PATH), b64s(ARGON_CONSISTENCY)
    assert verify_inclusion(ARGON_LEAF_INDEX, ARGON_SIZE, leaf, audit_path, new_root)
    assert verify_consistency(ARGON_OLD_SIZE, ARGON_SIZE, old_root, new_root, consistency)
    assert not verify_inclusion(ARGON_LEAF_INDEX + 1, ARGON_SIZE, leaf, audit_path, new_root)
    assert not verify_inclusion(ARGON_LEAF_INDEX, ARGON_SIZE, leaf, flipped(audit_path, 17, 3), new_root)
    assert not verify_consistency(ARGON_OLD_SIZE + 1, ARGON_SIZE, old_root, new_root, consistency)
    assert not verify_consistency(ARGON_OLD_SIZE, ARGON_SIZE, old_root, new_root, flipped(consistency, 3, 3))
