"""``tagseg <stage> [hydra overrides]``: one command, one thin Hydra app per stage."""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable

#: stage -> (module with a ``main`` Hydra app, one-line description)
STAGES: dict[str, tuple[str, str]] = {
    "phantom": (
        "tagseg.apps.phantom",
        "write phantom subjects in the on-disk layout of ACDC, M&Ms, SCD or the tagged set",
    ),
    "prepare": (
        "tagseg.apps.prepare",
        "build a slice store from the phantom or a raw dataset (ACDC, M&Ms, SCD, tagged)",
    ),
    "translate": (
        "tagseg.apps.translate",
        "turn a cine store into a tagged-looking store (method=physics|physics_dynamic|cyclegan)",
    ),
    "cyclegan": ("tagseg.apps.cyclegan", "train the cine <-> tagged CycleGAN"),
    "train": ("tagseg.apps.train", "train / fine-tune a segmenter, or run a whole strategy (strategy=...)"),
    "evaluate": ("tagseg.apps.evaluate", "test a checkpoint on a store: per-image Dice / HD95 table + summary.json"),
    "predict": ("tagseg.apps.predict", "segment new tagged scans (masks, overlays, reference points)"),
    "strain": (
        "tagseg.apps.strain",
        "myocardial strain from tagged cine series (tracked mesh, Ecc / Err, AHA segments)",
    ),
    "qc": ("tagseg.apps.qc", "fit a run's quality-control model (predicted Dice, qc_flag) next to its checkpoint"),
    "export": ("tagseg.apps.export", "a checkpoint as a deployable ONNX / torch.export model with a JSON sidecar"),
    "report": ("tagseg.apps.report", "tables and figures from runs and sweeps"),
    "store": ("tagseg.apps.store", "check a slice store in full: `tagseg store check <store.h5>`"),
}

#: stage -> config keys that bare words after the stage fill, in order (`tagseg store check x.h5`)
POSITIONAL: dict[str, tuple[str, ...]] = {"store": ("action", "path")}


def positional_overrides(stage: str, args: list[str]) -> list[str]:
    """Bare words (no ``=``, no leading ``-``) as ``key=value`` overrides of the stage's positional keys."""
    keys = list(POSITIONAL.get(stage, ()))
    out = []
    for arg in args:
        if keys and "=" not in arg and not arg.startswith("-"):
            quoted = arg if re.fullmatch(r"[\w./-]*", arg) or "'" in arg else f"'{arg}'"
            out.append(f"{keys.pop(0)}={quoted}")
        else:
            out.append(arg)
    return out


#: stage -> {command-line key: config key}: ``tagseg predict model=<folder>`` names a key that is
#: also a config group (``conf/model``, the training networks), so it is renamed before Hydra sees it
ALIASES: dict[str, dict[str, str]] = {"predict": {"model": "exported_model"}, "strain": {"model": "exported_model"}}

USAGE = """usage: tagseg <stage> [key=value ...] [-m] [--help]
       tagseg --completion bash     (shell completion: eval "$(tagseg --completion bash)")

Stages:
{stages}

Each stage is a Hydra app over tagseg/conf/<stage>.yaml: override any value as key=value, sweep with -m,
see a stage's options with `tagseg <stage> --help` and its resolved config with `--cfg job`.
"""


def usage() -> str:
    width = max(len(s) for s in STAGES)
    rows = "\n".join(f"  {name:<{width}}  {desc}" for name, (_, desc) in STAGES.items())
    return USAGE.format(stages=rows)


