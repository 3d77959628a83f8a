"""``tagseg phantom``: write phantom subjects in the on-disk layout of ACDC, M&Ms, SCD or the tagged set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from tagseg.data.phantom.cohort import CohortSpec
from tagseg.data.phantom.layouts import FORMATS, write_cohort
from tagseg.errors import ConfigError


def phantom_targets(cfg: DictConfig) -> list[tuple[str, Path]]:
    """(format, dataset root) pairs that ``cfg`` asks for (``format=all``: the four).

    Raises:
        ConfigError: an unknown format.
    """
    fmt = str(cfg.format)
    if fmt != "all" and fmt not in FORMATS:
        raise ConfigError(f"format: expected one of {[*FORMATS, 'all']}, got '{fmt}'")
    formats = list(FORMATS) if fmt == "all" else [fmt]
    if cfg.get("output") is None:
        return [(f, Path(str(cfg.paths.data_dir)) / "raw" / f) for f in formats]
    out = Path(str(cfg.output))
    return [(f, out / f) for f in formats] if fmt == "all" else [(fmt, out)]


def export_phantom(cfg: DictConfig) -> list[dict[str, Any]]:
    """Write the cohort(s) ``cfg`` describes; returns one manifest per format (see
    :func:`tagseg.data.phantom.layouts.write_cohort`)."""
    spec = CohortSpec.from_mapping(OmegaConf.to_container(cfg.cohort, resolve=True) if cfg.get("cohort") else None)
    layouts = tuple(str(x) for x in cfg.get("tagged_layouts") or ("h5", "nifti", "dicom"))
    manifests = []
    for fmt, root in phantom_targets(cfg):
        with tqdm(total=int(cfg.n_subjects), desc=f"phantom {fmt}", unit="subject") as bar:
            manifest = write_cohort(
                fmt, root, int(cfg.n_subjects), int(cfg.seed), spec, layouts, progress=lambda _i: bar.update(1)
            )
        manifest["root"] = str(root)
        manifests.append(manifest)
    return manifests


def manifest_table(manifests: list[dict[str, Any]]) -> str:
    """What was written, per format: subjects, folder splits and labelled 2D images per phase."""
    lines = [f"{'format':<8}{'subjects':>9}{'test':>6}{'val':>5}{'ED':>7}{'ES':>7}{'other':>7}{'total':>7}  root"]
    for m in manifests:
        splits = [s["split"] for s in m["subjects"]]
        c = m["counts"]
        lines.append(
            f"{m['format']:<8}{len(splits):>9}{splits.count('test'):>6}{splits.count('val'):>5}"
            f"{c['ED']:>7}{c['ES']:>7}{c['other']:>7}{c['total']:>7}  {m['root']}"
        )
    return "\n".join(lines)


__all__ = ["export_phantom", "manifest_table", "phantom_targets"]
