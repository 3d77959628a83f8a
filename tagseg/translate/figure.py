"""The PNG written next to a translated store: a few input/output pairs side by side."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def pairs_figure(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    titles: Sequence[str] = (),
    method: str = "translated",
) -> Path:
    """Save input (top row) / output (bottom row) pairs as one PNG.

    Args:
        pairs: (input, output) images, each (H, W) in [0, 1].
        path: the PNG to write (its folder must exist).
        titles: one caption per pair.
        method: label of the output row.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(pairs)
    fig, axes = plt.subplots(2, n, figsize=(2.4 * n, 5.0), squeeze=False)
    for k, (src, out) in enumerate(pairs):
        for r, (img, label) in enumerate(((src, "input"), (out, method))):
            ax = axes[r, k]
            ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if k == 0:
                ax.set_ylabel(label)
        if k < len(titles):
            axes[0, k].set_title(titles[k], fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
