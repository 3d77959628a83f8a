"""Declared dependencies match the imports: pyproject.toml against ``tagseg/``, ``hydra_plugins/`` and the configs.

Every third-party module tagseg imports (module- or function-level) or names as a config ``_target_`` is
provided by a declared distribution (runtime or an extra), and every declared distribution is used: by an
import, a ``_target_``, or one of the few uses without an import listed in :data:`USED_WITHOUT_IMPORT`
(each with the file and text that show the use, so the entry goes stale loudly). Optional extras are only
imported inside functions, so ``import tagseg`` works without them. ``requirements.lock`` pins every
declared distribution with hashes, and leaves torch to the Makefile.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from functools import cache
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"tagseg", "hydra_plugins.tagseg_optuna_sweeper"}
#: namespace packages shared by several distributions: a module is named by its first two components
NAMESPACES = {"hydra_plugins"}
#: declared distributions that tagseg uses without importing them: (file, text showing the use)
USED_WITHOUT_IMPORT = {
    "tensorboard": ("tagseg/conf/logger/tensorboard.yaml", "TensorBoardLogger"),  # Lightning's logger imports it
    "sqlalchemy": ("tagseg/conf/hparams_search/resnetvae.yaml", "sqlite:///"),  # optuna 2.10's storage: < 2
    "onnx": ("tagseg/stages/export.py", "torch.onnx.export("),  # torch.onnx writes the model with it
    "onnxscript": ("tagseg/stages/export.py", '"dynamo": True'),  # torch.onnx's dynamo exporter
}
DEV_USES = {"pytest": ("tests/conftest.py", "import pytest"), "ruff": ("Makefile", "/ruff check")}


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def canonicalize_name(name: str) -> str:
    """PEP 503's normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group()) for r in requirements}


def declared() -> dict[str, set[str]]:
    """Distribution names by group: ``runtime`` and each optional extra."""
    groups = {"runtime": names(project()["dependencies"])}
    groups.update({extra: names(reqs) for extra, reqs in project()["optional-dependencies"].items()})
    return groups


def module_key(dotted: str) -> str:
    parts = dotted.split(".")
    return ".".join(parts[:2]) if parts[0] in NAMESPACES else parts[0]


def third_party(dotted: str) -> bool:
    key = module_key(dotted)
    return key.split(".")[0] not in sys.stdlib_module_names and key not in FIRST_PARTY


