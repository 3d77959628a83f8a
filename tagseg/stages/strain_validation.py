"""Strain validated against the phantom's true motion (``tagseg strain experiment=strain_validation[_demo]``).

For every imaging condition (the base one, then SNR, tag spacing and fading varied one at a
time), phantom subjects with a dysfunctional sector are rendered in memory (tagged, 3 slices,
``n_frames`` frames, :class:`~tagseg.data.phantom.PhantomSource`), and each slice is analysed by
every tracker of ``validation.trackers`` (``conf/tracker/<name>.yaml``):

* with the **true ED mask**: the displacement RMSE (mm) of the mesh points against their true
  trajectories (:mod:`tagseg.strain.truth`), up to end-systole (ES) and over the whole cycle; the
  end-systolic global and segmental Ecc / Err minus the true strain of the same mesh;
* with the **model's ED mask** (``validation.ckpt``, base condition): the same strain, its mesh
  seeded in the predicted myocardium, minus the truth of the true mask's mesh: how much
  segmentation error reaches strain;
* **detection** of the dysfunctional segment: the segment with the least end-systolic shortening
  is among the truly dysfunctional ones (true ES Ecc under half the slice's median segment; the
  least-shortening segment when none is).

Subjects are the unit of the intervals (each subject's value is its mean over slices; BCa
bootstrap over subjects, :func:`tagseg.report.stats.seed_subject_interval` with one seed). Outputs in the run folder:
``validation_slices.csv``, ``validation_segments.csv``, ``validation_summary.json``,
``validation_table.md`` and ``strain_validation_curves.png``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tagseg.data.phantom import PhantomSource
from tagseg.errors import ConfigError, DataError
from tagseg.io.atomic import atomic_write_text
from tagseg.report.stats import seed_subject_interval
from tagseg.runtime.config import CONF_DIR, instantiate
from tagseg.strain.aha import level_of
from tagseg.strain.analysis import analyse_slice
from tagseg.strain.truth import true_positions, true_strain

#: a segment is truly dysfunctional when its true ES shortening is under this fraction of the slice's median segment
DYSFUNCTION_FRACTION = 0.5


@dataclass(frozen=True)
class Condition:
    """One imaging condition of the validation."""

    name: str
    snr: float
    tag_spacing_mm: float
    readout_flip_deg: float


def conditions(v: dict[str, Any]) -> list[Condition]:
    """The base condition, then each of SNR, tag spacing and fading (readout flip) varied alone."""
    base = v["base"]
    out = [Condition("base", float(base["snr"]), float(base["tag_spacing_mm"]), float(base["readout_flip_deg"]))]
    for snr in v.get("snr", []):
        out.append(Condition(f"snr={snr:g}", float(snr), out[0].tag_spacing_mm, out[0].readout_flip_deg))
    for sp in v.get("tag_spacing_mm", []):
        out.append(Condition(f"tag_spacing={sp:g}mm", out[0].snr, float(sp), out[0].readout_flip_deg))
    for flip in v.get("readout_flip_deg", []):
        out.append(Condition(f"readout_flip={flip:g}deg", out[0].snr, out[0].tag_spacing_mm, float(flip)))
    unique: dict[tuple[float, float, float], Condition] = {}
    for c in out:
        unique.setdefault((c.snr, c.tag_spacing_mm, c.readout_flip_deg), c)
    return list(unique.values())


def load_tracker(name: str, paths: Any = None) -> Any:
    """The tracker of ``conf/tracker/<name>.yaml``, its ``${paths.*}`` (the learned tracker's cache) read from ``paths``."""
    from omegaconf import OmegaConf

    path = Path(CONF_DIR) / "tracker" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"validation.trackers: no tracker {name!r}; expected some of {known}")
    root = OmegaConf.create({"paths": paths if paths is not None else {}, "tracker": OmegaConf.load(path)})
    return instantiate(root.tracker, f"tracker={name}")


