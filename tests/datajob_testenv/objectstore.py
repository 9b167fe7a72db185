"""A real S3 server for the tests: MinIO, built from the Go module proxy by hack/build-tools.sh, on loopback.

Started the way the control plane is (its own process group, dies with the test process), with a fresh
data directory and random credentials, so nothing a test writes outlives the session.
"""

from __future__ import annotations

import secrets
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .processes import free_port, spawn, stop_group, wait_for
from .tools import tool

REGION = "us-east-1"
# The port `make cluster-up` and the examples use, so example manifests can name the endpoint.
EXAMPLE_PORT = 9000


@dataclass
class ObjectStore:
    directory: Path
    port: int = 0
    access_key: str = ""
    secret_key: str = ""
    pid: int | None = None
    die_with_parent: bool = True  # False for `make cluster-up`, which outlives the command

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def start(self, port: int | None = None) -> None:
        """Starts MinIO on ``port`` (default: a free one)."""
        self.port = port or free_port()
        self.access_key = "datajob-" + secrets.token_hex(4)
        self.secret_key = secrets.token_urlsafe(24)
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        env = {
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            "MINIO_REGION": REGION,
            "HOME": str(self.directory),
        }
        argv = [tool("minio"), "server", "--quiet", "--address", f"127.0.0.1:{self.port}", str(data)]
        log = self.directory / "minio.log"
        self.pid = spawn(argv, log, env=env, die_with_parent=self.die_with_parent).pid
        wait_for(self._ready, 60, "MinIO to answer its health check")

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/minio/health/live", timeout=2) as response:
            return bool(response.status == 200)

    def stop(self) -> None:
        if self.pid is not None:
            stop_group(self.pid)
            self.pid = None

    def filesystem(self) -> Any:
        """An s3fs filesystem with the root credentials (for test setup and inspection)."""
        import s3fs  # noqa: PLC0415 - only object-store tests need it

        return s3fs.S3FileSystem(
            key=self.access_key,
            secret=self.secret_key,
            endpoint_url=self.endpoint,
            client_kwargs={"region_name": REGION},
            use_listings_cache=False,
            skip_instance_cache=True,
        )

    def bucket(self, name: str) -> str:
        """Creates bucket ``name``; returns its s3:// URL."""
        self.filesystem().mkdir(name)
        return f"s3://{name}"

    def storage_spec(self) -> dict[str, str]:
        """spec.storage for a DataJob using this server (credentials go in a Secret or the environment)."""
        return {"endpoint": self.endpoint, "region": REGION}
