"""The OpenLineage spec's JSON Schemas, to validate the events the operator sends, and a receiver for them.

openlineage-python ships the spec as generated classes, not as the JSON Schema, and the OpenLineage
repository is on none of the registries this project may use. The official schemas (OpenLineage.json, `$id`
https://openlineage.io/spec/2-0-2/OpenLineage.json, and the facets') come verbatim, from the OpenLineage
repository at release 1.50.0, inside the test fixtures of the crate ``datafusion-openlineage`` 0.0.7 on
crates.io (its ``tests/schemas/openlineage/README.md`` says so). The crate is fetched once, checked against a
pinned sha256, and cached beside the Go-built tools; nothing of it is committed here.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from .tools import bin_dir

CRATE = "datafusion-openlineage"
CRATE_VERSION = "0.0.7"
CRATE_SHA256 = "6a76cd49d4134a44d91d0224c9a8a9bbe586900131437680c990a2c7d5c1bf72"
CORE_ID = "https://openlineage.io/spec/2-0-2/OpenLineage.json"


def schema_dir() -> Path:
    target = bin_dir().parent / f"openlineage-spec-{CRATE}-{CRATE_VERSION}"
    if (target / "OpenLineage.json").exists():
        return target
    url = f"https://static.crates.io/crates/{CRATE}/{CRATE}-{CRATE_VERSION}.crate"
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != CRATE_SHA256:
        raise RuntimeError(f"{url}: sha256 {digest}, expected {CRATE_SHA256}")
    prefix = f"{CRATE}-{CRATE_VERSION}/tests/schemas/openlineage/"
    scratch = target.with_suffix(".tmp")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as crate:
        for member in crate.getmembers():
            if member.isfile() and member.name.startswith(prefix) and member.name.endswith(".json"):
                out = scratch / member.name.removeprefix(prefix)
                out.parent.mkdir(parents=True, exist_ok=True)
                extracted = crate.extractfile(member)
                assert extracted is not None
                out.write_bytes(extracted.read())
    scratch.rename(target)
    return target


class SpecValidator:
    """Validates a RunEvent against OpenLineage.json, and each facet against the schema its ``_schemaURL``
    names, when that exact version is one we hold (``checked`` lists those; others are left to the core
    schema, which requires every facet's ``_producer`` and ``_schemaURL``)."""

    def __init__(self, directory: Path) -> None:
        core = json.loads((directory / "OpenLineage.json").read_text())
        assert core["$id"] == CORE_ID, core["$id"]
        resources = [(CORE_ID, Resource.from_contents(core))]
        self.held: set[str] = set()
        for path in sorted((directory / "facets").glob("*.json")):
            schema = json.loads(path.read_text())
            self.held.add(schema["$id"])
            resources.append((schema["$id"], Resource.from_contents(schema)))
        self.registry: Registry[Any] = Registry().with_resources(resources)
        self.core = Draft202012Validator(core, registry=self.registry)
        self.checked: set[str] = set()  # facet schemas some event was validated against

    def errors(self, event: dict[str, Any]) -> list[str]:
        found = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in self.core.iter_errors(event)]
        for where, facets in _facets(event):
            for key, facet in facets.items():
                url = str(facet.get("_schemaURL", ""))
                if url.partition("#")[0] not in self.held:
                    continue
                self.checked.add(url)
                validator = Draft202012Validator({"$ref": url}, registry=self.registry)
                found += [f"{where}.{key}: {e.message}" for e in validator.iter_errors(facet)]
        return found


def _facets(event: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "run.facets", (event.get("run") or {}).get("facets") or {}
    yield "job.facets", (event.get("job") or {}).get("facets") or {}
    for side in ("inputs", "outputs"):
        for index, item in enumerate(event.get(side) or []):
            yield f"{side}[{index}].facets", item.get("facets") or {}


class Receiver:
    """An OpenLineage HTTP endpoint on loopback that keeps every event posted to /api/v1/lineage."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.refuse = False  # answer 503, as an endpoint that is down would
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if received.refuse or self.path != "/api/v1/lineage":
                    self.send_response(503 if received.refuse else 404)
                    self.end_headers()
                    return
                received.events.append(json.loads(body))
                self.send_response(201)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                del args

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
