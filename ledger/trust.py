"""What `verify`, `checkpoint`, `tiles`, `prove` and `witness` are given to trust, loaded and checked: pins
(checkpoint files or EVENT_ID:HASH) with the key that signed them, witnesses' keys and cosignatures, and
the witness server. pinning.py, checkpoint.py and witness.py do the work; errors here are click's, one
line naming the option, so they are the CLI's exit statuses.
"""

import os
import signal
import threading

import click

from .terminal import printable


def verifier(key):
    """The verifier key from a file or its text; a signer key file gives its own verifier."""
    from . import checkpoint
    try:
        return checkpoint.load_verifier(key)
    except checkpoint.CheckpointError:
        if not os.path.isfile(key):
            raise
        try:
            return checkpoint.load_signer(key).verifier
        except checkpoint.CheckpointError:
            pass
        raise


def witnesses(expect, keys, threshold):
    """(witness keys, threshold) for verify --witness, or None."""
    if not keys:
        if threshold:
            raise click.UsageError("--witness-threshold needs --witness KEY")
        return None
    from . import pinning, witness
    if all(pinning.is_event_pin(text) for text in expect):
        raise click.UsageError("--witness needs --expect checkpoint files: their cosignatures are what it checks")
    if threshold and threshold > len(keys):
        raise click.UsageError(f"--witness-threshold {threshold}: only {len(keys)} --witness keys are given")
    try:
        verifiers = [witness.load_cosigner_verifier(key) for key in keys]
    except witness.WitnessError as error:
        raise click.BadParameter(str(error), param_hint="--witness") from None
    return verifiers, threshold or len(verifiers)


def pins(expect, public_key, option="--expect", witnesses=None):
    """The pins `option` gives; a checkpoint file counts only with --key, as anyone can write one."""
    from . import checkpoint, pinning
    unsigned = next((text for text in expect if not pinning.is_event_pin(text)), None)
    if unsigned is not None and not public_key:
        unpinned = "; EVENT_ID:HASH needs none" if option == "--expect" else ""
        raise click.UsageError(f"{option} {printable(unsigned)}: a checkpoint needs --key PUBLIC, the verifier key "
                               f"that must have signed it (anyone can write an unsigned one){unpinned}")
    try:
        key = verifier(public_key) if public_key else None
    except checkpoint.CheckpointError as error:
        raise click.ClickException(f"--key: {error}") from None
    try:
        return pinning.read_pins(expect, key, witnesses=witnesses)
    except (checkpoint.CheckpointError, pinning.PinError) as error:  # a pin that cannot be trusted fails verify
        raise click.ClickException(f"{option}: {error}") from None


def tree(value, public_key):
    """A tree given as a size, or by a checkpoint file (params.TreeSize): then (size, the root it pins), which
    the ledger's tree of that size must still have."""
    if isinstance(value, int):
        return value, None
    pin = pins([value], public_key, "--consistency")[0]
    return pin.size, pin.root


def signer(key_path, new_key, name):
    """`ledger checkpoint`'s signer key; with --new-key, None once the key is made and its verifier printed."""
    from . import checkpoint
    try:
        if new_key:
            click.echo(checkpoint.write_new_key(new_key, name).text())
            return None
        if not key_path:
            raise click.UsageError("give --key FILE to sign with, or --new-key FILE to make one")
        return checkpoint.load_signer(key_path)
    except checkpoint.CheckpointError as error:
        raise click.ClickException(str(error)) from None


def signed_head(db, db_path, key, origin, witness_urls, witness_keys):
    """The ledger's head signed with `key` (verified first, as `ledger verify` does), and each witness's
    cosignature lines on it."""
    from . import checkpoint, pinning
    from . import store
    try:
        signed = pinning.signed_head(db, key, origin)
    except (pinning.PinError, store.StoreError, checkpoint.CheckpointError) as error:
        raise click.ClickException(f"{db_path}: {printable(str(error))}") from None
    if witness_urls:
        signed += "".join(_cosignatures(db, signed, witness_urls, witness_keys))
    return signed


def _cosignatures(db, signed, urls, keys):
    """Every witness's cosignature lines on the signed checkpoint; a witness that does not cosign fails it all."""
    from . import checkpoint, pinning, witness
    from .transport import Transport
    try:
        verifiers = [witness.load_cosigner_verifier(key) for key in keys]
    except witness.WitnessError as error:
        raise click.BadParameter(str(error), param_hint="--witness-key") from None
    leaves = pinning.leaves(db, checkpoint.parse(signed)[0].size)
    transport = Transport(deadline=30)
    try:
        return [line for url in urls
                for line in witness.request_cosignatures(signed, leaves, url, verifiers, transport)]
    except witness.WitnessError as error:
        raise click.ClickException(printable(str(error))) from None
    finally:
        transport.close()


def tile_keys(key_path, checkpoint_path):
    """`ledger tiles`' keys: (signer, None) to sign the head, or (None, verifier) for a --checkpoint file."""
    from . import checkpoint
    if not key_path:
        raise click.UsageError("give --key FILE: the signer key (or, with --checkpoint, the verifier key)")
    try:
        if checkpoint_path:
            return None, verifier(key_path)
        return checkpoint.load_signer(key_path), None
    except checkpoint.CheckpointError as error:
        raise click.BadParameter(str(error), param_hint="--key") from None


def serve_witness(state_path, key_path, new_key, name, logs, host, port):
    """`ledger witness`: with --new-key, make the key and print it; else serve until SIGINT or SIGTERM."""
    from . import checkpoint, witness
    try:
        if new_key:
            click.echo(witness.write_new_key(new_key, name).text())
            return
        if not key_path or not logs:
            raise click.UsageError("give --key FILE (make one with --new-key FILE) and at least one --log PUBLIC")
        cosigner = witness.load_cosigner(key_path)
    except witness.WitnessError as error:
        raise click.ClickException(str(error)) from None
    known = {}
    for text in logs:
        origin, _, key = text.strip().rpartition(" ")
        try:
            log_key = verifier(key)
        except checkpoint.CheckpointError as error:
            raise click.BadParameter(f"{printable(text)}: {error}", param_hint="--log") from None
        known[origin.strip() or log_key.name] = log_key
    try:
        served = witness.server(witness.Witness(state_path, cosigner, known), host, port)
    except (witness.WitnessError, OSError) as error:
        raise click.ClickException(f"cannot serve the witness: {error}") from None
    click.echo(f"witness {cosigner.verifier.text()} at http://{host}:{served.server_port}/add-checkpoint for "
               f"{', '.join(sorted(known))}", err=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: threading.Thread(target=served.shutdown).start())
    served.serve_forever()
    served.server_close()
    click.echo("witness: stopped", err=True)
