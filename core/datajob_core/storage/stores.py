"""Where a job's output lives: a POSIX directory or an object-store prefix, behind one small interface.

The commit protocol (:mod:`datajob_core.storage.committer`), checkpoints
(:mod:`datajob_core.storage.checkpoint_store`) and output ownership
(:mod:`datajob_core.storage.output_identity`) use only what every object store offers: whole-object writes,
exclusive creation, listing one level, copy and delete. There is no rename anywhere, so the same protocol is
exactly-once on S3 and on a shared volume (docs/design.md, "Committing output").

Object stores go through fsspec (``s3://`` via s3fs; ``gs://`` and ``az://`` through gcsfs/adlfs the same
way, untested here). Exclusive creation is S3's ``If-None-Match: *`` conditional PUT (AWS since 2024, MinIO,
Cloudflare R2, Ceph Squid); on POSIX it is ``link``, which fails when the name exists.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec

from datajob_core.data.locations import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, StorageConfig, is_remote

# Waits between retries of an exclusive create that met a concurrent one (S3 409); None: give up.
CONFLICT_RETRIES: tuple[float | None, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, None)


class StorageError(Exception):
    """The store refused or failed an operation (message names the URL, never a credential)."""


def fs_options(url: str, config: StorageConfig, credentials: dict[str, str] | None = None) -> dict[str, Any]:
    """fsspec options for ``url``. Without ``credentials`` the backend's own chain applies (env vars, files,
    instance roles), which is how workers get the Secret (mounted as env) and local mode the user's."""
    if not url.startswith(("s3://", "s3a://")):
        return {}
    options: dict[str, Any] = {"use_listings_cache": False}  # the commit protocol must see fresh listings
    if config.endpoint:
        options["endpoint_url"] = config.endpoint
    if config.region:
        options["client_kwargs"] = {"region_name": config.region}
    if credentials:
        options["key"] = credentials.get(ACCESS_KEY)
        options["secret"] = credentials.get(SECRET_KEY)
        if credentials.get(SESSION_TOKEN):
            options["token"] = credentials[SESSION_TOKEN]
    return options


