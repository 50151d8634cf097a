"""The simulated kubelet's pure parts: volume trees, tar, exec commands, env, Recreate planning."""

from __future__ import annotations

import asyncio
import base64
import io
import tarfile

import pytest

from mayanode_operator.sandbox.kubelet import commands, planning, podenv, tarball
from mayanode_operator.sandbox.kubelet.volumes import ContainerFS, FsError, Mount, VolumeTree


# --------------------------------------------------------------------------------------------
# helpers

def node_fs() -> tuple[ContainerFS, VolumeTree]:
    """A mayanode container: PVC mounted at /root, home is .mayanode inside the PVC."""
    pvc = VolumeTree("mayanode")
    pvc.write(".mayanode/config/priv_validator_key.json", b'{"k": 1}', 0o600)
    pvc.write(".mayanode/data/priv_validator_state.json", b'{"height": "5"}', 0o600, uid=1000, gid=1000)
    pvc.mkdir(".mayanode/keyring-file", 0o700)
    pvc.write(".mayanode/keyring-file/mayachain.info", b"jwe", 0o600)
    return ContainerFS([Mount("/root", pvc)]), pvc


class Sink:
    def __init__(self) -> None:
        self.data = b""

    async def __call__(self, chunk: bytes) -> None:
        self.data += chunk

    @property
    def text(self) -> str:
        return self.data.decode()


