"""docs/architecture.md stays the live map: every module under ``tagseg/`` is named in its package layout.

The layout is the code block under "## Package layout": one entry per top-level package or module
(``  data/  ...`` and its indented continuation lines). A module ``tagseg/<package>/.../<name>.py``
must be named (``<name>`` as a word) in its package's entry, a top-level ``tagseg/<name>.py`` must
be the name of an entry (``<name>.py``), and every package must have an entry.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "tagseg"
DOC = ROOT / "docs" / "architecture.md"
ENTRY = re.compile(r"^  (\S+)")


def layout_entries(text: str) -> dict[str, str]:
    """``{"data/": "<the entry's text>", "metrics.py": ..., ...}`` from the package-layout block."""
    block = text.split("## Package layout", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        found = ENTRY.match(line)
        if found:
            # a line may name several entries ("conventions.py  errors.py ...")
            names = [w for w in line.split() if w.endswith(("/", ".py"))] or [found.group(1)]
            current = names[0]
            for name in names:
                entries[name] = entries.get(name, "") + " " + line
        elif current is not None:
            entries[current] += " " + line
    return entries


def unnamed_modules(text: str) -> list[str]:
    """The modules (paths relative to the project root) the layout does not name."""
    entries = layout_entries(text)
    missing = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(PACKAGE_DIR)
        if rel.parts[0] == "conf":  # package data (the configs), listed as one entry
            continue
        if len(rel.parts) == 1:
            if rel.name != "__init__.py" and rel.name not in entries:
                missing.append(str(path.relative_to(ROOT)))
            continue
        entry = entries.get(f"{rel.parts[0]}/")
        name = path.parent.name if rel.name == "__init__.py" else path.stem
        if entry is None or not re.search(rf"(?<!\w){re.escape(name)}(?!\w)", entry):
            missing.append(str(path.relative_to(ROOT)))
    return missing


def test_every_module_is_named_in_the_architecture_page():
    missing = unnamed_modules(DOC.read_text())
    assert not missing, "docs/architecture.md (## Package layout) does not name: " + ", ".join(missing)


def test_the_check_fails_for_an_unnamed_module():
    text = DOC.read_text()
    block = text.split("## Package layout", 1)[1].split("```", 2)[1]
    without_store = block.replace("store.py", "").replace("store", "")
    assert "tagseg/io/store.py" in unnamed_modules(text.replace(block, without_store))
