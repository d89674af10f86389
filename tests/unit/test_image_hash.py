"""vm_storage's image hash through a real shell over a real SSH server on loopback: openssl
where it is, sha256sum where it is not, the same digest either way."""

import hashlib
import os

import paramiko
import pytest

from providers import transport, vm_storage
from providers.transport import Host, Pool, Session
from tests.unit.sshserver import SshServer
from tests.unit.test_transport import pem

pytestmark = pytest.mark.unit


@pytest.fixture
def node(tmp_path, monkeypatch):
    monkeypatch.setattr(transport, "STEPS_LOCK", str(tmp_path / "steps.lock"))
    key = paramiko.ECDSAKey.generate()
    server = SshServer(key)
    host = Host(name="node1", address="127.0.0.1", port=server.port, host_key=server.public_key)
    yield Session(host, private_key=pem(key), pool=Pool())
    server.close()


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.qcow2"
    path.write_bytes(os.urandom(1 << 20))
    return str(path), hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_hash_is_the_files_sha256(node, image):
    path, digest = image
    assert vm_storage._sha256(node, path) == digest


def test_without_openssl_sha256sum_gives_the_same_hash(node, image, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"  # a PATH with sha256sum (and the run lock's tools), no openssl
    bin_dir.mkdir()
    for tool in ("sh", "sha256sum", "flock", "true"):
        os.symlink(f"/usr/bin/{tool}", bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    path, digest = image
    assert vm_storage._sha256(node, path) == digest
