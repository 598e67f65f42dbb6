"""Signed checkpoints: C2SP signed-note and tlog-checkpoint, byte for byte as Go's note package makes them,
checked against vectors signed by others (the C2SP spec, golang.org/x/mod, sum.golang.org)."""

import base64
import os
import stat

import pytest

from ledger import checkpoint
from ledger.checkpoint import (Checkpoint, CheckpointError, load_signer, load_verifier, new_key, open_note, parse,
                               parse_signer, parse_verifier, sign, sign_note, verify, write_new_key)

ROOT = bytes(range(32))
SEAL = "seal 42 " + base64.b64encode(bytes(32)).decode()

# c2sp.org/signed-note, "Verifier keys" example (quoted verbatim by several implementations' tests).
SPEC_KEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = ("This is an example message.\n\n"
             "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")

# golang/mod sumdb/note/note_test.go (TestNewSigner, TestSign, TestOpen).
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VERIFIER = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"

# A checkpoint signed by Go's checksum database, sum.golang.org, with its well-known key, as stored in
# transparency-dev/formats log/note_test.go (TestSumDBNoteParsing).
SUMDB_KEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_CHECKPOINT = ("go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n"
                    "— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n")

# Key pairs made by Go's note.GenerateKey, from transparency-dev/formats log/note_test.go.
GO_KEY_PAIRS = [
    ("PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",
     "Log+2271c621+AemuH5ooBpEPcr+W8onrjA1NfuzBVHdezakU81Ekarvs"),
    ("PRIVATE+KEY+Known+451c786d+AQPRoE2+Z+Ed1HaHBA9F/FfracvcZ2rDU39kCecMEoci",
     "Known+451c786d+AXAQ0T7lbwuY4ABJ9/MYY9bWV3hmSyOGVt2x42NkmdUH"),
    ("PRIVATE+KEY+KnownAgain+4893b26c+ARhZda/l25zjGZswYLDZsLNRzNpmv5wYTN9IoTr1OJ2+",
     "KnownAgain+4893b26c+AQ+LR7BFF/F/dkpIBjBpSvT0crkteizuUkavAoGeaYMj"),
]


@pytest.fixture(scope="module")
def key():
    signer_text, verifier_text = new_key("example.org/ledger")
    return parse_signer(signer_text), parse_verifier(verifier_text)


def refused(note, verifier, match, **kwargs):
    with pytest.raises(CheckpointError, match=match) as raised:
        verify(note, verifier, **kwargs)
    assert "\n" not in str(raised.value)


# Interoperability: vectors signed by other implementations.

def test_the_spec_example_key_and_note():
    verifier = parse_verifier(SPEC_KEY)
    assert verifier.name == "example.com/foo"
    assert verifier.key_id.hex() == "530d903a"
    assert checkpoint.key_id("example.com/foo", verifier.public_key).hex() == "530d903a"
    assert verifier.public_key.hex() == "e932791ae6e7a840a46164c904786426d5e7821dd8b29a00d61cae72afdd4da4"
    assert verifier.text() == SPEC_KEY
    assert open_note(SPEC_NOTE, verifier) == "This is an example message.\n"


def test_signing_reproduces_gos_note_sign_byte_for_byte():
    signer = parse_signer(GO_SIGNER)
    assert signer.text() == GO_SIGNER
    assert signer.verifier.text() == GO_VERIFIER
    assert sign_note(GO_TEXT, signer) == GO_TEXT + "\n" + PETER_SIG  # Ed25519 is deterministic


def test_go_generated_key_pairs_match():
    for signer_text, verifier_text in GO_KEY_PAIRS:
        assert parse_signer(signer_text).verifier == parse_verifier(verifier_text)


def test_a_checkpoint_signed_by_sum_golang_org_verifies():
    got = verify(SUMDB_CHECKPOINT, load_verifier(SUMDB_KEY), origin="go.sum database tree")
    assert got == Checkpoint("go.sum database tree", 6476701,
                             base64.b64decode("mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk="))
    refused(SUMDB_CHECKPOINT, parse_verifier(SUMDB_KEY), "is for 'go.sum database tree', not 'sum.golang.org'",
            origin="sum.golang.org")
    refused(SUMDB_CHECKPOINT.replace("6476701", "6476702"), parse_verifier(SUMDB_KEY), "does not verify")


def test_signatures_by_unknown_keys_are_ignored():
    """As Go's TestOpen: a note signed by Peter and Enoch opens with either key alone."""
    both = GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(both, parse_verifier(GO_VERIFIER)) == GO_TEXT
    assert open_note(both, parse_verifier(ENOCH_VERIFIER)) == GO_TEXT
    with pytest.raises(CheckpointError, match=r"signed by another key \(PeterNeumann\+c74f20a3, EnochRoot\+af0cfe78\)"):
        open_note(both, parse_verifier(SPEC_KEY))


