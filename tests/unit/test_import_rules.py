"""The package layout holds: pure parts import no I/O, lower layers never import higher ones, and the operator
and the workers meet only in datajob_core (docs/architecture.md, "Packages and their rules")."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = {
    "datajob_core": REPO / "core",
    "datajob_operator": REPO / "operator",
    "datajob_worker": REPO / "worker",
}

# What each part of datajob_core may import of datajob_core (besides itself).
LAYERS: dict[str, set[str]] = {
    "protocol": set(),
    "shards": set(),
    "data": {"shards"},
    "api": {"data"},
    "cluster": {"api", "data", "shards", "protocol"},
    "storage": {"data", "shards", "protocol"},
    "report": {"data", "shards", "storage"},
}
# The parts that read and write data (the run report reads the output and draws with plotly); every other
# part of datajob_core decides only.
IO_PARTS = {"storage", "report"}
# Modules that reach files, networks, processes or a cluster, or load code by name: a pure part imports
# none of them.
IO_MODULES = {
    "aiohttp", "asyncio", "boto3", "botocore", "builtins", "fsspec", "glob", "http", "httpx", "importlib",
    "io", "kopf", "kubernetes", "multiprocessing", "pathlib", "pyarrow", "pykube", "requests", "s3fs",
    "shutil", "socket", "sqlite3", "subprocess", "tempfile", "threading", "urllib.request", "urllib3",
}  # fmt: skip
# Of ``os``, a pure part may use only the string functions of os.path (not realpath, exists, ...: those
# read the file system).
PURE_OS = {"path", "sep"}
PURE_OS_PATH = {"basename", "commonpath", "dirname", "isabs", "join", "normcase", "normpath", "sep", "split"}
# Names that reach files or load code whatever module they come from.
IO_NAMES = {"open", "__import__", "exec", "eval"}
IO_METHODS = {"open", "read_bytes", "read_text", "write_bytes", "write_text"}


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. datajob_core.shards.ledger
    path: Path
    tree: ast.Module

    @property
    def package(self) -> str:
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    @property
    def part(self) -> str:
        """Its part of datajob_core: the subpackage, or the top-level module (protocol)."""
        return self.name.split(".")[1] if self.name.count(".") else ""


def modules(package: str) -> list[Module]:
    found = []
    for path in sorted((ROOTS[package] / package).rglob("*.py")):
        relative = path.relative_to(ROOTS[package]).with_suffix("")
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        found.append(Module(".".join(parts), path, ast.parse(path.read_text(), str(path))))
    return found


def imported(module: Module) -> Iterator[tuple[str, int]]:
    """What ``module`` imports, with the line (``from a import b`` yields a.b too: b may be a module)."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def violations(module: Module) -> list[str]:
    """What ``module`` does against the rules, one line each (file:line: what)."""
    where = f"{module.path.relative_to(REPO)}"
    problems = []
    top = module.name.split(".")[0]
    for name, line in imported(module):
        target = name.split(".")
        if top == "datajob_core" and target[0] in ("datajob_operator", "datajob_worker"):
            problems.append(f"{where}:{line}: datajob_core imports {name}")
        if {top, target[0]} == {"datajob_operator", "datajob_worker"}:
            problems.append(f"{where}:{line}: {top} imports {name} (they meet only in datajob_core)")
        if top != "datajob_core":
            continue
        layer = target[1] if target[0] == "datajob_core" and len(target) > 1 else ""
        if layer in LAYERS and layer != module.part and layer not in LAYERS.get(module.part, set()):
            problems.append(f"{where}:{line}: datajob_core.{module.part} imports {name}")
        if module.part not in IO_PARTS and any(name == m or name.startswith(f"{m}.") for m in IO_MODULES):
            problems.append(f"{where}:{line}: pure datajob_core.{module.part} imports {name} (I/O)")
    if top == "datajob_core" and module.part not in IO_PARTS:
        problems += [
            f"{where}:{line}: pure datajob_core.{module.part} {what}" for line, what in _io_uses(module)
        ]
    return problems


