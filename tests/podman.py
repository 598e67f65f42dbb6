"""A real Docker-compatible API for the daemon tests: `podman system service` with vfs storage under a
temporary root, and the few API calls the tests use to change what it holds."""

import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time

from sandbox import free_port


class _Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def tar_of(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Podman:
    """One storage root served on a unix socket and on a loopback TCP port."""

    def __init__(self, root, insecure_registries):
        self.root = root
        self.socket = os.path.join(root, "podman.sock")
        self.tcp_port = free_port()
        with open(os.path.join(root, "storage.conf"), "w") as handle:
            handle.write(f'[storage]\ndriver = "vfs"\nrunroot = "{root}/run"\ngraphroot = "{root}/graph"\n')
        with open(os.path.join(root, "registries.conf"), "w") as handle:
            handle.write("unqualified-search-registries = []\n")
            for host in insecure_registries:
                handle.write(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')
        self.env = {**os.environ, "CONTAINERS_STORAGE_CONF": f"{root}/storage.conf",
                    "CONTAINERS_REGISTRIES_CONF": f"{root}/registries.conf", "XDG_RUNTIME_DIR": f"{root}/xdg"}
        os.makedirs(f"{root}/xdg", exist_ok=True)
        self.log = open(os.path.join(root, "service.log"), "wb")
        base = [shutil.which("podman") or "podman", "--root", f"{root}/graph", "--runroot", f"{root}/run",
                "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "system", "service", "--time=0"]
        self.processes = [subprocess.Popen([*base, f"unix://{self.socket}"], env=self.env, stdout=self.log,
                                           stderr=subprocess.STDOUT),
                          subprocess.Popen([*base, f"tcp://127.0.0.1:{self.tcp_port}"], env=self.env,
                                           stdout=self.log, stderr=subprocess.STDOUT)]
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.call("GET", "/_ping")[0] == 200 and self._tcp_ping():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                self.stop()
                raise RuntimeError(f"podman system service did not start: see {root}/service.log")
            time.sleep(0.2)

    def _tcp_ping(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.tcp_port, timeout=5)
        try:
            connection.request("GET", "/_ping")
            return connection.getresponse().status == 200
        finally:
            connection.close()

    @property
    def unix_host(self):
        return f"unix://{self.socket}"

    @property
    def tcp_host(self):
        return f"tcp://127.0.0.1:{self.tcp_port}"

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(30)
        self.log.close()

    def call(self, method, path, body=None, content_type=None):
        connection = _Unix(self.socket)
        try:
            connection.request(method, path, body=body, headers={"Content-Type": content_type} if content_type else {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def _ok(self, method, path, body=None, content_type=None):
        status, answer = self.call(method, path, body, content_type)
        if status >= 300 or b'"error"' in answer:
            raise RuntimeError(f"podman {method} {path}: {status} {answer[-500:]!r}")
        return answer

    def pull(self, reference):
        self._ok("POST", f"/v4.0.0/libpod/images/pull?reference={reference}&tlsVerify=false&quiet=true")

    def push(self, reference):
        self._ok("POST", f"/v4.0.0/libpod/images/{reference}/push?tlsVerify=false")

    def tag(self, source, reference):
        repo, tag = reference.rsplit(":", 1)
        self._ok("POST", f"/images/{source}/tag?repo={repo}&tag={tag}")

    def remove(self, reference):
        self._ok("DELETE", f"/images/{reference}")

    def build(self, reference, content, labels=None):
        """Build an image from a local archive (a tar build context): FROM scratch, one file."""
        label_lines = "".join(f"LABEL {key}={value}\n" for key, value in (labels or {}).items())
        context = tar_of({"Dockerfile": f"FROM scratch\nCOPY file.txt /\n{label_lines}".encode(),
                          "file.txt": content})
        self._ok("POST", f"/build?t={reference}&rm=true", context, "application/x-tar")

    def images(self):
        return json.loads(self._ok("GET", "/images/json"))

    def image_id(self, reference):
        return json.loads(self._ok("GET", f"/images/{reference}/json"))["Id"]

    def clear(self):
        for image in self.images():
            self._ok("DELETE", f"/images/{image['Id']}?force=true")



def manifest_list(service, name, images, destination):
    """`podman manifest create / add / push --all`, as a user makes a multi-arch list: `images` are
    (local reference, architecture) pairs; returns nothing (the registry holds the list)."""
    base = [shutil.which("podman") or "podman", "--root", f"{service.root}/graph", "--runroot",
            f"{service.root}/run", "--storage-driver", "vfs"]

    def run(*args):
        done = subprocess.run([*base, *args], env=service.env, capture_output=True, text=True, timeout=300)
        if done.returncode:
            raise RuntimeError(f"podman {' '.join(args)}: {done.stderr[-500:]}")
    run("manifest", "create", name)
    for reference, architecture in images:
        run("manifest", "add", "--arch", architecture, name, f"containers-storage:{reference}")
    run("manifest", "push", "--all", "--tls-verify=false", name, f"docker://{destination}")
    run("manifest", "rm", name)
