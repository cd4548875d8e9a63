"""The ``s3://`` path of the team cache against moto's server, an S3 *emulator* started on
127.0.0.1 (``moto[server]`` from PyPI): it checks that theoryx speaks the S3 API through obstore
(signing, multipart uploads, HEAD, 404s), not how Amazon S3 itself behaves."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import KeyPair, Teammate, executions, require
from nginx_server import free_port

pytestmark = pytest.mark.remote


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A moto S3 server with a bucket; the AWS_* variables point obstore (and only it) there."""
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    if exe is None:
        if require():
            pytest.fail("THEORYX_REQUIRE_DOCKER=1 but moto_server is not installed (pip install 'moto[server]')")
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    log = (tmp_path / "moto.log").open("w")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.05)
        endpoint = f"http://127.0.0.1:{port}"
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
                     "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                     "AWS_ENDPOINT_URL": endpoint}.items():
            monkeypatch.setenv(k, v)
        import boto3

        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="team-cache")
        yield "s3://team-cache/theoryx"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.mark.slow
def test_the_s3_path_shares_results_through_an_emulator(
        s3: str, teammates: tuple[Teammate, Teammate], keypairs: dict[str, KeyPair], counter: Path) -> None:
    alice, bob = teammates
    alice.configure(url=s3, upload=True, signing_key=keypairs["alice"].private)
    bob.configure(url=s3, trusted_keys=[str(keypairs["alice"].public)])
    size = 20 << 20  # above the 8 MiB part size: a multipart upload
    a = alice.run("s3", big=size)
    assert a.cache == "miss"
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="team-cache")["Contents"]]
    print(f"objects in the emulated bucket: {len(keys)}")
    assert any(k.startswith("theoryx/ac-v1/") for k in keys) and any(k.startswith("theoryx/cas-v1/") for k in keys)
    b = bob.run("s3", big=size)
    assert b.cache == "remote" and executions(counter) == 1
    assert b.output("blob.bin").cid == a.output("blob.bin").cid and b.output("blob.bin").size == size