def phantom(v: dict[str, Any], c: Condition) -> PhantomSource:
    return PhantomSource(
        image_size=int(v["image_size"]),
        fov_mm=float(v["fov_mm"]),
        n_subjects=int(v["n_subjects"]),
        n_slices=int(v["n_slices"]),
        n_frames=int(v["n_frames"]),
        snr=(c.snr, c.snr),
        tagging={"spacing_mm": [c.tag_spacing_mm] * 2, "readout_flip_deg": [c.readout_flip_deg] * 2},
        motion={"dysfunction_fraction": float(v["dysfunction_fraction"])},
    )


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=-1))))


def _dysfunctional(true_es: dict[str, float]) -> list[str]:
    """Segments shortening less than half the median segment; the least-shortening one when none does
    (a sector split between two broad apical segments)."""
    segs = {k: v for k, v in true_es.items() if k != "global"}
    median = float(np.median(list(segs.values())))
    weak = [k for k, v in segs.items() if v > DYSFUNCTION_FRACTION * median]
    return weak or [max(segs, key=lambda k: segs[k])]


def evaluate_slice(
    frames: np.ndarray,
    ed_labels: np.ndarray,
    truth_labels: np.ndarray,
    disp_px: np.ndarray,
    spacing: float,
    es: int,
    tracker: Any,
    level: str,
    mesh_cfg: dict[str, Any],
    where: str = "frames",
    frame_labels: np.ndarray | None = None,
    radial: str = "auto",
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """One slice, one tracker, one mask: the slice row, its segment rows and the curves (for figures).

    ``frame_labels`` (every frame's labels, the same source as ``ed_labels``) give Err from wall
    thickening (``radial``, :func:`~tagseg.strain.analysis.analyse_slice`).
    """
    sp = (spacing, spacing)
    result, mesh = analyse_slice(
        frames,
        ed_labels,
        sp,
        tracker,
        level=level,
        mesh=mesh_cfg,
        where=where,
        frame_labels=frame_labels,
        radial=radial,
    )
    truth_mesh = mesh
    if not np.array_equal(truth_labels, ed_labels):
        from tagseg.strain.mesh import seed_mesh

        truth_mesh = seed_mesh(truth_labels, **mesh_cfg)
    truth = true_strain(disp_px, truth_mesh, sp, level)
    measured_px = (result.points_ed_mm + result.displacement_mm) / spacing
    true_px = true_positions(disp_px, mesh.points_rc)
    true_es = {k: float(v[es]) for k, v in truth.ecc.items()}
    meas_es = {k: float(v[es]) for k, v in result.ecc.items()}
    dys = _dysfunctional(true_es)
    seg_keys = [str(s) for s in result.segments]
    detected = max(seg_keys, key=lambda k: meas_es[k])
    row = {
        "level": level,
        "rmse_mm_to_es": _rmse(measured_px[: es + 1], true_px[: es + 1]) * spacing,
        "rmse_mm_all": _rmse(measured_px, true_px) * spacing,
        "ecc_true": true_es["global"],
        "ecc_measured": meas_es["global"],
        "ecc_error": meas_es["global"] - true_es["global"],
        "err_true": float(truth.err["global"][es]),
        "err_measured": float(result.err["global"][es]),
        "err_error": float(result.err["global"][es] - truth.err["global"][es]),
        "dysfunctional": " ".join(dys),
        "detected": detected,
        "found": detected in dys,
    }
    segments = [
        {
            "segment": int(k),
            "ecc_error": meas_es[k] - true_es[k],
            "err_error": float(result.err[k][es] - truth.err[k][es]),
            "ecc_true": true_es[k],
        }
        for k in seg_keys
    ]
    curves = {
        "measured": result.ecc,
        "true": truth.ecc,
        "measured_err": result.err,
        "true_err": truth.err,
        "radial": result.radial,
    }
    return row, segments, curves


def run_validation(cfg: Any) -> dict[str, Any]:
    """Run the validation of ``cfg.validation`` into ``cfg.output``; returns the summary."""
    from omegaconf import OmegaConf

    v: dict[str, Any] = OmegaConf.to_container(cfg.validation, resolve=True)  # type: ignore[assignment]
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    trackers = {name: load_tracker(name, cfg.get("paths")) for name in v["trackers"]}
    segmenter = None
    if v.get("ckpt"):
        from tagseg.models.segmenter import load_segmenters

        segmenter = load_segmenters(v["ckpt"], device="cpu")
    mesh_cfg = dict(v.get("mesh") or {})
    slice_rows: list[dict[str, Any]] = []
    seg_rows: list[dict[str, Any]] = []
    example: dict[str, Any] = {}
    t0 = time.perf_counter()
    conds = conditions(v)
    for ci, cond in enumerate(conds):
        src = phantom(v, cond)
        for item in range(src.n_subjects):
            subject = src.subject(item, int(v["seed"]))
            rng = np.random.default_rng([int(v["seed"]), item, ci])
            es = int(np.argmax(subject["activation"]))
            for z, (anatomy, motion) in enumerate(zip(subject["slices"], subject["motions"])):
                images, labels, disp = src.render_slice(anatomy, motion, subject, rng)
                level = level_of(z, src.n_slices)
                masks = [("true", labels)]
                if segmenter is not None and cond.name == "base":
                    masks.append(("model", segmenter.segment(images, spacing_mm=(subject["spacing_mm"],) * 2)))
                for tname, tracker in trackers.items():
                    for mask_name, every in masks:
                        key = {
                            "condition": cond.name,
                            "snr": cond.snr,
                            "tag_spacing_mm": cond.tag_spacing_mm,
                            "readout_flip_deg": cond.readout_flip_deg,
                            "subject": src.describe(item),
                            "slice": z,
                            "tracker": tname,
                            "mask": mask_name,
                        }
                        try:
                            row, segs, curves = evaluate_slice(
                                images,
                                every[0],
                                labels[0],
                                disp,
                                float(subject["spacing_mm"]),
                                es,
                                tracker,
                                level,
                                mesh_cfg,
                                where=f"{cond.name} {key['subject']} slice {z} ({mask_name} mask)",
                                frame_labels=every,
                                radial=str(v.get("radial", "auto")),
                            )
                        except DataError as exc:
                            slice_rows.append({**key, "failed": str(exc)})
                            continue
                        slice_rows.append({**key, **row, "failed": ""})
                        seg_rows.extend({**key, **s} for s in segs)
                        if not example and cond.name == "base" and z == 1 and mask_name == "true":
                            example = {"subject": key["subject"], "es": es, "tracker": tname, **curves}
            print(f"strain validation: {cond.name} {src.describe(item)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    slices = pd.DataFrame(slice_rows)
    segments = pd.DataFrame(seg_rows)
    summary = summarise(slices, segments, v)
    summary["seconds"] = time.perf_counter() - t0
    atomic_write_text(out / "validation_slices.csv", slices.to_csv(index=False))
    atomic_write_text(out / "validation_segments.csv", segments.to_csv(index=False))
    atomic_write_text(out / "validation_summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "validation_table.md", markdown_table(summary))
    if example:
        plot_example(example, out / "strain_validation_curves.png")
    return summary


def _interval(values: pd.Series) -> dict[str, float]:
    interval = seed_subject_interval(values.to_numpy(dtype=float)[None, :])  # one seed: subjects only
    return {"mean": interval.mean, "low": interval.low, "high": interval.high}


def summarise(slices: pd.DataFrame, segments: pd.DataFrame, v: dict[str, Any]) -> dict[str, Any]:
    """Per (condition, tracker, mask): RMSE, ES Ecc / Err errors (mean, sd; subject intervals), detection."""
    rows = []
    ok = slices[slices["failed"] == ""] if "failed" in slices else slices
    for (cond, tracker, mask), g in ok.groupby(["condition", "tracker", "mask"], sort=False):
        per_subject = g.groupby("subject")
        segs = segments[(segments["condition"] == cond) & (segments["tracker"] == tracker) & (segments["mask"] == mask)]
        failed = slices[(slices["condition"] == cond) & (slices["tracker"] == tracker) & (slices["mask"] == mask)]
        n_failed = int((failed["failed"] != "").sum()) if "failed" in failed else 0
        rows.append(
            {
                "condition": cond,
                "snr": float(g["snr"].iloc[0]),
                "tag_spacing_mm": float(g["tag_spacing_mm"].iloc[0]),
                "readout_flip_deg": float(g["readout_flip_deg"].iloc[0]),
                "tracker": tracker,
                "mask": mask,
                "n_subjects": int(g["subject"].nunique()),
                "n_slices": len(g),
                "n_failed": n_failed,
                "rmse_mm_to_es": _interval(per_subject["rmse_mm_to_es"].mean()),
                "rmse_mm_all": _interval(per_subject["rmse_mm_all"].mean()),
                "ecc_error": {"mean": float(g["ecc_error"].mean()), "sd": float(g["ecc_error"].std(ddof=1))},
                "ecc_error_subjects": _interval(per_subject["ecc_error"].mean()),
                "err_error": {"mean": float(g["err_error"].mean()), "sd": float(g["err_error"].std(ddof=1))},
                "err_error_subjects": _interval(per_subject["err_error"].mean()),
                "segment_ecc_error": {
                    "mean": float(segs["ecc_error"].mean()),
                    "sd": float(segs["ecc_error"].std(ddof=1)),
                },
                "segment_err_error": {
                    "mean": float(segs["err_error"].mean()),
                    "sd": float(segs["err_error"].std(ddof=1)),
                },
                "found_slices": float(g["found"].mean()),
                # a subject's dysfunction is found when it is found in most of its slices
                "found_subjects": _interval(per_subject["found"].mean().gt(0.5).astype(float)),
            }
        )
    return {"goals": v.get("goals", {}), "rows": rows}


def markdown_table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (docs/experiments.md)."""
    head = (
        "| condition | tracker | mask | subjects | RMSE to ES (mm) [95% CI] | RMSE cycle (mm) | ES Ecc error mean +/- sd "
        "| ES Err error mean +/- sd | segment Ecc error | segment Err error | dysfunction found (subjects) [95% CI] |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in summary["rows"]:
        ci = r["rmse_mm_to_es"]
        found = r["found_subjects"]
        failed = f" ({r['n_failed']} slices failed)" if r["n_failed"] else ""
        lines.append(
            f"| {r['condition']} | {r['tracker']} | {r['mask']} | {r['n_subjects']}{failed} "
            f"| {ci['mean']:.2f} [{ci['low']:.2f}, {ci['high']:.2f}] | {r['rmse_mm_all']['mean']:.2f} "
            f"| {r['ecc_error']['mean']:+.3f} +/- {r['ecc_error']['sd']:.3f} "
            f"| {r['err_error']['mean']:+.3f} +/- {r['err_error']['sd']:.3f} "
            f"| {r['segment_ecc_error']['mean']:+.3f} +/- {r['segment_ecc_error']['sd']:.3f} "
            f"| {r['segment_err_error']['mean']:+.3f} +/- {r['segment_err_error']['sd']:.3f} "
            f"| {100 * found['mean']:.0f} % [{100 * found['low']:.0f}, {100 * found['high']:.0f}] |"
        )
    return head + "\n".join(lines) + "\n"


def plot_example(example: dict[str, Any], path: Path) -> Path:
    """True (dashed) and measured (solid) Ecc / Err curves of one mid slice: global and per segment."""
    import matplotlib.pyplot as plt

    from tagseg.strain.plots import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharex=True)
    for ax, (meas, true, title) in zip(
        axes,
        ((example["measured"], example["true"], "Ecc"), (example["measured_err"], example["true_err"], "Err")),
    ):
        colors = plt.get_cmap("tab10")
        for i, region in enumerate(meas):
            color = "k" if region == "global" else colors(i % 10)
            lw = 2.0 if region == "global" else 0.9
            ax.plot(meas[region], color=color, lw=lw, label=f"{region}")
            ax.plot(true[region], color=color, lw=lw, ls="--")
        ax.axvline(example["es"], color="0.6", lw=0.6)
        source = "wall thickening of the masks" if title == "Err" and example.get("radial") == "masks" else None
        ax.set_title(f"{title}: {source or example['tracker']} (solid) vs truth (dashed)", fontsize=9)
        ax.set_xlabel("frame")
    axes[0].legend(fontsize=6, ncol=2)
    fig.suptitle(f"{example['subject']} mid slice", fontsize=9)
    return save_figure(fig, path)


__all__ = ["Condition", "conditions", "evaluate_slice", "load_tracker", "markdown_table", "run_validation", "summarise"]
