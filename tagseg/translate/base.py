"""The shared machinery of ``tagseg translate``: read a store, translate its images, write a store.

A translator only says how to turn a batch of images into tagged-looking images; the base class
reads the input store in batches (progress bar), checks the input (2D images, no NaN, masks
present), carries masks, every meta column and every extra dataset over unchanged, sets
``meta/source`` to ``<method>(<original source>)``, records the translator's parameters in the
output's attrs, writes the output atomically (:class:`~tagseg.io.store.StoreWriter`) and saves a
PNG of a few input/output pairs next to it.

Example (a complete translator)::

    import torch
    from tagseg.translate.base import Translator, BatchRows

    class Invert(Translator):
        method = "invert"

        def translate_batch(self, images: torch.Tensor, rows: BatchRows) -> torch.Tensor:
            return 1.0 - images          # (B, H, W) float32 in [0, 1] -> same

    report = Invert(batch_size=32).run("data/phantom_cine.h5", "data/invert_phantom_cine.h5")

Hooks a subclass may override:

- :meth:`Translator.translate_batch` (required): images (B, H, W) float32 in [0, 1] on
  ``self.device`` -> (B, H, W) in [0, 1]; ``rows`` gives the batch's row indices, meta rows,
  masks and extras (e.g. ``displacement``) for methods that need them.
- :meth:`Translator.batch_rows`: which rows form one batch. The default is consecutive chunks
  of ``batch_size``; a whole-store method (all frames of one slice at once, as
  :class:`~tagseg.translate.physics.PhysicsDynamicTranslator`) returns one group per slice.
  Rows are always written in the input's order, whatever the grouping.
- :meth:`Translator.params`: the parameters recorded in the output's ``translate`` attribute.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from tagseg.errors import ConfigError, DataError, StoreError
from tagseg.io.store import StoreReader, StoreWriter, check_values, open_labelled_store

log = logging.getLogger(__name__)


@dataclass
class BatchRows:
    """What a translator may know about the rows of one batch (all arrays have B rows).

    Attributes:
        index: row indices in the input store, (B,).
        meta: meta column -> values of these rows.
        masks: uint8 (B, H, W) labels (ACDC convention).
        extras: extra dataset name -> rows (e.g. ``displacement`` (B, 2, H, W)).
    """

    index: np.ndarray
    meta: dict[str, np.ndarray]
    masks: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class TranslateReport:
    """What a translate run did, with where its time went (seconds)."""

    output: Path
    n_slices: int
    figure: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: slices, output, time split."""
        times = ", ".join(f"{k} {v:.2f} s" for k, v in self.seconds.items())
        return f"translated {self.n_slices} slices -> {self.output} ({times})"