def filesystem(
    url: str, config: StorageConfig, credentials: dict[str, str] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem for ``url`` and the path inside it."""
    try:
        fs, path = fsspec.core.url_to_fs(url, **fs_options(url, config, credentials))
    except (ImportError, ValueError) as error:
        raise StorageError(f"{url}: {error}") from error
    return fs, path


def _scratch(path: str) -> str:
    """A name next to ``path`` that no other writer, process or attempt can pick."""
    head, _, name = path.rpartition("/")
    return f"{head}/.{name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"


def _write_scratch(target: str, payload: bytes) -> str:
    """Writes ``payload`` to a scratch name beside ``target``, making the directory only when it is missing
    (a shard costs a few file-system calls, and on some hosts each one is slow)."""
    scratch = _scratch(target)
    try:
        handle = open(scratch, "xb")  # noqa: SIM115 - closed below; the directory may have to be made first
    except FileNotFoundError:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        handle = open(scratch, "xb")  # noqa: SIM115
    with handle:
        handle.write(payload)
    return scratch


class Store:
    """One root (a directory or an object prefix); every name is relative to it, ``/``-separated."""

    def __init__(
        self, url: str, config: StorageConfig | None = None, credentials: dict[str, str] | None = None
    ):
        self.url = url.rstrip("/")
        self.remote = is_remote(self.url)
        if self.remote:
            self.fs, self.root = filesystem(self.url, config or StorageConfig(), credentials)
            self.root = self.root.rstrip("/")
        else:
            self.fs, self.root = fsspec.filesystem("file"), self.url.removeprefix("file://")

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def below(self, name: str) -> Store:
        """The store rooted at ``name`` under this one, on the same connection and credentials."""
        sub = copy.copy(self)
        sub.url, sub.root = self.url_of(name), self.path(name)
        return sub

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}" if name else self.url

    # -- reading ---------------------------------------------------------------------------------------
    def read_bytes(self, name: str) -> bytes:
        """The object's bytes; FileNotFoundError if there is none."""
        if not self.remote:
            return Path(self.path(name)).read_bytes()
        with _storage_errors(f"reading {self.url_of(name)}"):
            data: bytes = self.fs.cat_file(self.path(name))
        return data

    def read_many(self, names: list[str], threads: int = 16) -> dict[str, bytes | None]:
        """Each object's bytes (None if it cannot be read), read side by side from an object store: a
        report over 100,000 small objects must not be 100,000 round trips end to end."""

        def one(name: str) -> bytes | None:
            try:
                return self.read_bytes(name)
            except (OSError, StorageError):
                return None

        if not self.remote or len(names) < 2:
            return {name: one(name) for name in names}
        with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="read-many") as pool:
            return dict(zip(names, pool.map(one, names), strict=True))

    def read_text(self, name: str) -> str:
        return self.read_bytes(name).decode()

    def exists(self, name: str) -> bool:
        if not self.remote:
            return os.path.lexists(self.path(name))
        return bool(self.fs.exists(self.path(name)))

    def size(self, name: str) -> int:
        if not self.remote:
            return os.path.getsize(self.path(name))
        return int(self.fs.info(self.path(name))["size"])

    def list(self, name: str = "") -> list[str]:
        """Names directly under ``name`` (files and "directories"), sorted; [] if there is nothing."""
        if not self.remote:
            try:
                return sorted(os.listdir(self.path(name)))
            except (FileNotFoundError, NotADirectoryError):
                return []
        try:
            with _storage_errors(f"listing {self.url_of(name)}"):
                entries = self.fs.ls(self.path(name), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        prefix = self.path(name).rstrip("/") + "/"
        return sorted({str(e).removeprefix(prefix).rstrip("/") for e in entries if str(e).startswith(prefix)})

    def walk(self, name: str = "") -> Iterator[str]:
        """Every object below ``name``, as names relative to the root."""
        base = self.path(name)
        if not self.remote:
            for directory, _, files in os.walk(base):
                for file in files:
                    yield os.path.relpath(os.path.join(directory, file), self.root)
            return
        with contextlib.suppress(FileNotFoundError):
            for path in self.fs.find(base):
                yield str(path).removeprefix(self.root + "/")

    # -- writing ---------------------------------------------------------------------------------------
    def write(self, name: str, data: bytes | str) -> None:
        """Replaces the whole object atomically: readers see the old or the new bytes, never a mix."""
        payload = data.encode() if isinstance(data, str) else data
        target = self.path(name)
        if not self.remote:
            os.replace(_write_scratch(target, payload), target)
            return
        with _storage_errors(f"writing {self.url_of(name)}"):
            self.fs.pipe_file(target, payload)  # one PUT: atomic on every S3-compatible store

    def create(self, name: str, data: bytes | str) -> bool:
        """Writes the object only if no object has that name; True if this call created it.

        The primitive the commit protocol rests on: of any number of concurrent creators exactly one wins.
        """
        payload = data.encode() if isinstance(data, str) else data
        target = self.path(name)
        if not self.remote:
            scratch = _write_scratch(target, payload)
            try:
                os.link(scratch, target)
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(scratch)
        for delay in CONFLICT_RETRIES:
            try:
                self.fs.pipe_file(target, payload, mode="create")  # If-None-Match: *
            except FileExistsError:
                return False
            except OSError as error:
                code = _s3_error_code(error)
                if code == "PreconditionFailed":  # 412: the name exists
                    return False
                if code == "ConditionalRequestConflict" and delay is not None:
                    # 409: a concurrent conditional write is in flight; retry and learn who won.
                    time.sleep(delay)
                    continue
                raise StorageError(f"creating {self.url_of(name)}: {error}") from error
            return True
        raise AssertionError("unreachable")

    def copy(self, source: str, target: str) -> None:
        """Copies an object inside the store (server-side on S3; a hard link on POSIX when possible)."""
        if not self.remote:
            destination = Path(self.path(target))
            destination.parent.mkdir(parents=True, exist_ok=True)
            scratch = _scratch(str(destination))
            try:
                os.link(self.path(source), scratch)
            except OSError:
                shutil.copyfile(self.path(source), scratch)
            os.replace(scratch, destination)
            # rename(2) does nothing when both names are links to one file (a copy made before): drop ours.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(scratch)
            return
        with _storage_errors(f"copying {self.url_of(source)} to {self.url_of(target)}"):
            self.fs.copy(self.path(source), self.path(target))

    def delete(self, name: str) -> None:
        """Deletes one object; nothing if it is not there (S3 cannot tell the two apart)."""
        if not self.remote:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(name))
            return
        with contextlib.suppress(FileNotFoundError), _storage_errors(f"deleting {self.url_of(name)}"):
            self.fs.rm_file(self.path(name))

    def delete_tree(self, name: str) -> None:
        """Deletes everything below ``name`` (nothing if absent)."""
        if not self.remote:
            path = Path(self.path(name))
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            return
        paths = list(self.fs.find(self.path(name)))
        if paths:
            with contextlib.suppress(FileNotFoundError), _storage_errors(f"deleting {self.url_of(name)}"):
                self.fs.rm(paths)


@contextlib.contextmanager
def _storage_errors(what: str) -> Iterator[None]:
    """A store's failure as a StorageError saying what was being done; FileNotFoundError passes through,
    because each caller gives "not there" its own meaning."""
    try:
        yield
    except FileNotFoundError:
        raise
    except OSError as error:
        raise StorageError(f"{what}: {error}") from error


def _s3_error_code(error: BaseException) -> str | None:
    """The S3 error code (``PreconditionFailed``, ...) behind an s3fs OSError, from botocore's ClientError."""
    seen: BaseException | None = error
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            return str((response.get("Error") or {}).get("Code") or "") or None
        seen = seen.__cause__ or seen.__context__
    return None
