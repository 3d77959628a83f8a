"""Checkpoints: which file a path means (:func:`resolve_checkpoint`) and the one way tagseg reads
one (:func:`load_checkpoint`, always ``torch.load(..., weights_only=True)``).

Every stage goes through these two: ``tagseg evaluate ckpt=``, ``predict ckpt=``, ``report``
(its examples), ``train init_from=`` and ``ckpt_path=`` (resume, and the best checkpoint the
resumed ModelCheckpoint state names, before it is tested), ``translate method=cyclegan ckpt=`` and
``tagseg cyclegan ckpt_path=``. Files handed to Lightning (``trainer.fit / test(ckpt_path=...)``)
are checked here first, and Lightning is told ``weights_only=True`` as well.

**The resolution rule** (``path`` -> one ``.ckpt`` file):

1. a file is itself;
2. a folder: its checkpoint folder is ``<folder>/checkpoints`` (a run folder), else the folder
   itself when it holds ``*.ckpt`` files, else, for a strategy cell (``strategy.json``, whose model
   lives in the stage cache), the checkpoint folder of the model it names (``run_dir``), else the one
   folder below it holding ``*.ckpt`` files (several: an error listing them);
3. in the checkpoint folder, ``which="best"`` (evaluate, predict, report, init_from,
   translate) takes the single checkpoint not named ``last*.ckpt`` (several: an error listing
   them), else ``last.ckpt``; ``which="last"`` (resuming) takes ``last.ckpt``.

**The load rule**: ``weights_only=True`` unpickles tensors and plain containers only, so a file
needing any other Python object (a trojaned pickle, a class instance) is refused, as is a
truncated or non-PyTorch file, and a checkpoint of another model type than the stage needs
(:data:`SEGMENTATION` from ``tagseg train``, :data:`CYCLEGAN` from ``tagseg cyclegan``,
:data:`TRACKER` from the learned tracker's training). Each
error is a :class:`~tagseg.errors.CheckpointError` whose one line starts with the file. tagseg's
own checkpoints hold plain containers only (hyper-parameters are saved as resolved dicts), so
no global is allow-listed.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from tagseg.errors import CheckpointError
from tagseg.io.run_dir import CHECKPOINTS_DIR, LAST_CKPT, STRATEGY_FILE, last_checkpoint_in

#: the key naming a checkpoint's model type (written by tagseg's LightningModules)
MODEL_KEY = "tagseg_model"
SEGMENTATION = "segmentation"
CYCLEGAN = "cyclegan"
TRACKER = "tracker"
#: hyper-parameters a segmentation checkpoint carries (how older ones, without MODEL_KEY, are recognised)
SEGMENTATION_HPARAMS = ("network", "image_size", "classes", "mean", "std")
#: what writes each model type
WRITERS = {SEGMENTATION: "`tagseg train`", CYCLEGAN: "`tagseg cyclegan`", TRACKER: "the learned tracker's training"}

log = logging.getLogger(__name__)

_GLOBAL = re.compile(r"(?i)unsupported\s+(?:global:\s*)?GLOBAL\s+([\w.]+)")


def resolve_checkpoint(path: str | Path, key: str = "ckpt", which: Literal["best", "last"] = "best") -> Path:
    """The checkpoint file ``path`` means (see the module's resolution rule).

    Args:
        path: a ``.ckpt`` file, a run folder, or a folder holding checkpoints.
        key: the config key ``path`` came from, named in errors.
        which: ``best`` (to use a model) or ``last`` (to resume training).

    Returns:
        An existing file.

    Raises:
        CheckpointError: nothing at ``path``, no checkpoint in it, or several candidates.
    """
    if path is None or str(path) == "":
        raise CheckpointError(f"{key}: no checkpoint given (pass {key}=<file.ckpt or run folder>)")
    path = Path(str(path)).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"{key}: checkpoint {path} not found (expected a .ckpt file or a run folder)")
    path = cell_model_dir(path, key) or path
    folder = _checkpoint_folder(path, key)
    last = last_checkpoint_in(folder)
    if which == "last":
        if not last.is_file():
            raise CheckpointError(f"{key}: {folder} has no {LAST_CKPT} to resume from")
        return last
    found = sorted(folder.glob("*.ckpt"))
    best = [p for p in found if not p.name.startswith("last")]
    if len(best) > 1:
        shown = [str(p) for p in best[:10]]
        raise CheckpointError(
            f"{key}: {folder} holds {len(best)} candidate checkpoints ({shown}); pass {key}=<file.ckpt>"
        )
    if best:
        return best[0]
    if last.is_file():
        return last
    raise CheckpointError(f"{key}: no checkpoint in {folder} (expected best.ckpt or {LAST_CKPT})")


def run_checkpoints(path: str | Path | Sequence[str | Path], key: str = "ckpt") -> list[Path]:
    """One checkpoint per run (an ensemble's members): a file or a run folder ->
    ``[resolve_checkpoint(path)]``; a folder of several runs (a sweep) -> each run's checkpoint by
    the same ``best`` rule, sorted; a strategy sweep (cells with ``strategy.json``, models in the stage
    cache) -> each finished cell's model; a list (``ckpt=[a,b,c]``) -> each item resolved.

    Raises:
        CheckpointError: nothing found, an empty list, or a run folder with several candidates.
    """
    if not isinstance(path, (str, Path)):
        items = list(path)
        if not items:
            raise CheckpointError(f"{key}: an empty list; pass {key}=<file or run folder> or {key}=[a,b,c]")
        return [resolve_checkpoint(p, key=key) for p in items]
    path = Path(str(path)).expanduser()
    if path.is_dir() and not any(path.glob("*.ckpt")) and not (path / CHECKPOINTS_DIR).is_dir():
        folders = sorted({p.parent for p in path.rglob("*.ckpt")})
        if len(folders) > 1:
            return [resolve_checkpoint(folder, key=key) for folder in folders]
        cells = sorted(p.parent for p in path.rglob(STRATEGY_FILE) if p.parent != path)
        if not folders and len(cells) > 1:  # a strategy sweep: each cell's model lives in the stage cache
            return _cell_checkpoints(cells, key)
    return [resolve_checkpoint(path, key=key)]


def _cell_checkpoints(cells: list[Path], key: str) -> list[Path]:
    """Each strategy cell's checkpoint; a failed cell (or one whose model is gone) is left out with a
    warning, so one bad cell does not cost the sweep's ensemble (all bad: the first error)."""
    found, errors = [], []
    for cell in cells:
        try:
            found.append(resolve_checkpoint(cell, key=key))
        except CheckpointError as err:
            errors.append(err)
    if not found:
        raise errors[0]
    for err in errors:
        log.warning("%s (left out of the ensemble)", err)
    return found


def cell_model_dir(folder: Path, key: str = "ckpt") -> Path | None:
    """The model folder a strategy cell names (``strategy.json``'s ``run_dir``: the fine-tuning stage in
    the stage cache), or None when ``folder`` is not a strategy cell or holds checkpoints of its own.

    Raises:
        CheckpointError: an unreadable ``strategy.json``, a failed cell, or a ``run_dir`` that is gone.
    """
    record_path = folder / STRATEGY_FILE
    if not record_path.is_file() or (folder / CHECKPOINTS_DIR).is_dir() or any(folder.glob("*.ckpt")):
        return None
    try:
        record = json.loads(record_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{key}: {record_path}: unreadable strategy record ({err})") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{key}: {record_path}: expected a JSON object (a strategy cell's record)")
    if record.get("status", "ok") != "ok":
        raise CheckpointError(
            f"{key}: {record_path}: the cell did not finish (status {record.get('status')!r}); no model"
        )
    run_dir = record.get("run_dir")
    if not isinstance(run_dir, str) or not Path(run_dir).is_dir():
        raise CheckpointError(
            f"{key}: {record_path} names the model folder {run_dir!r}, which is not there "
            "(the stage cache was moved or cleared; re-run the cell)"
        )
    return Path(run_dir)


def _checkpoint_folder(path: Path, key: str) -> Path:
    own = path / CHECKPOINTS_DIR
    if own.is_dir() and any(own.glob("*.ckpt")):
        return own
    if any(path.glob("*.ckpt")):
        return path
    folders = sorted({p.parent for p in path.rglob("*.ckpt")})
    if len(folders) == 1:
        return folders[0]
    if not folders:
        raise CheckpointError(
            f"{key}: no checkpoint found in {path} (expected a .ckpt file or a run folder with {CHECKPOINTS_DIR}/)"
        )
    shown = [str(p) for p in folders[:10]]
    raise CheckpointError(
        f"{key}: {path} holds checkpoints of {len(folders)} runs ({shown}); pass one run folder or {key}=<file.ckpt>"
    )


def checkpoint_kind(state: Any) -> str | None:
    """The model type of a loaded checkpoint: its :data:`MODEL_KEY`, else :data:`SEGMENTATION`
    when it carries the segmentation hyper-parameters, else None."""
    if not isinstance(state, dict):
        return None
    if isinstance(state.get(MODEL_KEY), str):
        return state[MODEL_KEY]
    hparams = state.get("hyper_parameters")
    if isinstance(hparams, dict) and all(k in hparams for k in SEGMENTATION_HPARAMS) and "state_dict" in state:
        return SEGMENTATION
    return None


def load_checkpoint(path: str | Path, kind: str | None = None, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint file with ``torch.load(..., weights_only=True)``.

    Args:
        path: the file (see :func:`resolve_checkpoint` for folders).
        kind: the model type the caller needs (:data:`SEGMENTATION`, :data:`CYCLEGAN`), or None
            to accept any dict checkpoint.
        map_location: passed to ``torch.load``.

    Returns:
        The checkpoint dict.

    Raises:
        CheckpointError: ``<file>: ...`` for a missing file, a file needing Python objects beyond
            tensors and plain containers, a truncated / non-PyTorch file, or another model type.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _GLOBAL.search(str(exc))
        if found:
            raise CheckpointError(
                f"{path}: refused: unpickling it needs {found.group(1)}, not a tensor or plain "
                "container (tagseg loads checkpoints with weights_only=True only)"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_reason(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle an untrusted file (a text file: IndexError, KeyError)
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({_reason(exc)}; truncated or not written by torch.save?)"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(state).__name__}, expected a dict)")
    if kind is not None:
        found_kind = checkpoint_kind(state)
        if found_kind != kind:
            what = f"a {found_kind} checkpoint" if found_kind else _describe(state)
            raise CheckpointError(
                f"{path}: {what}; expected a {kind} checkpoint written by {WRITERS.get(kind, 'tagseg')}"
            )
    return state


def check_checkpoint(path: str | Path, kind: str | None = None) -> Path:
    """:func:`load_checkpoint` for a file another library will read (Lightning's ``ckpt_path``):
    the same checks, the state discarded.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    load_checkpoint(path, kind=kind)
    return Path(path)


def resume_checkpoint(path: str | Path | None, kind: str, key: str = "ckpt_path") -> Path | None:
    """The checkpoint to resume training from: ``path`` (a ``last.ckpt`` or its run folder, by
    ``which="last"``) checked as a ``kind`` checkpoint before Lightning reads it; None when not resuming.

    Raises:
        CheckpointError: missing, unreadable, unsafe, or of another model type.
    """
    if not path:
        return None
    return check_checkpoint(resolve_checkpoint(path, key=key, which="last"), kind=kind)


def _describe(state: dict[str, Any]) -> str:
    hparams = state.get("hyper_parameters")
    keys = sorted(hparams) if isinstance(hparams, dict) else "none"
    missing = [k for k in SEGMENTATION_HPARAMS if not isinstance(hparams, dict) or k not in hparams]
    return f"a checkpoint of another model type (hyper-parameters: {keys}; missing {missing})"


def _reason(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [
        line for line in lines if not line.startswith(("Weights only load failed", "Please file an issue", "Check the"))
    ]
    text = (useful or lines or [""])[0]
    # torch's first sentence says what failed; the rest is advice about torch.load (cut at a sentence end only)
    text = re.split(r"(?<=\.)\s+(?=[A-Z])", text)[0].rstrip(".")
    return text if " " in text else f"{type(exc).__name__}: {text}".rstrip(": ")


__all__ = [
    "CYCLEGAN",
    "MODEL_KEY",
    "SEGMENTATION",
    "SEGMENTATION_HPARAMS",
    "TRACKER",
    "check_checkpoint",
    "checkpoint_kind",
    "load_checkpoint",
    "resolve_checkpoint",
    "resume_checkpoint",
    "run_checkpoints",
]
