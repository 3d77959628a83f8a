"""Import layers of ``tagseg/``: imports point down the layer order, no package cycles, no private names.

Every module is parsed with ``ast`` (nothing is imported), and every import statement counts: at module
level, inside functions and under ``if TYPE_CHECKING``. Failure messages name the file, the line and the
import, so a violation is fixed where it is reported.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "tagseg"
ROOT = PACKAGE_DIR.parent

#: Layers, bottom to top. A module may import from its own layer or a lower one, never a higher one.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "conventions", "conf", "metric_registry"),
    ("io", "runtime"),
    ("physics", "metrics", "losses", "contours", "postprocess"),
    ("data", "tagness", "augment", "predict_outputs"),
    ("models", "callbacks"),
    ("translate", "report", "strain", "qc"),
    ("stages",),
    ("pipeline",),
    ("apps",),
    ("cli",),
]
LAYER_OF: dict[str, int] = {pkg: level for level, pkgs in enumerate(LAYERS) for pkg in pkgs}

#: (importer package, imported package) pairs forbidden even where the layer order would allow them
FORBIDDEN: list[tuple[str, str, str]] = [
    ("physics", "data", "physics is the imaging model; data depends on it, never the other way"),
]


@dataclass(frozen=True)
class Import:
    """One imported tagseg name, where it was imported."""

    file: str  # path relative to the project root
    line: int
    importer: str  # dotted module name of the importing file
    module: str  # dotted module the name comes from
    name: str | None  # the imported name (``from m import name``), None for ``import m``
    text: str  # the import statement as written

    def where(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def module_name(path: Path) -> str:
    """``tagseg/io/store.py`` -> ``tagseg.io.store``; ``tagseg/io/__init__.py`` -> ``tagseg.io``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute module of ``from <dots><module> import ...`` in ``importer``."""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def tagseg_imports(path: Path) -> list[Import]:
    """Every import of a ``tagseg`` module in one file (module and function level)."""
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    importer = module_name(path)
    rel = str(path.relative_to(ROOT))
    found: list[Import] = []
    for node in ast.walk(tree):
        text = ast.get_source_segment(source, node) if isinstance(node, (ast.Import, ast.ImportFrom)) else None
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "tagseg" or alias.name.startswith("tagseg."):
                    found.append(Import(rel, node.lineno, importer, alias.name, None, text or ""))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = resolve_relative(importer, path.name == "__init__.py", node.level, node.module)
            if module == "tagseg" or module.startswith("tagseg."):
                for alias in node.names:
                    found.append(Import(rel, node.lineno, importer, module, alias.name, text or ""))
    return found


def private_attribute_uses(path: Path) -> list[tuple[int, str]]:
    """``alias._name`` where ``alias`` is a tagseg module imported by this file (``from tagseg.io import store``)."""
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    module_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tagseg.") and alias.asname:
                    module_aliases.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tagseg"):
            for alias in node.names:
                if (PACKAGE_DIR.parent / (node.module or "").replace(".", "/") / f"{alias.name}.py").exists():
                    module_aliases.add(alias.asname or alias.name)
    uses = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
            and is_private(node.attr)
        ):
            uses.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return uses


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def package_of(module: str) -> str:
    """The top-level tagseg package of a module: ``tagseg.io.store`` -> ``io``; ``tagseg`` -> ``tagseg``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tagseg"


def layer_of(module: str, name: str | None = None) -> int | None:
    """The layer of a module; ``from tagseg import io`` counts as importing ``tagseg.io``."""
    pkg = package_of(module)
    if pkg == "tagseg" and name is not None:
        pkg = name
    return LAYER_OF.get(pkg)


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return [imp for path in sources() for imp in tagseg_imports(path)]


def test_every_package_has_a_layer():
    """A new folder or top-level module under tagseg/ must be placed in LAYERS (this test's data) first."""
    missing = sorted({package_of(module_name(p)) for p in sources()} - set(LAYER_OF) - {"tagseg"})
    assert not missing, f"tagseg packages without a layer (add them to LAYERS in {Path(__file__).name}): {missing}"


def test_imports_do_not_go_up(imports):
    bad = []
    for imp in imports:
        src, dst = layer_of(imp.importer), layer_of(imp.module, imp.name)
        if src is not None and dst is not None and dst > src:
            bad.append(
                f"{imp.where()}  ({package_of(imp.importer)}, layer {src}, imports "
                f"{package_of(imp.module) if package_of(imp.module) != 'tagseg' else imp.name}, layer {dst})"
            )
    assert not bad, "imports that go up the layer order:\n" + "\n".join(dict.fromkeys(bad))


