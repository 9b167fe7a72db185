"""Listing a DataJob's input: the I/O half of planning (datajob_core.planning is the pure half).

Shared by the operator and local mode, so both number the same input's shards the same way.
"""

from __future__ import annotations

import glob
import os

import fsspec

from datajob_core.planning import InputFile, PlanError


def list_inputs(uris: list[str]) -> list[InputFile]:
    """Files matched by ``uris`` (local paths, ``file://`` or fsspec URLs; globs allowed), sorted, unique.

    The order is deterministic so that re-planning the same input gives the same shard numbers.
    """
    files: dict[str, InputFile] = {}
    for uri in uris:
        if "://" in uri and not uri.startswith("file://"):
            files.update(_remote(uri))
            continue
        pattern = uri.removeprefix("file://")
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        for path in matches:
            if os.path.isdir(path):
                continue
            try:
                files[path] = InputFile(path, os.path.getsize(path))
            except OSError as error:
                raise PlanError(f"input {uri!r}: {error.strerror}: {path}") from error
    if not files:
        raise PlanError(f"no input files matched spec.input.uris {uris}")
    return [files[p] for p in sorted(files)]


def _remote(uri: str) -> dict[str, InputFile]:
    """s3://, gs://, hdfs://, ...: listed with fsspec; the backend (s3fs, gcsfs, ...) must be installed."""
    try:
        filesystem, pattern = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as error:
        raise PlanError(f"input {uri!r}: {error}") from error
    try:
        paths = filesystem.glob(pattern) if glob.has_magic(pattern) else [pattern]
        found: dict[str, InputFile] = {}
        for path in sorted(paths):
            info = filesystem.info(path)
            if info.get("type") == "directory":
                continue
            url = filesystem.unstrip_protocol(path)
            found[url] = InputFile(url, int(info["size"]))
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise PlanError(f"input {uri!r}: {error}") from error
    return found