def stdin_of(data: bytes = b"", eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    if data:
        reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def run(fs: ContainerFS, argv: list[str], stdin: bytes = b"", eof: bool = True, **ctx_kw):
    out, err = Sink(), Sink()
    ctx = commands.ExecContext(fs=fs, stdin=stdin_of(stdin, eof), stdout=out, stderr=err, **ctx_kw)
    code = await asyncio.wait_for(commands.run_command(argv, ctx), 5)
    return code, out, err


# --------------------------------------------------------------------------------------------
# volumes and mounts

def test_subpath_mount_maps_into_the_pvc() -> None:
    pvc = VolumeTree("bifrost")
    fs = ContainerFS([Mount("/root/.mayanode", pvc, "mayanode")])
    assert pvc.is_dir("mayanode")  # the kubelet creates a missing subPath
    fs.write("/root/.mayanode/localstate-x.json", b"share", 0o600)
    assert pvc.read("mayanode/localstate-x.json") == b"share"
    assert fs.listdir("/root") == [".mayanode"]  # the mount point shows up in its parent
    fs.write("/tmp/x", b"scratch")
    assert not pvc.exists("tmp/x")


def test_volume_tree_basics() -> None:
    tree = VolumeTree()
    tree.write("a/b/c.txt", "hi", mode=0o640, uid=7, gid=8)
    assert tree.read("a/b/c.txt") == b"hi"
    assert tree.stat("a/b/c.txt").mode == 0o640 and tree.stat("a/b/c.txt").uid == 7
    assert tree.listdir("a") == ["b"]
    with pytest.raises(FsError):
        tree.remove("a")
    tree.remove("a", recursive=True)
    assert tree.listdir() == []
    tree.write("x", b"1")
    tree.wipe()
    assert not tree.exists("x")


# --------------------------------------------------------------------------------------------
# tar

async def test_tar_create_then_extract_preserves_modes_and_owners() -> None:
    fs, _ = node_fs()
    code, out, err = await run(fs, ["tar", "cf", "-", "-C", "/root/.mayanode", "config", "data", "keyring-file"])
    assert code == 0, err.text
    with tarfile.open(fileobj=io.BytesIO(out.data)) as archive:
        members = {m.name: m for m in archive.getmembers()}
    assert set(members) == {
        "config", "config/priv_validator_key.json", "data", "data/priv_validator_state.json",
        "keyring-file", "keyring-file/mayachain.info",
    }
    assert members["data/priv_validator_state.json"].uid == 1000
    assert members["keyring-file"].mode == 0o700

    target = VolumeTree("restore")
    dest_fs = ContainerFS([Mount("/data", target)])
    code, _, err = await run(dest_fs, ["tar", "-xpf", "-", "--same-owner", "-C", "/data"], stdin=out.data)
    assert code == 0, err.text
    assert target.read("data/priv_validator_state.json") == b'{"height": "5"}'
    assert target.stat("data/priv_validator_state.json").mode == 0o600
    assert target.stat("data/priv_validator_state.json").uid == 1000
    assert target.stat("keyring-file").mode == 0o700


async def test_tar_extract_stops_at_end_of_archive_without_eof() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        info = tarfile.TarInfo("dir/file.json")
        info.size, info.mode = 3, 0o600
        archive.addfile(info, io.BytesIO(b"abc"))
    fs = ContainerFS([Mount("/data", VolumeTree())])
    # v4 exec: stdin never reaches EOF; tar must finish at the end-of-archive marker.
    code, _, err = await run(fs, ["tar", "xmf", "-", "-C", "/data"], stdin=buf.getvalue(), eof=False)
    assert code == 0, err.text
    assert fs.read("/data/dir/file.json") == b"abc"


async def test_tar_missing_path_reports_cannot_stat_and_exit_2() -> None:
    fs, _ = node_fs()
    code, out, err = await run(fs, ["tar", "-cf", "-", "-C", "/root/.mayanode", "config", "nope.json"])
    assert code == 2
    assert "tar: nope.json: Cannot stat: No such file or directory" in err.text
    assert "Exiting with failure status due to previous errors" in err.text
    with tarfile.open(fileobj=io.BytesIO(out.data)) as archive:
        assert "config/priv_validator_key.json" in archive.getnames()


async def test_tar_absolute_path_strips_leading_slash_like_kubectl_cp_sees() -> None:
    fs, _ = node_fs()
    code, out, err = await run(fs, ["tar", "cf", "-", "/root/.mayanode/config/priv_validator_key.json"])
    assert code == 0
    assert "Removing leading `/' from member names" in err.text
    with tarfile.open(fileobj=io.BytesIO(out.data)) as archive:
        assert archive.getnames() == ["root/.mayanode/config/priv_validator_key.json"]


async def test_tar_extract_into_missing_directory_fails() -> None:
    fs = ContainerFS([Mount("/data", VolumeTree())])
    data = tarball.create_archive(node_fs()[0], [("/root/.mayanode", "config")]).data
    code, _, err = await run(fs, ["tar", "xf", "-", "-C", "/data/missing"], stdin=data)
    assert code == 2
    assert "/data/missing: Cannot open: No such file or directory" in err.text


async def test_tar_gzip_and_file_roundtrip() -> None:
    fs, _ = node_fs()
    code, _, err = await run(fs, ["tar", "czf", "/tmp/b.tgz", "-C", "/root/.mayanode", "config"])
    assert code == 0, err.text
    code, out, _ = await run(fs, ["tar", "tzf", "/tmp/b.tgz"])
    assert out.text.splitlines() == ["config/", "config/priv_validator_key.json"]


def test_tar_argument_forms() -> None:
    a = commands.parse_tar_args(["tar", "-xmf", "-", "-C", "/data"])
    assert (a.op, a.file, a.touch, a.directory) == ("x", "-", True, "/data")
    b = commands.parse_tar_args(["tar", "cf", "-", "-C", "/a", "x", "-C", "b", "y"])
    assert b.members == [("/a", "x"), ("/a/b", "y")]
    c = commands.parse_tar_args(["tar", "--extract", "--file=-", "--directory=/d", "--no-same-owner"])
    assert (c.op, c.file, c.directory, c.same_owner) == ("x", "-", "/d", False)
    with pytest.raises(commands.UsageError):
        commands.parse_tar_args(["tar", "-f", "-"])


# --------------------------------------------------------------------------------------------
# find and friends

async def test_find_predicates_and_missing_dir() -> None:
    fs, _ = node_fs()
    code, out, _ = await run(fs, ["find", "/root/.mayanode", "-maxdepth", "2", "-type", "f", "-name", "*.json"])
    assert code == 0
    assert out.text.splitlines() == [
        "/root/.mayanode/config/priv_validator_key.json",
        "/root/.mayanode/data/priv_validator_state.json",
    ]
    code, out, _ = await run(fs, ["find", "/root/.mayanode/", "-maxdepth", "1", "-mindepth", "1", "-type", "d"])
    assert out.text.splitlines() == ["/root/.mayanode/config", "/root/.mayanode/data", "/root/.mayanode/keyring-file"]
    code, _, err = await run(fs, ["find", "/nope"])
    assert code == 1 and "find: '/nope': No such file or directory" in err.text
    code, _, err = await run(fs, ["find", "/root", "-newer", "x"])
    assert code == 1 and "unknown predicate" in err.text


async def test_small_utilities() -> None:
    fs, pvc = node_fs()
    assert (await run(fs, ["cat", "/root/.mayanode/data/priv_validator_state.json"]))[1].text == '{"height": "5"}'
    code, _, err = await run(fs, ["cat", "/root/nope"])
    assert code == 1 and "No such file or directory" in err.text
    assert (await run(fs, ["mkdir", "-p", "/root/.mayanode/a/b"]))[0] == 0 and pvc.is_dir(".mayanode/a/b")
    code, _, err = await run(fs, ["mkdir", "/root/x/y"])
    assert code == 1 and "cannot create directory" in err.text
    assert (await run(fs, ["rm", "-f", "/root/nothing"]))[0] == 0
    assert (await run(fs, ["rm", "/root/nothing"]))[0] == 1
    assert (await run(fs, ["rm", "-rf", "/root/.mayanode/a"]))[0] == 0 and not pvc.exists(".mayanode/a")
    assert (await run(fs, ["ls", "-1", "/root/.mayanode"]))[1].text == "config\ndata\nkeyring-file\n"
    assert (await run(fs, ["true"]))[0] == 0
    assert (await run(fs, ["sleep", "0.01"]))[0] == 0
    assert (await run(fs, ["sh", "-c", "exit 3"]))[0] == 3
    assert (await run(fs, ["sh", "-c", "true"]))[0] == 0
    code, _, err = await run(fs, ["sh", "-c", "cd /root && tar cf x.tar ."])
    assert code == 127 and "not simulated" in err.text
    code, _, err = await run(fs, ["curl", "http://x"])
    assert code == 127 and "executable file not found" in err.text
    assert (await run(fs, ["test", "-d", "/root/.mayanode/config"]))[0] == 0
    assert (await run(fs, ["test", "-d", "/root/.mayanode/nope"]))[0] == 1


# --------------------------------------------------------------------------------------------
# mayanode tx

async def test_mayanode_tx_password_on_stdin() -> None:
    fs, _ = node_fs()
    seen: list[list[str]] = []

    async def submit(argv: list[str]) -> commands.TxOutcome:
        seen.append(argv)
        return commands.TxOutcome(code=0, txhash="AB12")

    argv = ["mayanode", "tx", "mayachain", "set-ip-address", "203.0.113.7", "--from", "mayachain",
            "--keyring-backend", "file", "--chain-id", "mayachain-mocknet", "--yes", "--output", "json"]
    env = {"SIGNER_PASSWD": "s3cret", "SIGNER_NAME": "mayachain"}
    kw = dict(env=env, has_mayanode=True, submit_tx=submit, chain_id="mayachain-mocknet", extra_line_timeout=0.05)
    code, out, err = await run(fs, argv, stdin=b"s3cret\n", **kw)
    assert code == 0, err.text
    assert '"txhash":"AB12"' in out.text and '"code":0' in out.text
    assert seen == [["set-ip-address", "203.0.113.7"]]
    code, out, err = await run(fs, argv, stdin=b"wrong\n", eof=False, **kw)
    assert code == 1
    assert "incorrect passphrase" in err.text and "too many failed passphrase attempts" in err.text
    assert len(seen) == 1
    # Only the mayanode container has the binary.
    code, _, err = await run(fs, argv, stdin=b"s3cret\n", env=env, has_mayanode=False)
    assert code == 127


async def test_mayanode_tx_failure_code_exits_1() -> None:
    fs, _ = node_fs()

    async def submit(argv: list[str]) -> commands.TxOutcome:
        return commands.TxOutcome(code=32, txhash="FF", raw_log="account sequence mismatch, expected 5, got 4")

    argv = ["mayanode", "tx", "mayachain", "mimir", "HALTTRADING", "-1", "--from", "mayachain",
            "--keyring-backend", "file", "--chain-id", "c", "--yes", "--output", "json"]
    code, out, err = await run(fs, argv, stdin=b"pw\n", env={"SIGNER_PASSWD": "pw", "SIGNER_NAME": "mayachain"},
                               has_mayanode=True, submit_tx=submit)
    assert code == 1
    assert "account sequence mismatch" in err.text and '"code":32' in out.text
    parsed = commands.parse_mayanode_args(argv)
    assert parsed.positionals == ["tx", "mayachain", "mimir", "HALTTRADING", "-1"]


# --------------------------------------------------------------------------------------------
# env

def test_env_resolution_and_missing_refs() -> None:
    secret = {"data": {"password": base64.b64encode(b"pw").decode(), "mnemonic": base64.b64encode(b"m w").decode()}}
    cm = {"data": {"externalIP": "1.2.3.4", "OTHER": "x"}}
    objects = {("Secret", "mayanode-password"): secret, ("ConfigMap", "mayanode-external-ip"): cm}

    def lookup(kind: str, name: str):
        return objects.get((kind, name))

    container = {
        "name": "mayanode",
        "envFrom": [{"configMapRef": {"name": "mayanode-external-ip"}, "prefix": "CM_"}],
        "env": [
            {"name": "SIGNER_NAME", "value": "mayachain"},
            {"name": "SIGNER_PASSWD", "valueFrom": {"secretKeyRef": {"name": "mayanode-password", "key": "password"}}},
            {"name": "EXTERNAL_IP", "valueFrom": {"configMapKeyRef": {"name": "mayanode-external-ip",
                                                                      "key": "externalIP"}}},
            {"name": "GREETING", "value": "hi $(SIGNER_NAME)"},
        ],
    }
    env = podenv.resolve_env(container, "node-a", lookup)
    assert env["SIGNER_PASSWD"] == "pw" and env["EXTERNAL_IP"] == "1.2.3.4"
    assert env["CM_OTHER"] == "x" and env["GREETING"] == "hi mayachain"

    missing = {"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}
    with pytest.raises(podenv.CreateContainerConfigError, match='secret "nope" not found'):
        podenv.resolve_env(missing, "node-a", lookup)
    bad_key = {"name": "c", "env": [{"name": "X", "valueFrom": {
        "secretKeyRef": {"name": "mayanode-password", "key": "nokey"}}}]}
    with pytest.raises(podenv.CreateContainerConfigError,
                       match="couldn't find key nokey in Secret node-a/mayanode-password"):
        podenv.resolve_env(bad_key, "node-a", lookup)
    optional = {"name": "c", "env": [{"name": "X", "valueFrom": {
        "secretKeyRef": {"name": "nope", "key": "k", "optional": True}}}]}
    assert podenv.resolve_env(optional, "node-a", lookup) == {}


# --------------------------------------------------------------------------------------------
# Deployment planning

def deployment(replicas: int = 1, strategy: str = "Recreate") -> dict:
    return {"metadata": {"name": "mayanode", "generation": 3},
            "spec": {"replicas": replicas, "strategy": {"type": strategy},
                     "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"image": "a"}]}}}}


def pod(name: str, h: str, terminating: bool = False, ready: bool = True) -> planning.OwnedPod:
    return planning.OwnedPod(name, h, terminating, ready, "2024-01-01T00:00:00Z")


def test_recreate_stops_old_pods_first_and_never_exceeds_replicas() -> None:
    d = deployment()
    assert planning.plan_pods(d, "new", [pod("a", "old")]) == planning.PodPlan(0, ("a",), "recreate: stopping old pods")
    waiting = planning.plan_pods(d, "new", [pod("a", "old", terminating=True)])
    assert waiting.create == 0 and waiting.delete == ()
    assert planning.plan_pods(d, "new", []).create == 1
    # A terminating pod of the current template still counts.
    assert planning.plan_pods(d, "new", [pod("b", "new", terminating=True)]).create == 0
    assert planning.plan_pods(deployment(0), "new", [pod("b", "new")]).delete == ("b",)
    assert planning.plan_pods(d, "new", [pod("b", "new"), pod("c", "new", ready=False)]).delete == ("c",)


def test_template_hash_changes_with_the_template_only() -> None:
    d = deployment()
    h1 = planning.template_hash(d["spec"]["template"])
    d["spec"]["template"]["metadata"]["labels"][planning.HASH_LABEL] = "zzz"
    assert planning.template_hash(d["spec"]["template"]) == h1
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "b"
    assert planning.template_hash(d["spec"]["template"]) != h1
    assert len(h1) == 10


def test_deployment_status_fields() -> None:
    d = deployment()
    st = planning.deployment_status(d, "h", [pod("a", "h")], "2024-01-01T00:00:00Z")
    assert st["observedGeneration"] == 3
    assert (st["replicas"], st["readyReplicas"], st["availableReplicas"], st["updatedReplicas"]) == (1, 1, 1, 1)
    assert "unavailableReplicas" not in st
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    st0 = planning.deployment_status(d, "h", [], "2024-01-01T00:00:00Z")
    assert st0["unavailableReplicas"] == 1 and "replicas" not in st0
    assert {c["type"]: c for c in st0["conditions"]}["Available"]["status"] == "False"
