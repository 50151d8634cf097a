"""A NodeBackup to S3 against a real S3 server on loopback (`rclone serve s3`): store, verify, export, expire,
delete with deletionPolicy Delete."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from mayanode_operator import cli_backup
from mayanode_operator.api import naming
from mayanode_operator.reconcile import nodebackup
from tests.integration.conftest import s3_server  # noqa: F401  (the fixture)

from .backup_world import condition

NS = "hb-s3"


@pytest.fixture(scope="module")
def s3_location(world, s3_server):  # noqa: F811
    node = world.seed(NS)
    world.create_secret(NS, "s3-creds", {"AWS_ACCESS_KEY_ID": s3_server.access_key,
                                         "AWS_SECRET_ACCESS_KEY": s3_server.secret_key})
    location = world.location(s3={"endpoint": s3_server.endpoint, "bucket": s3_server.bucket, "prefix": "mayanode/",
                                  "forcePathStyle": True, "credentialsSecret": {"name": "s3-creds"}})
    world.mayanode(node, backup={"afterChurn": False, "location": location})
    return node, location


def test_s3_round_trip_stores_verifies_exports_and_expires(world, s3_server, s3_location):  # noqa: F811
    node, location = s3_location
    world.nodebackup(NS, "to-s3", NS, ttl="24h")
    body = world.drive(NS, "to-s3")
    status = body["status"]
    assert status["phase"] == "Completed", status
    assert condition(body, "Verified")["status"] == "True", condition(body, "Verified")
    archive = status["archive"]
    assert archive["store"] == "S3"
    assert archive["uri"] == f"s3://{s3_server.bucket}/mayanode/{archive['key']}"
    assert s3_server.access_key not in str(status) and s3_server.secret_key not in str(status)
    on_disk = s3_server.path_of(f"mayanode/{archive['key']}").read_bytes()
    assert on_disk.startswith(b"age-encryption.org/v1\n") and node.identity.mnemonic.encode() not in on_disk
    bundle = world.call(cli_backup.export_backup(world.runtime.kube, NS, "to-s3"))
    assert on_disk in bundle
    world.clock = datetime.now(timezone.utc) + timedelta(hours=25)
    try:
        assert world.step(NS, "to-s3") is None
    finally:
        world.clock = None
    assert world.backup(NS, "to-s3") is None
    assert not s3_server.path_of(f"mayanode/{archive['key']}").exists()


def test_wrong_s3_credentials_fail_clearly_without_showing_them(world, s3_server, s3_location):  # noqa: F811
    world.create_secret(NS, "bad-creds", {"AWS_ACCESS_KEY_ID": "AKIDWRONGWRONG01",
                                          "AWS_SECRET_ACCESS_KEY": "wrongwrongwrongwrongsecret"})
    location = world.location(s3={"endpoint": s3_server.endpoint, "bucket": s3_server.bucket,
                                  "forcePathStyle": True, "credentialsSecret": {"name": "bad-creds"}})
    world.nodebackup(NS, "denied", NS, location=location)
    body = world.drive(NS, "denied")
    assert body["status"]["phase"] == "Failed", body["status"]
    cond = condition(body, "Completed")
    assert cond["reason"] == "StoreAccessDenied", cond
    assert "wrongwrongwrong" not in str(body["status"]) and "AKIDWRONG" not in str(body["status"])
    assert nodebackup.store_key(NS, NS, "denied", body["metadata"]["uid"]).startswith(f"{NS}/{NS}/denied-")


def test_delete_policy_deletes_the_s3_object_where_it_was_written(world, s3_server, s3_location):  # noqa: F811
    """The archive is deleted from the location recorded at capture, after the MayaNode moved its backups
    elsewhere; a store that refuses holds the deletion (DeletionBlocked) until it answers."""
    _, location = s3_location
    world.nodebackup(NS, "s3-scratch", NS, deletionPolicy="Delete")
    body = world.drive(NS, "s3-scratch")
    assert body["status"]["phase"] == "Completed", body["status"]
    path = s3_server.path_of(f"mayanode/{body['status']['archive']['key']}")
    assert path.exists()
    world.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"backup": {"location": {"s3": None, "secret": {}}}})
    world.call(asyncio.to_thread(world.runtime.kube.core.patch_namespaced_secret, "s3-creds", NS,
                                 {"stringData": {"AWS_SECRET_ACCESS_KEY": "not-the-secret-key-at-all"}}))
    try:
        world.call(asyncio.to_thread(world.runtime.kube.custom.delete_namespaced_custom_object, naming.GROUP,
                                     naming.VERSION, NS, naming.NODEBACKUP_PLURAL, "s3-scratch"))
        assert world.step(NS, "s3-scratch") > 0
        blocked = condition(world.backup(NS, "s3-scratch"), "DeletionBlocked")
        assert (blocked["status"], blocked["reason"]) == ("True", "StoreError") and "AccessDenied" in blocked["message"]
        assert "not-the-secret-key-at-all" not in str(world.events(NS, "s3-scratch")) and path.exists()
    finally:
        world.call(asyncio.to_thread(world.runtime.kube.core.patch_namespaced_secret, "s3-creds", NS,
                                     {"stringData": {"AWS_SECRET_ACCESS_KEY": s3_server.secret_key}}))
        world.patch_spec(naming.MAYANODE_PLURAL, NS, NS, {"backup": {"location": {**location, "secret": None}}})
    assert world.step(NS, "s3-scratch") is None
    assert world.backup(NS, "s3-scratch") is None and not path.exists()
