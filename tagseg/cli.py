"""``tagseg <stage> [hydra overrides]``: one command, one thin Hydra app per stage."""

from __future__ import annotations

import importlib
import os
import sys

#: stage -> (module with a ``main`` Hydra app, one-line description)
STAGES: dict[str, tuple[str, str]] = {
    "phantom": ("tagseg.apps.phantom", "write phantom subjects in the on-disk layout of ACDC, M&Ms, SCD or the tagged set"),
    "prepare": ("tagseg.apps.prepare", "build a slice store from the phantom or a raw dataset (ACDC, M&Ms, SCD, tagged)"),
    "translate": ("tagseg.apps.translate", "turn a cine store into a tagged-looking store (method=physics|physics_dynamic|cyclegan)"),
    "cyclegan": ("tagseg.apps.cyclegan", "train the cine <-> tagged CycleGAN"),
    "train": ("tagseg.apps.train", "train / fine-tune a segmenter, or run a whole strategy (strategy=...)"),
    "evaluate": ("tagseg.apps.evaluate", "test a checkpoint on a store: per-image Dice / HD95 table + summary.json"),
    "predict": ("tagseg.apps.predict", "segment new tagged scans (masks, overlays, reference points)"),
    "export": ("tagseg.apps.export", "a checkpoint as a deployable ONNX / torch.export model with a JSON sidecar"),
    "report": ("tagseg.apps.report", "tables and figures from runs and sweeps"),
}

#: stage -> {command-line key: config key}: ``tagseg predict model=<folder>`` names a key that is
#: also a config group (``conf/model``, the training networks), so it is renamed before Hydra sees it
ALIASES: dict[str, dict[str, str]] = {"predict": {"model": "exported_model"}}

USAGE = """usage: tagseg <stage> [key=value ...] [-m] [--help]

Stages:
{stages}

Each stage is a Hydra app over tagseg/conf/<stage>.yaml: override any value as key=value, sweep with -m,
see a stage's options with `tagseg <stage> --help` and its resolved config with `--cfg job`.
"""


def usage() -> str:
    width = max(len(s) for s in STAGES)
    rows = "\n".join(f"  {name:<{width}}  {desc}" for name, (_, desc) in STAGES.items())
    return USAGE.format(stages=rows)


def alias(stage: str, arg: str) -> str:
    """``key=value`` with ``key`` renamed by :data:`ALIASES` (other arguments unchanged)."""
    key, sep, value = arg.partition("=")
    renamed = ALIASES.get(stage, {}).get(key)
    return f"{renamed}={value}" if sep and renamed else arg


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    stage = argv[0]
    if stage not in STAGES:
        print(f"tagseg: unknown stage '{stage}'\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    # absolute project root for ${paths.*}, fixed before Hydra (and any launcher) changes process
    os.environ.setdefault("TAGSEG_ROOT", os.getcwd())
    module = importlib.import_module(STAGES[stage][0])
    sys.argv = [f"tagseg-{stage}", *(alias(stage, arg) for arg in argv[1:])]
    module.main()


if __name__ == "__main__":
    main()
