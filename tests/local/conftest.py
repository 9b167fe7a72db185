"""Fixtures of the local tests: one store API over a directory and over a real S3 server (MinIO)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from datajob_core.data.locations import StorageConfig
from datajob_core.storage.stores import Store
from datajob_testenv.objectstore import ObjectStore


@pytest.fixture(params=["posix", "s3"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Store]:
    """Makes stores named ``name``: directories under tmp_path, or prefixes in a MinIO bucket."""
    if request.param == "posix":
        return lambda name: Store(str(tmp_path / name))
    server: ObjectStore = request.getfixturevalue("object_store")
    bucket: str = request.getfixturevalue("bucket")
    config = StorageConfig.from_spec(server.storage_spec())
    return lambda name: Store(f"{bucket}/{name}", config, server.credentials)


@pytest.fixture
def store(stores: Callable[[str], Store]) -> Store:
    return stores("out")
