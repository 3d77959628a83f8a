"""Benchmark of quality control's overhead on ``tagseg predict``, per frame. Prints JSON.

The scan of ``bench/predict.py`` (25 frames, 256x256 NIfTI, rings on noise) is predicted in-process
by :func:`tagseg.stages.predict.predict` (no overlays, no review page), best of ``--repeat``:

* ``predict_ms_per_frame``: QC off, QC on (signals + a predicted-Dice model), without and with
  ``tta=flip``; ``overhead``: QC on / QC off - 1 (the target: <= 0.20 without flips);
* ``qc_ms_per_frame``: the signals and the model alone (predict's ``qc`` timing);
* ``review_ms_per_scan``: the three overlay thumbnails of ``review.html``.

A trained checkpoint (``--ckpt``) gives realistic masks (the signals' cost depends on them: rays
through a ring, components); without one an untrained ResNetVAE (128 px, 8 filters) is used.

Usage: ``python bench/qc.py [--ckpt run] [--repeat 3] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import FRAMES, untrained_checkpoint, write_scan  # noqa: E402


def qc_model():
    """A predicted-Dice model over every signal (its weights do not change the cost)."""
    from tagseg.qc.model import fit_qc_model
    from tagseg.qc.signals import SIGNALS

    rng = np.random.default_rng(0)
    rows = [{s: float(v) for s, v in zip(SIGNALS, rng.normal(size=len(SIGNALS)))} for _ in range(40)]
    return fit_qc_model(rows, rng.uniform(0.3, 1.0, 40), view_rows=rows, view_dice=rng.uniform(0.3, 1.0, 40))


def timed(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from tagseg.models.segmenter import load_segmenter
    from tagseg.qc.review import overlay_png, review_frames
    from tagseg.qc.scan import QCSettings
    from tagseg.stages.predict import predict

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="tagseg-bench-qc-"))
    scan = write_scan(tmp / "scan.nii.gz")
    ckpt = Path(args.ckpt) if args.ckpt else untrained_checkpoint(tmp / "untrained.ckpt")
    seg = load_segmenter(ckpt)
    settings = QCSettings(model=qc_model(), review=False)
    result: dict[str, object] = {
        "frames": FRAMES,
        "threads": args.threads,
        "checkpoint": "given" if args.ckpt else "untrained",
    }
    per_frame: dict[str, float] = {}
    qc_only: dict[str, float] = {}
    for tta in (False, True):
        for label, qc in (("off", None), ("on", settings)):

            def run(qc=qc, tta=tta):
                return predict(seg, scan, tmp / "out", overlays=False, progress=False, tta=tta, qc=qc)

            run()  # warm-up
            seconds, report = timed(run, args.repeat)
            key = f"qc_{label}{'_tta' if tta else ''}"
            per_frame[key] = round(1000 * seconds / FRAMES, 2)
            if qc is not None:
                qc_only[key] = round(1000 * report.timings["qc"] / FRAMES, 2)
    result["predict_ms_per_frame"] = per_frame
    result["qc_ms_per_frame"] = qc_only
    result["overhead"] = {
        "no_tta": round(per_frame["qc_on"] / per_frame["qc_off"] - 1, 3),
        "tta": round(per_frame["qc_on_tta"] / per_frame["qc_off_tta"] - 1, 3),
    }
    import nibabel as nib

    frames = np.asarray(nib.load(str(scan)).dataobj, np.float32).transpose(2, 1, 0)
    labels = seg.segment(frames)
    picks = review_frames(np.zeros(FRAMES, int), np.arange(FRAMES), np.full(FRAMES, 1.0))
    seconds, _ = timed(lambda: [overlay_png(frames[i], labels[i]) for _, i in picks], args.repeat)
    result["review_ms_per_scan"] = round(1000 * seconds, 2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