def test_no_package_cycles(imports):
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        src = package_of(imp.importer)
        dst = package_of(imp.module)
        if dst == "tagseg" and imp.name in LAYER_OF:
            dst = imp.name
        if src != dst and "tagseg" not in (src, dst):
            edges.setdefault(src, {}).setdefault(dst, imp)
    cycles = []
    for src, targets in edges.items():
        for dst, imp in targets.items():
            back = edges.get(dst, {}).get(src)
            if back is not None and src < dst:
                cycles.append(f"tagseg.{src} <-> tagseg.{dst}:\n  {imp.where()}\n  {back.where()}")
    # longer cycles (a -> b -> c -> a): depth-first search over the package graph
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, {}):
            if state.get(nxt) == 1:
                loop = stack[stack.index(nxt) :] + [nxt]
                if len(loop) > 3:  # two-package cycles are reported above with their lines
                    steps = [edges[a][b].where() for a, b in zip(loop, loop[1:])]
                    cycles.append(" -> ".join(f"tagseg.{p}" for p in loop) + ":\n  " + "\n  ".join(steps))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "package-level import cycles:\n" + "\n".join(cycles)


def test_no_private_names_across_modules(imports):
    bad = []
    for imp in imports:
        if imp.module == imp.importer:
            continue
        private_module = next((part for part in imp.module.split(".") if is_private(part)), None)
        if private_module is not None and not imp.importer.startswith(imp.module.rsplit(".", 1)[0] + "."):
            bad.append(f"{imp.where()}  (private module {private_module})")
        if imp.name is not None and is_private(imp.name):
            bad.append(f"{imp.where()}  (private name {imp.name} of {imp.module})")
    for path in sources():
        for line, use in private_attribute_uses(path):
            bad.append(f"{path.relative_to(ROOT)}:{line}: {use}  (private name of another module)")
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


@pytest.mark.parametrize(("importer", "imported", "why"), FORBIDDEN)
def test_forbidden_package_imports(imports, importer, imported, why):
    bad = [
        imp.where()
        for imp in imports
        if package_of(imp.importer) == importer
        and (package_of(imp.module) == imported or (package_of(imp.module) == "tagseg" and imp.name == imported))
    ]
    assert not bad, f"tagseg.{importer} must not import tagseg.{imported} ({why}):\n" + "\n".join(bad)


# --- the checker itself: each rule fails on a planted violation -------------------------------------------------


def plant(tmp_path: Path, monkeypatch, files: dict[str, str]) -> list[Path]:
    """Write a fake ``tagseg`` tree under ``tmp_path`` and point the checker at it."""
    for rel, text in files.items():
        path = tmp_path / "tagseg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "PACKAGE_DIR", tmp_path / "tagseg")
    monkeypatch.setattr(this, "ROOT", tmp_path)
    return sources()


def planted_imports(paths: list[Path]) -> list[Import]:
    return [imp for path in paths for imp in tagseg_imports(path)]


def test_checker_catches_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    paths = plant(
        tmp_path,
        monkeypatch,
        {
            "__init__.py": "",
            "io/__init__.py": "",
            "io/store.py": "def f():\n    from tagseg.stages.train import train\n",
        },
    )
    with pytest.raises(AssertionError, match=r"tagseg/io/store.py:2: from tagseg.stages.train import train"):
        test_imports_do_not_go_up(planted_imports(paths))


def test_checker_catches_relative_imports_and_cycles(tmp_path, monkeypatch):
    paths = plant(
        tmp_path,
        monkeypatch,
        {
            "data/__init__.py": "",
            "data/a.py": "from ..physics import contrast\n",
            "physics/__init__.py": "",
            "physics/contrast.py": "import tagseg.data.a\n",
        },
    )
    found = planted_imports(paths)
    assert {(i.importer, i.module) for i in found} == {
        ("tagseg.data.a", "tagseg.physics"),
        ("tagseg.physics.contrast", "tagseg.data.a"),
    }
    with pytest.raises(AssertionError, match=r"tagseg.data <-> tagseg.physics"):
        test_no_package_cycles(found)
    with pytest.raises(AssertionError, match=r"tagseg/physics/contrast.py:1: import tagseg.data.a"):
        test_forbidden_package_imports(found, "physics", "data", "why")


def test_checker_catches_private_names(tmp_path, monkeypatch):
    paths = plant(
        tmp_path,
        monkeypatch,
        {
            "io/__init__.py": "",
            "io/store.py": "def _read_array(): ...\n",
            "data/__init__.py": "",
            "data/a.py": "from tagseg.io.store import _read_array\n",
            "data/b.py": "from tagseg.io import store\nx = store._read_array\n",
        },
    )
    with pytest.raises(AssertionError) as err:
        test_no_private_names_across_modules(planted_imports(paths))
    assert "tagseg/data/a.py:1: from tagseg.io.store import _read_array" in str(err.value)
    assert "tagseg/data/b.py:2: store._read_array" in str(err.value)