def test_gos_malformed_notes_are_refused():
    """The bad messages of Go's TestOpen, plus its 101 signatures."""
    peter = parse_verifier(GO_VERIFIER)
    for bad in (GO_TEXT, GO_TEXT + "\n", GO_TEXT + "\n" + PETER_SIG[:-1], "\x01" + GO_TEXT + "\n" + PETER_SIG,
                (GO_TEXT + "\n" + PETER_SIG).encode().replace(b"If", b"\xffIf"),
                GO_TEXT + "\n" + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
                GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
                GO_TEXT + "\n" + PETER_SIG * 101):
        with pytest.raises(CheckpointError):
            open_note(bad, peter)
    with pytest.raises(CheckpointError, match="does not verify"):  # Go's "invalid signature" case
        open_note(GO_TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], peter)


def test_gos_mangled_keys_are_refused():
    """As Go's TestNewVerifier and TestNewSigner: every proper substring, and every byte + 1."""
    for text, parser in ((GO_VERIFIER, parse_verifier), (GO_SIGNER, parse_signer)):
        for i in range(len(text)):
            for j in range(i + 1, len(text) + 1):
                if (i, j) != (0, len(text)):
                    with pytest.raises(CheckpointError):
                        parser(text[i:j])
            with pytest.raises(CheckpointError):
                parser(text[:i] + chr(ord(text[i]) + 1) + text[i + 1:])
    for bad in ("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # wrong length
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"):  # unknown algorithm
        with pytest.raises(CheckpointError, match="not an Ed25519 key"):
            parse_verifier(bad)


# Our own checkpoints.

def test_a_checkpoint_round_trips(key):
    signer, verifier = key
    for cp in (Checkpoint("example.org/ledger", 0, ROOT), Checkpoint("example.org/ledger", 1234, ROOT, (SEAL,)),
               Checkpoint("ledger at /srv/reg ledger.db — ünïcode", 2**63 - 1, ROOT, ("a", "b c"))):
        note = sign(cp, signer)
        assert note == (cp.note_text() + "\n— example.org/ledger "
                        + base64.b64encode(verifier.key_id + signer.sign(cp.note_text().encode())).decode() + "\n")
        assert verify(note, verifier) == cp
        assert verify(note.encode(), verifier, origin=cp.origin) == cp
        parsed, signatures = parse(note)
        assert parsed == cp
        assert [(s.name, s.key_id) for s in signatures] == [("example.org/ledger", verifier.key_id)]


def test_the_note_text_is_the_checkpoint_format(key):
    cp = Checkpoint("example.org/ledger", 1234, ROOT, (SEAL,))
    assert cp.note_text() == f"example.org/ledger\n1234\n{base64.b64encode(ROOT).decode()}\n{SEAL}\n"
    note = sign(cp, key[0])
    text, signature_line = note.split("\n\n")
    assert text + "\n" == cp.note_text()
    assert signature_line.startswith("\u2014 example.org/ledger ") and signature_line.endswith("=\n")
    assert len(base64.b64decode(signature_line.split()[-1])) == 4 + 64


def test_another_key_is_named_in_the_refusal(key):
    note = sign(Checkpoint("example.org/ledger", 5, ROOT), key[0])
    same_name = parse_verifier(new_key("example.org/ledger")[1])
    refused(note, same_name, r"^the checkpoint is signed by another key named example.org/ledger, not by the key given "
                             rf"\(example.org/ledger\+{same_name.key_id.hex()}\)$")
    refused(note, parse_verifier(SPEC_KEY),
            rf"^the checkpoint is signed by another key \(example.org/ledger\+{key[1].key_id.hex()}\), "
            r"not by example.com/foo\+530d903a$")


def test_a_forged_key_id_does_not_help(key):
    """A key with our name and key ID but another public key: the signature must still fail."""
    signer, verifier = key
    note = sign(Checkpoint("example.org/ledger", 5, ROOT), signer)
    impostor = checkpoint.Verifier(verifier.name, verifier.key_id, parse_verifier(SPEC_KEY).public_key)
    refused(note, impostor, r"^the signature does not verify: the checkpoint was altered or signed by another key$")


def test_one_byte_changed_anywhere_fails(key):
    signer, verifier = key
    note = sign(Checkpoint("example.org/ledger", 1234, ROOT, (SEAL,)), signer).encode()
    for i in range(len(note)):
        for changed in (note[:i] + bytes([note[i] ^ 0x01]) + note[i + 1:],
                        note[:i] + bytes([note[i] ^ 0x20]) + note[i + 1:],
                        note[:i] + note[i + 1:]):
            with pytest.raises(CheckpointError):
                verify(changed, verifier)
    with pytest.raises(CheckpointError):
        verify(note[:-1] + b"\n\n", verifier)


def test_every_signature_by_the_key_must_verify(key):
    signer, verifier = key
    note = sign(Checkpoint("example.org/ledger", 5, ROOT), signer)
    text, line = note.split("\n\n")
    name, encoded = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 1
    bad_line = f"{name} {base64.b64encode(bytes(raw)).decode()}\n"
    refused(f"{text}\n\n{line}{bad_line}", verifier, "does not verify")
    other = parse_signer(GO_SIGNER)
    with_other = note + sign_note(text + "\n", other).split("\n\n")[1]
    assert verify(with_other, verifier) == verify(note, verifier)


def test_malformed_checkpoints_are_named(key):
    signer, verifier = key
    root64 = base64.b64encode(ROOT).decode()
    body_errors = {
        f"o\n007\n{root64}\n": "the tree size '007' is not a decimal number without leading zeros",
        f"o\n00\n{root64}\n": "leading zeros",
        f"o\n\u0663\n{root64}\n": "not a decimal number",  # an Arabic-Indic three: a digit, not an ASCII one
        f"o\n+5\n{root64}\n": "not a decimal number",
        f"o\n-1\n{root64}\n": "not a decimal number",
        f"o\n 5\n{root64}\n": "not a decimal number",
        f"o\n{2**63}\n{root64}\n": "not a decimal number",
        f"o\n{'9' * 5000}\n{root64}\n": "not a decimal number",
        f"o\n5\n{base64.b64encode(ROOT[:31]).decode()}\n": "the root hash is not 32 bytes of standard base64",
        f"o\n5\n{base64.b64encode(ROOT + b'x').decode()}\n": "not 32 bytes",
        f"o\n5\n{base64.urlsafe_b64encode(bytes([251]) * 32).decode()}\n": "not 32 bytes of standard base64",
        f"o\n5\n{root64[:-2]}B=\n": "not 32 bytes",  # the same bytes, spelled non-canonically
        f"o\n5\n{root64.rstrip('=')}\n": "not 32 bytes",
        f"o\n5\n{ROOT.hex()}\n": "not 32 bytes",
        "o\n5\n": "expected an origin, a tree size and a root hash line",
        f"o\n5\n{root64}\n\next\n": "then only non-empty extension lines",
        f"\n5\n{root64}\n": "expected an origin",
    }
    for body, message in body_errors.items():
        refused(sign_note(body, signer), verifier, message)  # a good signature on a bad body
    note = sign(Checkpoint("example.org/ledger", 5, ROOT), signer)
    note_errors = {
        note.replace("\n", "\r\n"): r"control character U\+000D \(Windows line endings\?\)",
        "\t" + note: r"control character U\+0009",
        note.encode().replace(b"example", b"\xc3\x28xample", 1): r"not UTF-8 \(byte 0\)",
        note.split("\n\n")[0] + "\n": "the checkpoint has no signature",
        note.split("\n\n")[0] + "\n\n": "the checkpoint has no signature",
        note + "\n": "a blank line after the signature lines",
        note[:-1]: "the last signature line does not end with a newline",
        note.replace("\u2014", "-"): "is not a signature line",
        note.replace("\u2014 example.org/ledger ", "\u2014 example.org/ledger  "): "is not a signature line",
        note.replace("=\n", "\n"): "is not a signature line",
        note + "\u2014 a+b AAAAAAA=\n": "is not a signature line",
        note + "\u2014 k AAAA\n": "is not a signature line",  # a key ID and no signature
        note + "\u2014 k AAAAAAA=\n" * 100: "more than 100 signature lines",
        note + " " * checkpoint.MAX_NOTE_BYTES: "larger than 64 KiB",
    }
    for bad, message in note_errors.items():
        refused(bad, verifier, message)


def test_the_note_is_bounded_but_sixteen_signatures_pass(key):
    signer, verifier = key
    note = sign(Checkpoint("example.org/ledger", 5, ROOT), signer)
    text = note.split("\n\n")[0] + "\n"
    others = "".join(sign_note(text, parse_signer(new_key(f"witness{i}")[0])).split("\n\n")[1] for i in range(15))
    assert verify(note + others, verifier).size == 5
    assert verify(text + "\n" + others + note.split("\n\n")[1], verifier).size == 5


def test_invalid_checkpoints_cannot_be_made(key):
    for args in (("", 5, ROOT), ("a\nb", 5, ROOT), ("a\x00", 5, ROOT), ("a\udc80", 5, ROOT), ("o", -1, ROOT),
                 ("o", 2**63, ROOT), ("o", True, ROOT), ("o", "5", ROOT), ("o", 5, ROOT[:31]), ("o", 5, ROOT.hex()),
                 ("o", 5, ROOT, ("",)), ("o", 5, ROOT, ("a\nb",)), ("o", 5, ROOT, ["a"]), ("o", 5, ROOT, "ab")):
        with pytest.raises(CheckpointError):
            Checkpoint(*args)
    with pytest.raises(CheckpointError, match="larger than 64 KiB"):
        sign(Checkpoint("o", 5, ROOT, ("x" * checkpoint.MAX_NOTE_BYTES,)), key[0])
    with pytest.raises(CheckpointError, match="must end with a newline"):
        sign_note("abc", key[0])


# Keys.

def test_new_keys(key):
    signer, verifier = key
    assert signer.verifier == verifier
    assert verifier.text().startswith(f"example.org/ledger+{verifier.key_id.hex()}+A")
    assert signer.text().startswith(f"PRIVATE+KEY+example.org/ledger+{verifier.key_id.hex()}+A")
    assert signer.seed.hex() not in repr(signer) and "seed" not in repr(signer)
    for bad in ("", "a b", "a+b", "a\tb", "a\u00a0b", "a\x00b"):
        with pytest.raises(CheckpointError, match="invalid key name"):
            new_key(bad)


def test_key_files(tmp_path):
    path = tmp_path / "ledger.key"
    verifier = write_new_key(path, "example.org/ledger")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert (tmp_path / "ledger.key.pub").read_text() == verifier.text() + "\n"
    signer = load_signer(path)
    assert signer.verifier == verifier
    assert load_verifier(tmp_path / "ledger.key.pub") == verifier
    assert load_verifier(str(tmp_path / "ledger.key.pub")) == verifier
    assert load_verifier(verifier.text()) == verifier
    note = sign(Checkpoint("example.org/ledger", 5, ROOT), signer)
    assert verify(note, load_verifier(tmp_path / "ledger.key.pub")).size == 5


def test_key_files_are_never_overwritten(tmp_path):
    path = tmp_path / "ledger.key"
    write_new_key(path, "a")
    before = path.read_bytes(), (tmp_path / "ledger.key.pub").read_bytes()
    with pytest.raises(CheckpointError, match="ledger.key already exists: refusing to overwrite a key"):
        write_new_key(path, "a")
    assert (path.read_bytes(), (tmp_path / "ledger.key.pub").read_bytes()) == before
    lone = tmp_path / "lone.key"
    (tmp_path / "lone.key.pub").write_text("stale\n")
    with pytest.raises(CheckpointError, match="lone.key.pub already exists"):
        write_new_key(lone, "a")
    assert not lone.exists()  # no private key left without its public half
    (tmp_path / "link.key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match="already exists"):
        write_new_key(tmp_path / "link.key", "a")
    assert not (tmp_path / "elsewhere").exists()


def test_key_file_errors_are_one_line(tmp_path):
    path = tmp_path / "ledger.key"
    write_new_key(path, "a")
    cases = [
        (lambda: load_verifier(path), "ledger.key: this is a private signer key: give its public verifier key"),
        (lambda: load_signer(tmp_path / "ledger.key.pub"), "ledger.key.pub: not a signer key"),
        (lambda: load_signer(tmp_path / "missing"), "cannot read the key file .*missing: No such file"),
        (lambda: load_verifier(str(tmp_path / "missing")), "no key file .*missing, and it is not a verifier key"),
        (lambda: load_verifier("a+00000000+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"),
         r"the verifier key a\+00000000 is damaged: its key ID does not match its key"),
        (lambda: load_signer(tmp_path), "cannot read the key file"),
    ]
    (tmp_path / "big").write_bytes(b"a" * 5000)
    cases.append((lambda: load_verifier(tmp_path / "big"), "not a key file: larger than 4096 bytes"))
    (tmp_path / "binary").write_bytes(b"\xff\xfe")
    cases.append((lambda: load_verifier(tmp_path / "binary"), "not a key file: not UTF-8"))
    damaged = path.read_text().replace("+A", "+B", 1)
    (tmp_path / "damaged").write_text(damaged)
    cases.append((lambda: load_signer(tmp_path / "damaged"), "damaged.*not an Ed25519 key"))
    for call, message in cases:
        with pytest.raises(CheckpointError, match=message) as raised:
            call()
        assert "\n" not in str(raised.value)
