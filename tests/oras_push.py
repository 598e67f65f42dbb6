"""Push OCI artifacts with the real ORAS Python SDK (PyPI `oras` 0.2.x), as `oras push` and `oras attach` do.

So tests see artifacts made by a real ORAS client, not only by our own Pusher. The SDK's
`push()` has no artifactType parameter and always pushes to a tag, so `oras_attach` (untagged,
with artifactType, like `oras attach`) is built from the SDK's own layer, upload and manifest
calls. The SDK sets no `org.opencontainers.image.created`; both helpers add it as the oras CLI does.
"""

import os
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone

import oras.client
import oras.defaults
import oras.oci

CREATED = "org.opencontainers.image.created"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def _client(host):
    return oras.client.OrasClient(hostname=host, insecure=True)


def _annotations(annotations):
    """The caller's manifest annotations, with a creation time unless they bring one."""
    return {CREATED: datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), **(annotations or {})}


def _write(directory, files):
    """Write `files` (name -> bytes) under directory/files and an empty config `{}` beside them;
    returns (config path, file paths)."""
    os.mkdir(os.path.join(directory, "files"))
    paths = [os.path.join(directory, "config.json")] + [os.path.join(directory, "files", name) for name in files]
    for path, data in zip(paths, [b"{}", *files.values()]):
        with open(path, "wb") as handle:
            handle.write(data)
    return paths[0], paths[1:]


def oras_push(host, repo, tag, files, artifact_type=oras.defaults.unknown_config_media_type, annotations=None):
    """`OrasClient.push` of `files` (name -> bytes) to host/repo:tag; returns the manifest digest.

    The SDK types an artifact by its config media type (no artifactType field), so `artifact_type`
    goes there, with the config blob `{}`."""
    with tempfile.TemporaryDirectory(prefix="ledger-oras-") as directory:
        config, paths = _write(directory, files)
        response = _client(host).push(
            f"{host}/{repo}:{tag}", files=paths, disable_path_validation=True,
            manifest_config=f"{config}:{artifact_type}", manifest_annotations=_annotations(annotations), quiet=True)
    return response.headers["Docker-Content-Digest"]


def oras_attach(host, repo, subject_digest, files, artifact_type, annotations=None):
    """Push an untagged manifest with `artifactType`, an empty config and `subject` = host/repo@subject_digest
    (as `oras attach` does), blobs uploaded by the SDK; returns its digest."""
    client = _client(host)
    container = client.get_container(f"{host}/{repo}")
    head = client.do_request(f"{client.prefix}://{container.manifest_url(subject_digest)}", "HEAD",
                             headers={"Accept": ", ".join(oras.defaults.default_manifest_accepted_media_types)})
    client._check_200_response(head)
    subject = oras.oci.Subject(head.headers["Content-Type"], subject_digest, int(head.headers["Content-Length"]))
    manifest = oras.oci.NewManifest()
    with tempfile.TemporaryDirectory(prefix="ledger-oras-") as directory:
        config_path, paths = _write(directory, files)
        for path in paths:
            layer = oras.oci.NewLayer(path)
            layer["annotations"] = {oras.defaults.annotation_title: os.path.basename(path)}
            client._check_200_response(client.upload_blob(path, container, layer))
            manifest["layers"].append(layer)
        config, _ = oras.oci.ManifestConfig(media_type=EMPTY_CONFIG)
        client._check_200_response(client.upload_blob(config_path, container, config))
    manifest.update(artifactType=artifact_type, config=config, subject=asdict(subject),
                    annotations=_annotations(annotations))
    # Pushed by digest, untagged: the SDK's digest of the manifest (json.dumps, as upload_manifest
    # sends it); the registry rejects the PUT if the body does not match it.
    digest = oras.oci.Subject.from_manifest(manifest).digest
    client._check_200_response(client.upload_manifest(manifest, client.get_container(f"{host}/{repo}@{digest}")))
    return digest
