"""A NodeBackup to S3 against a real S3 server on loopback (`rclone serve s3`): store, verify, export, expire."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mayanode_operator import cli_backup
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
