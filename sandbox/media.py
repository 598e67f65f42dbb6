"""The media types the stand-ins push and serve, written out from the specs (OCI image-spec, Docker's
manifest v2): the sandbox must not share code with the ledger it tests, so a wrong constant there cannot
hide behind the same wrong constant here."""

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPES = {DOCKER_MANIFEST: "application/vnd.docker.container.image.v1+json",
                OCI_MANIFEST: "application/vnd.oci.image.config.v1+json"}
LAYER_TYPES = {DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip",
               OCI_MANIFEST: "application/vnd.oci.image.layer.v1.tar+gzip"}