class Translator(ABC):
    """Base class of cine -> tagged translators (subclass and implement :meth:`translate_batch`).

    Args:
        batch_size: rows per batch for the default grouping.
        device: torch device the images are moved to before :meth:`translate_batch`.
        seed: seed of any per-image randomness (use :meth:`row_rng`, so results do not depend
            on the batch size).
        n_figure: number of input/output pairs in the PNG written next to the output (0: none).
        progress: show a progress bar.
    """

    #: method name, used in ``meta/source`` (``<method>(<original source>)``) and attrs
    method: ClassVar[str] = "translate"
    #: the stage that must train this translator before it can run (its checkpoint becomes
    #: ``method.ckpt``), e.g. ``"cyclegan"``; None for a translator that needs no training. A training
    #: strategy (``tagseg train strategy=...``) runs that stage first for a source using it.
    trained_by: ClassVar[str | None] = None

    def __init__(
        self, batch_size: int = 64, device: str = "cpu", seed: int = 0, n_figure: int = 4, progress: bool = True
    ) -> None:
        if int(batch_size) < 1:
            raise ConfigError(f"method.batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.seed = int(seed)
        self.n_figure = int(n_figure)
        self.progress = bool(progress)

    # ---- hooks -------------------------------------------------------------------------------

    @abstractmethod
    def translate_batch(self, images: torch.Tensor, rows: BatchRows) -> torch.Tensor:
        """Translate one batch.

        Args:
            images: (B, H, W) float32 in [0, 1], on ``self.device``.
            rows: the batch's row indices, meta rows, masks and extras.

        Returns:
            (B, H, W) tagged-looking images in [0, 1] (tensor or array; clipped to [0, 1]).
        """

    def batch_rows(self, meta: Mapping[str, np.ndarray], n_rows: int) -> list[np.ndarray]:
        """Row groups translated together (default: consecutive chunks of ``batch_size``)."""
        return [np.arange(i, min(i + self.batch_size, n_rows)) for i in range(0, n_rows, self.batch_size)]

    def params(self) -> dict[str, Any]:
        """Parameters recorded in the output store's ``translate`` attribute (JSON)."""
        return {"method": self.method, "batch_size": self.batch_size, "seed": self.seed}

    def row_rng(self, row: int) -> np.random.Generator:
        """A generator seeded by (seed, input row): per-image draws independent of batching."""
        return np.random.default_rng([self.seed, int(row)])

    # ---- the run -----------------------------------------------------------------------------

    def run(
        self,
        input: str | Path,
        output: str | Path,
        attrs: Mapping[str, Any] | None = None,
        name: str | None = None,
        compression: str = "gzip",
    ) -> TranslateReport:
        """Translate store ``input`` into a new store ``output`` (written atomically).

        Args:
            input: the cine slice store (must hold ``/masks``).
            output: where the translated store is written (replaced if it exists).
            attrs: extra attributes for the output (e.g. the resolved config).
            name: the output store's name (default ``<method>(<input name>)``).
            compression: HDF5 filters of the output (``gzip``, ``lzf`` or ``none``; see
                :data:`tagseg.io.store.COMPRESSION`).

        Returns:
            A :class:`TranslateReport` (output path, slices, figure, seconds per step).

        Raises:
            StoreError: the input is missing, not a store, has no masks, or is the output itself.
            DataError: an image is not 2D or holds NaN / infinite values (nothing is written).
        """
        input, output = Path(input), Path(output)
        if input.resolve() == output.resolve():
            raise StoreError(f"{output}: output must differ from the input store")
        t0 = time.perf_counter()
        seconds = {"read": 0.0, "translate": 0.0, "write": 0.0}
        with _open_input(input) as f:
            n, h, w = f.shape
            meta = f.meta()
            extra_names = f.extra_names()
            in_attrs = f.attrs()
            groups = self._checked_groups(meta, n, input)
            spec = f.extra_spec()
            in_name = str(in_attrs.get("name", input.stem))
            out_attrs = {
                "translate": json.dumps(self.params()),
                "translate_input": str(input),
                "translate_input_name": in_name,
                **dict(attrs or {}),
            }
            figure_rows = _figure_rows(n, self.n_figure)
            figure_pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            pending: dict[int, np.ndarray] = {}
            next_row = 0
            labelled = False
            writer = StoreWriter(
                output,
                (h, w),
                name=name or f"{self.method}({in_name})",
                extras=spec,
                attrs=out_attrs,
                compression=compression,
            )
            try:
                bar = tqdm(groups, desc=f"translate {self.method}", unit="batch", disable=not self.progress)
                for index in bar:
                    t = time.perf_counter()
                    rows = _read_rows(f, index, meta, extra_names)
                    images = f.rows("images", index).astype(np.float32, copy=False)
                    _check_images(images, index, meta, input)
                    check_values(input, images, rows.masks, index, meta)
                    labelled = labelled or bool(rows.masks.any())
                    seconds["read"] += time.perf_counter() - t
                    t = time.perf_counter()
                    with torch.no_grad():
                        out = self.translate_batch(torch.from_numpy(images).to(self.device), rows)
                    out = self._checked_output(out, images.shape)
                    seconds["translate"] += time.perf_counter() - t
                    for k, r in enumerate(index):
                        pending[int(r)] = out[k]
                        if int(r) in figure_rows:
                            figure_pairs[int(r)] = (images[k], out[k])
                    t = time.perf_counter()
                    next_row = self._flush(f, writer, pending, next_row, meta, extra_names)
                    seconds["write"] += time.perf_counter() - t
                if not labelled:
                    raise StoreError(
                        f"{input}: every mask is empty; translate makes a labelled pretraining set, "
                        "so the input store must hold labelled slices (labels 1 RV, 2 MYO, 3 LV)"
                    )
                t = time.perf_counter()
                writer.close()
                seconds["write"] += time.perf_counter() - t
            except BaseException:
                writer.abort()
                raise
        report = TranslateReport(output=output, n_slices=n, seconds=seconds)
        if figure_pairs:
            t = time.perf_counter()
            from tagseg.translate.figure import pairs_figure

            report.figure = pairs_figure(
                [figure_pairs[r] for r in sorted(figure_pairs)],
                output.with_suffix(".png"),
                titles=[f"{meta['subject'][r]} s{meta['slice'][r]} f{meta['frame'][r]}" for r in sorted(figure_pairs)],
                method=self.method,
            )
            seconds["figure"] = time.perf_counter() - t
        seconds["total"] = time.perf_counter() - t0
        log.info("%s", report.summary())
        return report

    # ---- helpers -----------------------------------------------------------------------------

    def _checked_groups(self, meta: Mapping[str, np.ndarray], n: int, input: Path) -> list[np.ndarray]:
        groups = [np.asarray(g, dtype=np.int64) for g in self.batch_rows(meta, n)]
        seen = np.concatenate(groups) if groups else np.zeros(0, np.int64)
        if seen.size != n or not np.array_equal(np.sort(seen), np.arange(n)):
            raise StoreError(f"{input}: {type(self).__name__}.batch_rows must cover every row exactly once")
        return groups

    def _checked_output(self, out: torch.Tensor | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        arr = out.detach().float().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out, np.float32)
        if arr.shape != shape:
            raise DataError(f"{type(self).__name__}.translate_batch returned shape {arr.shape}, expected {shape}")
        if not np.isfinite(arr).all():
            raise DataError(f"{type(self).__name__}.translate_batch produced NaN or infinite values")
        return np.clip(arr, 0.0, 1.0, out=arr).astype(np.float32, copy=False)

    def _flush(
        self,
        f: StoreReader,
        writer: StoreWriter,
        pending: dict[int, np.ndarray],
        next_row: int,
        meta: Mapping[str, np.ndarray],
        extra_names: list[str],
    ) -> int:
        """Append the consecutive translated rows from ``next_row`` on (input order kept)."""
        stop = next_row
        while stop in pending:
            stop += 1
        if stop == next_row:
            return next_row
        sl = slice(next_row, stop)
        out_meta = {k: v[sl] for k, v in meta.items()}
        out_meta["source"] = np.asarray([f"{self.method}({s})" for s in meta["source"][sl]], dtype=object)
        images = np.stack([pending.pop(r) for r in range(next_row, stop)])
        writer.append(images, f.rows("masks", sl), out_meta, {k: f.rows(k, sl) for k in extra_names})
        return stop


def _open_input(path: Path) -> StoreReader:
    """Open the input store; raise one clear error when it is missing, unreadable or has no masks."""
    return open_labelled_store(
        path,
        role="input store",
        hint="check input=",
        why_masks="translate makes a labelled pretraining set, so the input "
        "store must hold masks (a store without labels cannot pretrain a segmenter)",
    )


def _read_rows(f: StoreReader, index: np.ndarray, meta: Mapping[str, np.ndarray], extra_names: list[str]) -> BatchRows:
    return BatchRows(
        index=index,
        meta={k: v[index] for k, v in meta.items()},
        masks=f.rows("masks", index),
        extras={k: f.rows(k, index) for k in extra_names},
    )


def _check_images(images: np.ndarray, index: np.ndarray, meta: Mapping[str, np.ndarray], path: Path) -> None:
    bad = ~np.isfinite(images).reshape(len(index), -1).all(axis=1)
    if bad.any():
        r = int(index[np.argmax(bad)])
        raise DataError(
            f"{path}: image {r} (subject {meta['subject'][r]}, slice {meta['slice'][r]}, "
            f"frame {meta['frame'][r]}) holds NaN or infinite values"
        )


def _figure_rows(n: int, k: int) -> set[int]:
    if k <= 0:
        return set()
    return {int(r) for r in np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))}


def iter_slices(meta: Mapping[str, np.ndarray]) -> Iterator[np.ndarray]:
    """Rows of each (subject, slice), frames in time order: the groups of whole-cycle methods."""
    keys = np.asarray([f"{s}\x00{i}" for s, i in zip(meta["subject"], meta["slice"])], dtype=object)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    for g in np.argsort(first):
        rows = np.flatnonzero(inverse == g)
        yield rows[np.argsort(meta["frame"][rows], kind="stable")]
