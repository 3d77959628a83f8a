"""Benchmark the digital phantom: generation time, and the full `prepare_store` (writing included).

Prints JSON. Default: 50 subjects x 3 slices x 25 frames at 256x256 for both modalities
(goal: generation <= 60 s on 2 cores). ``--subjects/--size/--frames`` shrink it for a quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from tagseg.data.phantom import PhantomSource
from tagseg.data.prepare import prepare_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=50)
    parser.add_argument("--slices", type=int, default=3)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--no-prepare", action="store_true", help="time generation only")
    args = parser.parse_args()
    out: dict[str, object] = {
        "subjects": args.subjects,
        "slices": args.slices,
        "frames": args.frames,
        "image_size": args.size,
        "cpu_count": os.cpu_count(),
    }
    n_images = args.subjects * args.slices * args.frames
    for modality in ("cine", "tagged"):
        src = PhantomSource(
            modality=modality,
            image_size=args.size,
            n_subjects=args.subjects,
            n_slices=args.slices,
            n_frames=args.frames,
        )
        start = time.perf_counter()
        for item in src.items():
            src.load(item, 0)
        gen_s = time.perf_counter() - start
        out[f"{modality}_generate_s"] = round(gen_s, 2)
        out[f"{modality}_generate_images_per_s"] = round(n_images / gen_s, 1)
        if not args.no_prepare:
            with tempfile.TemporaryDirectory() as tmp:
                store = Path(tmp) / f"phantom_{modality}.h5"
                start = time.perf_counter()
                prepare_store(src, store, seed=0, image_size=args.size)
                prep_s = time.perf_counter() - start
                out[f"{modality}_prepare_s"] = round(prep_s, 2)
                out[f"{modality}_write_overhead_ratio"] = round(prep_s / gen_s, 2)
                out[f"{modality}_store_mb"] = round(store.stat().st_size / 2**20, 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
