"""Signature checks in one registry's run: each signature artifact met (a referrer, or a cosign `.sig` tag's
manifest) checked against the --signature-key keys it has no verdict from yet, its layers fetched first."""

from collections import defaultdict

from .. import signatures as sigs
from ..findings import SignatureCheck
from ..manifests import ManifestError, parse_manifest
from ..referrers import schema_tag
from ..times import now
from .scheduler import Job, Kind


class Signing:
    """The checks of one registry's run. `known` is the run's set of digests the ledger holds or this run
    recorded (shared, growing); `signatures` is a signatures.Checking, or None when no key is configured."""

    def __init__(self, registry, client, signatures, known, result):
        self.registry = registry
        self.client = client
        self.signatures = signatures
        self.known = known
        self.result = result
        self.checking = set()  # (signature digest, subject) whose check this run has begun
        self.unchecked = defaultdict(list)  # signature digest not yet read -> [(repo, subject, key ids wanted)]
        self.bodies = {}  # signature manifests this run read: digest -> bytes

    def cosign_tag(self, repo, tag, digest):
        """cosign's signature tag of the digest in its name: a signature to check."""
        if tag.endswith(".sig") and schema_tag(tag):
            return self.signature(repo, digest, tag[:-len(".sig")].replace("-", ":", 1))
        return []

    def signature(self, repo, digest, subject):
        """A possible signature of `subject` (a referrer, or a cosign `.sig` tag's manifest): checked against
        the keys it has no verdict from, once its manifest is read (now, if the ledger holds it)."""
        if self.signatures is None or (digest, subject) in self.checking:
            return []
        self.checking.add((digest, subject))
        wanted = self.signatures.wanted(digest, subject)
        if not wanted:
            return []
        self.unchecked[digest].append((repo, subject, wanted))
        return self._check(digest) if digest in self.known else []

    def recorded(self, facts):
        """A manifest this run recorded: if it is a signature, the checks waiting for it."""
        if facts.get("artifact_kind") != "signature" or self.signatures is None:
            return []
        self.bodies[facts["digest"]] = facts["body"]
        return self._check(facts["digest"])

    def _check(self, digest):
        """Check the signatures waiting for this manifest: at once when there is nothing to fetch (no key
        configured, a format not verified), else after fetching its signature layers."""
        waiting = self.unchecked.pop(digest, ())
        body = self.bodies.get(digest) if waiting else None
        if waiting and body is None:
            body = self.signatures.body(digest)
        if body is None:
            return []  # not a signature, or its bytes were not read: nothing to say yet
        try:
            manifest = parse_manifest(body, digest)
        except ManifestError:
            return []
        follow = []
        for repo, subject, wanted in waiting:
            if manifest.artifact_kind != "signature" or manifest.subject not in (None, subject):
                continue  # not a signature, or a referrer of another subject (the store refuses it)
            document = sigs.document(body)
            planned = sigs.plan(document)
            if not self.signatures.keys or not planned.layers:
                self._verdicts(repo, digest, subject, wanted, sigs.verify(document, {}, subject, self.signatures.keys))
            else:
                follow.append(Job(Kind.SIGNATURE, (repo, digest, planned.layers),
                                  {"document": document, "subject": subject, "wanted": wanted}))
        return follow

    def fetch(self, repo, digest, layers):
        """The signature layers' bytes, each bounded and checked against its digest (on a worker)."""
        return {layer: self.client.fetch_blob(repo, layer, limit=sigs.MAX_LAYER_BYTES, stage="signature")
                for layer, _ in layers}

    def on_signature(self, args, context, blobs):
        repo, digest, _ = args
        self._verdicts(repo, digest, context["subject"], context["wanted"],
                       sigs.verify(context["document"], blobs, context["subject"], self.signatures.keys))
        return []

    def _verdicts(self, repo, digest, subject, wanted, verdicts):
        for verdict in verdicts:
            if verdict.key in wanted:
                self.result.signature_checks.append(SignatureCheck(
                    self.registry, repo, digest, subject, verdict.key, verdict.result, verdict.reason, verdict.layer,
                    now()))
