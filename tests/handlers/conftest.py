"""Fixtures shared by the handler tests."""

import pytest

from .backup_world import BackupWorld


@pytest.fixture(scope="module")
def world():
    """An in-process sandbox and operator runtime, one per test module."""
    w = BackupWorld()
    try:
        yield w
    finally:
        w.close()
