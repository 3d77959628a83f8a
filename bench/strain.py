"""Benchmark of ``tagseg strain``'s analysis of one slice: HARP tracking of a 25-frame slice. Prints JSON.

One phantom tagged slice (256x256, 1.4 mm pixels, the default phantom's geometry; 25 frames, SNR
20) is rendered once; then :func:`tagseg.strain.analysis.analyse_slice` (tag check, mesh seeding,
HARP tracking of 3 x 48 points through every frame, strain curves) runs ``--repeat`` times, with
Err from the tracked layers (``radial=tags``) and from every frame's mask (``radial=masks``, the
default when masks are given; the ratio is the cost of the wall-thickness measurement). The
process CPU time (``time.process_time``, all threads) and the wall time of each run are reported;
start-up (imports, rendering) is excluded, as the issue's target (< 1 s CPU per slice) asks.

Usage: ``python bench/strain.py [--size 256] [--frames 25] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tagseg.data.phantom import PhantomSource
from tagseg.strain.analysis import analyse_slice
from tagseg.strain.harp import HarpTracker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    src = PhantomSource(image_size=args.size, fov_mm=1.4 * args.size, n_subjects=1, n_slices=3, n_frames=args.frames)
    subject = src.subject(0, 0)
    images, labels, _ = src.render_slice(subject["slices"][1], subject["motions"][1], subject, np.random.default_rng(0))
    spacing = (float(subject["spacing_mm"]),) * 2
    tracker = HarpTracker()
    analyse_slice(images, labels[0], spacing, tracker, level="mid")  # warm-up: first FFT plans, imports
    rows = {}
    for radial in ("tags", "masks"):
        frame_labels = labels if radial == "masks" else None
        cpu, wall = [], []
        for _ in range(args.repeat):
            c0, w0 = time.process_time(), time.perf_counter()
            result, mesh = analyse_slice(
                images, labels[0], spacing, tracker, level="mid", frame_labels=frame_labels, radial=radial
            )
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        rows[radial] = {
            "cpu_s_best": round(min(cpu), 4),
            "cpu_s_median": round(float(np.median(cpu)), 4),
            "wall_s_best": round(min(wall), 4),
            "meets_target": bool(float(np.median(cpu)) < 1.0),
            "peak_ecc_global": round(result.peaks()["ecc"]["global"]["peak"], 4),
            "peak_err_global": round(result.peaks()["err"]["global"]["peak"], 4),
        }
    print(
        json.dumps(
            {
                "benchmark": "strain_slice",
                "tracker": "harp",
                "image_size": args.size,
                "frames": args.frames,
                "points": int(len(mesh.points_rc)),
                "target_cpu_s": 1.0,
                "radial": rows,
                "masks_over_tags_cpu": round(rows["masks"]["cpu_s_median"] / rows["tags"]["cpu_s_median"], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