def _io_uses(module: Module) -> Iterator[tuple[int, str]]:
    """Uses of os beyond path strings, and names or methods that open files or load code."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "os" and alias.asname not in (None, "os"):
                    yield node.lineno, f"imports os as {alias.asname}"
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "os.path"):
            allowed = PURE_OS if node.module == "os" else PURE_OS_PATH
            for alias in node.names:
                if alias.name not in allowed:
                    yield node.lineno, f"imports {alias.name} from {node.module}"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr not in PURE_OS:
                yield node.lineno, f"uses os.{node.attr}"
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and (node.value.value.id, node.value.attr) == ("os", "path")
        ):
            if node.attr not in PURE_OS_PATH:
                yield node.lineno, f"uses os.path.{node.attr} (it reads the file system)"
        elif isinstance(node, ast.Name) and node.id in IO_NAMES and isinstance(node.ctx, ast.Load):
            yield node.lineno, f"uses {node.id}()"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in IO_METHODS
        ):
            yield node.lineno, f"calls .{node.func.attr}()"


def _check(package: str) -> list[str]:
    return [problem for module in modules(package) for problem in violations(module)]


def test_every_part_of_the_core_is_one_the_rules_name() -> None:
    found = modules("datajob_core")
    assert len(found) > 20  # the walk found the core at all
    strays = [m.name for m in found if m.part and m.part not in LAYERS]
    assert not strays, f"place these in a part of datajob_core (and in LAYERS): {strays}"


def test_pure_parts_of_the_core_perform_no_io_and_import_only_lower_layers() -> None:
    assert _check("datajob_core") == []


@pytest.mark.parametrize("package", ["datajob_operator", "datajob_worker"])
def test_the_operator_and_the_workers_do_not_import_each_other(package: str) -> None:
    assert len(modules(package)) > 10  # the walk found the package at all
    assert _check(package) == []


@pytest.mark.parametrize(
    ("name", "source", "broken"),
    [
        ("datajob_core.shards.ledger", "from datajob_core.cluster import reconciler\n", "imports"),
        ("datajob_core.data.planning", "from datajob_core.storage.stores import Store\n", "imports"),
        ("datajob_core.cluster.sizing", "import fsspec\n", "(I/O)"),
        ("datajob_core.api.models", "def f():\n    return open('x')\n", "uses open()"),
        ("datajob_core.api.models", "reader = open\n", "uses open()"),
        ("datajob_core.data.planning", "import os\nos.listdir('.')\n", "uses os.listdir"),
        ("datajob_core.data.planning", "import os\nos.path.realpath('.')\n", "os.path.realpath"),
        ("datajob_core.data.planning", "from os.path import exists\n", "imports exists from os.path"),
        ("datajob_core.data.planning", "from os import listdir\n", "imports listdir from os"),
        ("datajob_core.data.planning", "import os as o\n", "imports os as o"),
        ("datajob_core.data.planning", "import gzip\ngzip.open('x')\n", "calls .open()"),
        ("datajob_core.data.planning", "from pathlib import Path\n", "(I/O)"),
        ("datajob_core.data.planning", "import importlib\n", "(I/O)"),
        ("datajob_core.shards.ledger", "def f():\n    from datajob_core.storage import stores\n", "imports"),
        ("datajob_core.cluster.sizing", "from ..storage import stores\n", "imports datajob_core.storage"),
        ("datajob_core.protocol", "from datajob_worker import agent\n", "datajob_core imports"),
        ("datajob_worker.agent", "from datajob_operator.kube import JobClient\n", "meet only"),
        ("datajob_worker.agent", "import datajob_operator.kube as kube\n", "meet only"),
    ],
)
def test_the_rules_catch_what_they_forbid(name: str, source: str, broken: str) -> None:
    path = ROOTS[name.split(".", maxsplit=1)[0]].joinpath(*name.split(".")).with_suffix(".py")
    problems = violations(Module(name, path, ast.parse(source)))
    assert any(broken in p for p in problems), problems


def test_the_storage_part_may_perform_io() -> None:
    name = "datajob_core.storage.stores"
    path = ROOTS["datajob_core"].joinpath(*name.split(".")).with_suffix(".py")
    assert violations(Module(name, path, ast.parse("import fsspec\nimport os\nos.listdir('.')\n"))) == []


def test_relative_imports_inside_a_part_are_allowed() -> None:
    name = "datajob_core.cluster.sizing"
    path = ROOTS["datajob_core"].joinpath(*name.split(".")).with_suffix(".py")
    source = "from . import queueing\nfrom ..data import planning\nimport os\nos.path.normpath('a')\n"
    assert violations(Module(name, path, ast.parse(source))) == []