@cache
def imports(folder: Path) -> list[tuple[str, str, bool]]:
    """(module key, file:line, at module level) of every absolute third-party import under ``folder``."""
    own = (
        {p.stem for p in folder.rglob("*.py")} | {p.parent.name for p in folder.rglob("__init__.py")} | {folder.name}
    )  # e.g. tests' helper modules (conftest, raw_fixtures)
    found = []
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body} | {id(n) for n in ast.walk(tree) if isinstance(n, ast.If | ast.Try)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            found += [
                (module_key(m), where, id(node) in top) for m in modules if third_party(m) and module_key(m) not in own
            ]
    return found


def config_targets() -> list[tuple[str, str]]:
    """(module key, file) of every ``_target_`` in the shipped configs."""
    found = []
    for path in sorted((ROOT / "tagseg" / "conf").rglob("*.yaml")):
        for target in re.findall(r"_target_:\s*([\w.]+)", path.read_text()):
            if third_party(target):
                found.append((module_key(target), str(path.relative_to(ROOT))))
    return found


@cache
def module_owners() -> dict[str, frozenset[str]]:
    """Module key -> the installed distributions shipping it (one pass over every distribution's file list)."""
    owners: dict[str, set[str]] = {}
    for dist in md.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or []:
            parts = file.parts
            if len(parts) > 1 and parts[0] in NAMESPACES:
                owners.setdefault(".".join(parts[:2]), set()).add(name)
            elif not parts[0].endswith((".dist-info", ".data")) and parts[0] not in ("..", "__pycache__"):
                owners.setdefault(parts[0].removesuffix(".py").split(".")[0], set()).add(name)
    return {key: frozenset(dists) for key, dists in owners.items()}


def distributions_of(key: str) -> frozenset[str]:
    """The installed distributions providing a module key (a namespace key: the ones shipping that folder)."""
    return module_owners().get(key, frozenset())


def used_by(modules: list[tuple[str, str]]) -> dict[str, str]:
    """Distribution -> one place using it; a module no installed distribution provides fails here."""
    used: dict[str, str] = {}
    for key, where in modules:
        dists = distributions_of(key)
        assert dists, f"{where}: {key} is imported but no installed distribution provides it"
        for dist in dists:
            used.setdefault(dist, f"{where} ({key})")
    return used


def tagseg_uses() -> dict[str, str]:
    code = [(k, w) for folder in ("tagseg", "hydra_plugins") for k, w, _ in imports(ROOT / folder)]
    return used_by(code + config_targets())


def test_every_import_is_declared():
    groups = declared()
    everything = set().union(*(deps for group, deps in groups.items() if group != "dev"))
    undeclared = {dist: where for dist, where in tagseg_uses().items() if dist not in everything}
    assert not undeclared, f"used by tagseg but not declared in pyproject.toml: {undeclared}"


def test_every_declared_dependency_is_used():
    groups = declared()
    used = set(tagseg_uses())
    for dist, (file, text) in USED_WITHOUT_IMPORT.items():
        assert text in (ROOT / file).read_text(), f"{dist}: {file} no longer shows its use ({text!r})"
        used.add(dist)
    unused = {(group, dist) for group, deps in groups.items() if group != "dev" for dist in deps - used}
    assert not unused, f"declared in pyproject.toml but unused: {sorted(unused)}"
    assert set(USED_WITHOUT_IMPORT) <= set().union(*groups.values()), "a USED_WITHOUT_IMPORT entry is not declared"


def test_dev_extra_is_what_tests_and_lint_use():
    groups = declared()
    assert groups["dev"] == set(DEV_USES)
    for dist, (file, text) in DEV_USES.items():
        assert text in (ROOT / file).read_text(), f"{dist}: {file} does not show its use"
    runtime = set().union(*groups.values())
    undeclared = {
        dist: where
        for dist, where in used_by([(k, w) for k, w, _ in imports(ROOT / "tests")]).items()
        if dist not in runtime
    }
    assert not undeclared, f"imported by tests but not declared: {undeclared}"


def test_extras_are_imported_inside_functions_only():
    """``import tagseg.<anything>`` works without the optional extras installed."""
    optional = set().union(*(deps for group, deps in declared().items() if group not in ("runtime", "dev")))
    at_top = [
        (where, key)
        for folder in ("tagseg", "hydra_plugins")
        for key, where, top in imports(ROOT / folder)
        if top and distributions_of(key) & optional
    ]
    assert not at_top, f"an optional extra imported at module level: {at_top}"


def lock_pins() -> dict[str, tuple[str, int]]:
    """requirements.lock: distribution -> (version, number of hashes)."""
    pins: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z])", (ROOT / "requirements.lock").read_text()):
        first = block.split()[0] if block.strip() and not block.startswith("#") else ""
        if "==" in first:
            name, version = first.split("==")
            pins[canonicalize_name(name)] = (version, block.count("--hash=sha256:"))
    return pins


def test_lock_pins_every_declared_dependency_with_hashes():
    pins = lock_pins()
    assert len(pins) > 50, "requirements.lock looks empty"
    assert not [d for d, (_, n) in pins.items() if n == 0], "every locked distribution needs a hash"
    assert "torch" not in pins, "torch is installed by the Makefile's pin, outside the hashed lock"
    missing = set().union(*declared().values()) - set(pins) - {"torch"}
    assert not missing, f"declared but not in requirements.lock (run `make lock`): {sorted(missing)}"
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes --no-deps -r requirements.lock" in makefile
    assert re.search(r"^TORCH := \d", makefile, re.M) and "torch==$(TORCH)" in makefile
