"""Q1 / median / Q3 test examples of a run (the paper's Figs. 6-7): image, ground truth and
prediction contours, picked by Dice from ``test_metrics.csv`` and re-segmented with the run's
best checkpoint (read with ``weights_only=True``) through the same pre-processing as ``tagseg predict``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from tagseg.conventions import MYO  # noqa: E402
from tagseg.errors import TagsegError  # noqa: E402
from tagseg.io.run_dir import CHECKPOINTS_DIR, CONFIG_FILE, METRICS_FILE  # noqa: E402
from tagseg.io.store import read_store  # noqa: E402
from tagseg.models.segmenter import load_segmenter  # noqa: E402


def pick_quartile_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    """The rows whose Dice is nearest the first quartile, the median and the third quartile."""
    q = np.percentile(metrics["dice"].to_numpy(float), [25, 50, 75])
    rows = [metrics.iloc[int(np.argmin(np.abs(metrics["dice"].to_numpy(float) - v)))] for v in q]
    out = pd.DataFrame(rows).reset_index(drop=True)
    out["quantile"] = ["Q1", "median", "Q3"]
    return out


def run_slices(cfg: dict, index: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Store image and mask of each of a run's test rows, at the store's size.

    Args:
        cfg: the run's resolved config (``config.yaml``).
        index: ``test_metrics.csv``'s ``index`` values: rows of the run's stores
            (``datamodule.stores``, else ``data.store``) concatenated in order, as the
            SliceDataModule numbers them.

    Returns:
        ``(image, mask)`` per index, or ``None`` when a store no longer exists.
    """
    stores = [Path(s) for s in (cfg.get("datamodule") or {}).get("stores") or [cfg["data"]["store"]]]
    if not all(s.exists() for s in stores):
        return None
    data = [read_store(s, extras=False) for s in stores]
    starts = np.cumsum([0] + [len(d.images) for d in data])
    out = []
    for i in index:
        k = int(np.searchsorted(starts, int(i), side="right")) - 1
        out.append((data[k].images[int(i) - starts[k]], data[k].masks[int(i) - starts[k]]))
    return out


def plot_examples(run: str | Path, out: str | Path) -> Path | None:
    """Write the examples figure for one run folder; ``None`` if it has no checkpoint or store.

    Raises:
        TagsegError: ``test_metrics.csv`` has no ``index`` column (rows cannot be found in the store).
    """
    run, out = Path(run), Path(out)
    cfg_path = run / CONFIG_FILE
    if not cfg_path.exists() or not (run / CHECKPOINTS_DIR).exists() or not (run / METRICS_FILE).exists():
        return None  # e.g. a strategy cell: its checkpoints and test table live in the stage cache
    metrics = pd.read_csv(run / METRICS_FILE)
    if "index" not in metrics.columns:
        raise TagsegError(f"{run / METRICS_FILE}: no 'index' column, cannot find the images in the store")
    rows = pick_quartile_rows(metrics)
    found = run_slices(yaml.safe_load(cfg_path.read_text()), rows["index"].tolist())
    if found is None:
        return None
    segmenter = load_segmenter(run)
    images = [img for img, _ in found]
    truth = [mask == MYO for _, mask in found]
    pred = [segmenter.segment(img[None], scaled=True)[0] == MYO for img in images]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.8))
    for ax, img, gt, pr, row in zip(axes, images, truth, pred, rows.itertuples()):
        ax.imshow(img, cmap="gray")
        ax.contour(gt, levels=[0.5], colors="lime", linewidths=1.0)
        ax.contour(pr, levels=[0.5], colors="red", linewidths=1.0)
        ax.set_title(
            f"{row.quantile}: Dice {row.dice:.3f}, HD95 {row.hd95_mm:.1f} mm\n{row.subject} slice {row.slice} frame {row.frame}",
            fontsize=8,
        )
        ax.axis("off")
    fig.suptitle("test examples: ground truth (green), prediction (red)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