#: bash completion: the stage name first, then Hydra's completion of that stage's config
BASH_COMPLETION = """# tagseg bash completion: eval "$(tagseg --completion bash)" (e.g. in ~/.bashrc)
_tagseg_complete()
{{
    local words=($COMP_LINE)
    local word="${{words[$COMP_CWORD]}}"
    if [[ "$COMP_LINE" == *" " ]]; then word=""; fi
    if (( COMP_CWORD <= 1 )); then
        COMPREPLY=($(compgen -W "{stages} --help --completion" -- "$word"))
        return
    fi
    local choices
    choices=$(COMP_LINE="$COMP_LINE" COMP_POINT=$COMP_POINT "${{words[0]}}" "${{words[1]}}" -sc query=bash 2>/dev/null)
    COMPREPLY=($(compgen -o nospace -o default -W "$choices" -- "$word"))
}}
COMP_WORDBREAKS=${{COMP_WORDBREAKS//=}}
complete -o nospace -o default -F _tagseg_complete tagseg
"""


def completion_script(shell: str) -> str:
    """The shell's completion script for ``tagseg`` (bash only).

    Raises:
        SystemExit: another shell (status 2).
    """
    if shell != "bash":
        print(f"tagseg: error: --completion: only bash is supported, got '{shell}'", file=sys.stderr)
        raise SystemExit(2)
    return BASH_COMPLETION.format(stages=" ".join(STAGES))


def stage_completion_line(line: str, stage: str) -> str:
    """``tagseg train mod`` -> ``tagseg-train mod``: the line Hydra's completion of the stage's app
    expects (it drops the first word as the program's name)."""
    head, _, rest = line.lstrip().partition(" ")
    if head.endswith("tagseg") and rest.lstrip().startswith(stage):
        rest = rest.lstrip()[len(stage) :]
        return f"tagseg-{stage}{rest}"
    return line


def complete(stage: str, args: list[str]) -> None:
    """Hydra's completion of ``conf/<stage>.yaml`` by a bare Hydra app over it (no stage code imported,
    so a TAB answers quickly)."""
    import hydra

    from tagseg.runtime.config import CONF_DIR

    sys.argv = [f"tagseg-{stage}", *args]
    hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=stage)(lambda cfg: None)()


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
    if argv[0] == "--completion":
        print(completion_script(argv[1] if len(argv) > 1 else "bash"), end="")
        return
    stage = argv[0]
    if stage not in STAGES:
        from tagseg.runtime.task import closest

        hint = closest(stage, list(STAGES))
        print(f"tagseg: error: unknown stage '{stage}'{hint}; `tagseg --help` lists the stages", file=sys.stderr)
        raise SystemExit(2)
    if any(a.startswith("install=") for a in argv[1:]) and ("-sc" in argv or "--shell-completion" in argv):
        # Hydra would register `tagseg-<stage>`, a command that does not exist
        print(completion_script("bash"), end="")
        return
    if "COMP_LINE" in os.environ and any(a.startswith("query=") for a in argv[1:]):
        os.environ["COMP_LINE"] = stage_completion_line(os.environ["COMP_LINE"], stage)
        complete(stage, argv[1:])
        return
    # absolute project root for ${paths.*}, fixed before Hydra (and any launcher) changes process
    os.environ.setdefault("TAGSEG_ROOT", os.getcwd())
    module = importlib.import_module(STAGES[stage][0])
    sys.argv = [f"tagseg-{stage}", *(alias(stage, arg) for arg in positional_overrides(stage, argv[1:]))]
    run_app(module.main)


def run_app(app: Callable[[], None]) -> None:
    """Run a stage's Hydra app; Hydra's refusal of the command line (unknown key, unknown group choice,
    bad override) is one ``tagseg: error:`` line and exit status 2, like every other refusal.

    Hydra prints such errors itself (several lines, exit 1) unless ``HYDRA_FULL_ERROR`` is set, in which
    case it raises them: it is set here (a user's own setting is kept), so an error after composition
    (a bug) shows its full traceback.
    """
    from tagseg.runtime.task import composition_error, refuse

    ours = "HYDRA_FULL_ERROR" not in os.environ
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        app()
    except Exception as exc:
        error = composition_error(exc)
        if error is None:
            raise
        refuse(error)
        raise SystemExit(2) from None
    finally:
        if ours:
            os.environ.pop("HYDRA_FULL_ERROR", None)


if __name__ == "__main__":
    main()
