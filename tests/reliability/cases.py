"""The case table of the reliability corpus: one bad input, the command given it, what it must say.

Each case names the input, the command (argv after ``tagseg``, built from the ``bad`` fixture and
the case's own folder), a regular expression the one ``tagseg: error:`` line must match (naming
the file or the key), and the paths (globs relative to the case's folder) that must not exist
afterwards: outputs that would look complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import tiny_overrides

#: overrides that keep a training case tiny (it must fail before fitting anyway)
TINY_TRAIN = tiny_overrides("train", without=("datamodule.augment.enabled",))
RUN_OUTPUTS = ("hydra/summary.json", "hydra/test_metrics.csv", "hydra/checkpoints/*.ckpt")
STORE_OUTPUTS = ("out.h5", ".out.h5.*")

Argv = Callable[[Any, Path], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    input: str
    argv: Argv
    message: str
    forbidden: tuple[str, ...] = ()
    #: exit status and line prefix: 2 / "tagseg: error: " (refused), or 2 / "tagseg: failed: " for predict's
    #: one bad scan (a scan failing in a batch is listed in failed.csv and the others go on)
    status: int = 2
    prefix: str = "tagseg: error: "


def train(store: str, *overrides: str) -> Argv:
    return lambda bad, tmp: ["train", f"datamodule.stores=[{bad.stores[store]}]", *TINY_TRAIN, *overrides]


def evaluate(store: str, ckpt: str = "good") -> Argv:
    return lambda bad, tmp: [
        "evaluate",
        f"ckpt={bad.ckpts[ckpt]}",
        f"datamodule.stores=[{bad.stores[store]}]",
        "trainer=cpu",
    ]


def translate(store: str, *overrides: str) -> Argv:
    return lambda bad, tmp: [
        "translate",
        f"input={bad.stores[store]}",
        f"output={tmp / 'out.h5'}",
        "method=physics",
        "method.progress=false",
        *overrides,
    ]


def check(store: str) -> Argv:
    return lambda bad, tmp: ["store", "check", str(bad.stores[store])]


def predict(input: str, ckpt: str = "good", *overrides: str) -> Argv:
    return lambda bad, tmp: [
        "predict",
        f"ckpt={bad.ckpts[ckpt]}",
        f"input={bad.predict[input]}",
        f"output={tmp / 'pred'}",
        "progress=false",
        *overrides,
    ]


def prepare(kind: str, data: str, *overrides: str) -> Argv:
    return lambda bad, tmp: [
        "prepare",
        f"data={data}",
        f"data.root={bad.raw[kind]}",
        f"output={tmp / 'out.h5'}",
        "prepare.figure=false",
        *overrides,
    ]


PREDICT_OUTPUTS = ("pred/predictions.csv", "pred/reference_points.csv", "pred/*_pred.h5", "pred/*_mask.nii.gz")
#: a scan that fails inside a batch: no mask or overlay of it (predict's tables and failed.csv are written)
SCAN_OUTPUTS = ("pred/*_pred.h5", "pred/*_mask.nii.gz", "pred/*_overlay.png", "pred/*_points.json")
SCAN_FAILED = {"status": 2, "prefix": "tagseg: failed: "}

STORE_MESSAGES = {
    "nan": r"nan\.h5: /images row 5 \(subject s1, slice 0, frame 1\) holds nan",
    "inf": r"inf\.h5: /images row 9 \(subject s2, slice 0, frame 1\) holds inf",
    "label7": r"label7\.h5: /masks row 3 \(subject s0, slice 1, frame 1\) holds label 7",
    "uint16": r"uint16\.h5: /images has dtype uint16, expected float32",
    "float64_masks": r"float64_masks\.h5: /masks has dtype float64, expected uint8",
    "above_one": r"above_one\.h5: /images row \d+ \(subject s\d, slice \d, frame \d\) holds [\d.]+; expected values in \[0, 1\]",
    "negative": r"negative\.h5: /images row 2 \(subject s0, slice 1, frame 0\) holds -0\.5",
    "empty_train": r"empty_train\.h5: every 'train' mask \(16 slices\) is empty",
    "empty_val": r"empty_val\.h5: every 'val' mask \(4 slices\) is empty",
    "empty_test": r"empty_test\.h5: every 'test' mask \(4 slices\) is empty",
    "empty_all": r"empty_all\.h5: every mask is empty",
    "bad_split": r"bad_split\.h5: meta/split row \d+ \(subject s1, slice 0, frame 0\) is 'validation'",
    "short_meta": r"short_meta\.h5: meta/subject has 21 rows, expected 24",
    "unreadable": r"unreadable\.h5: /images row 7 \(subject s1, slice 1, frame 1\) is unreadable",
    "no_masks": r"no_masks\.h5: missing required key\(s\) \['masks'\]",
    "text": r"text\.h5: not a readable HDF5 slice store",
    "missing": r"missing\.h5: slice store not found",
    "rgb": r"rgb\.h5: /images must be \(N, H, W\)",
}


def _store_cases() -> list[Case]:
    cases = []
    for key in (
        "nan",
        "inf",
        "label7",
        "uint16",
        "float64_masks",
        "above_one",
        "negative",
        "empty_train",
        "empty_val",
        "bad_split",
        "short_meta",
        "unreadable",
        "no_masks",
        "text",
        "missing",
        "rgb",
    ):
        cases.append(Case(f"train-store-{key}", "store", f"{key}.h5", train(key), STORE_MESSAGES[key], RUN_OUTPUTS))
    for key in ("nan", "label7", "uint16", "empty_test", "unreadable", "bad_split"):
        cases.append(
            Case(f"evaluate-store-{key}", "store", f"{key}.h5", evaluate(key), STORE_MESSAGES[key], RUN_OUTPUTS)
        )
    for key in ("nan", "label7", "uint16", "float64_masks", "empty_all", "bad_split", "short_meta", "unreadable"):
        msg = STORE_MESSAGES[key]
        if key == "nan":  # translate reads batch by batch and names the image it was given
            msg = r"nan\.h5: image 5 \(subject s1, slice 0, frame 1\) holds NaN"
        cases.append(Case(f"translate-store-{key}", "store", f"{key}.h5", translate(key), msg, STORE_OUTPUTS))
    for key in (
        "nan",
        "inf",
        "label7",
        "uint16",
        "above_one",
        "bad_split",
        "short_meta",
        "unreadable",
        "text",
        "missing",
    ):
        cases.append(Case(f"store-check-{key}", "store", f"{key}.h5", check(key), STORE_MESSAGES[key]))
    cases.append(
        Case(
            "report-run-with-nan-store",
            "store",
            "report_run/ (store nan.h5)",
            lambda bad, tmp: ["report", f"path={bad.report_run}", f"output={tmp / 'rep'}"],
            STORE_MESSAGES["nan"],
            ("rep", "rep/*"),  # a refused report leaves no folder (its tables are written, then dropped)
        )
    )
    cases.append(
        Case(
            "report-run-with-truncated-checkpoint",
            "checkpoint",
            "report_run_bad_ckpt/ (truncated best.ckpt)",
            lambda bad, tmp: ["report", f"path={bad.report_run_bad_ckpt}", f"output={tmp / 'rep'}"],
            r"best\.ckpt: not a readable PyTorch checkpoint \(PytorchStreamReader failed reading zip archive: "
            r"failed finding central directory; truncated",
            ("rep", "rep/*"),
        )
    )
    return cases


def _predict_cases() -> list[Case]:
    return [
        Case(
            "predict-store-nan",
            "predict",
            "nan.h5",
            predict("nan_store"),
            STORE_MESSAGES["nan"],
            SCAN_OUTPUTS,
            **SCAN_FAILED,
        ),
        Case(
            "predict-store-unreadable",
            "predict",
            "unreadable.h5",
            predict("unreadable_store"),
            STORE_MESSAGES["unreadable"],
            SCAN_OUTPUTS,
            **SCAN_FAILED,
        ),
        Case(
            "predict-input-missing",
            "predict",
            "no_scans_here",
            predict("missing"),
            r"no_scans_here: input not found",
            PREDICT_OUTPUTS,
        ),
        Case(
            "predict-input-empty-folder",
            "predict",
            "empty_folder/",
            predict("empty_folder"),
            r"empty_folder: no scan found",
            PREDICT_OUTPUTS,
        ),
        Case(
            "predict-input-nan-nifti",
            "predict",
            "nan_scan.nii.gz",
            predict("nan_nifti"),
            r"nan_scan\.nii\.gz: .*(NaN|nan)",
            SCAN_OUTPUTS,
            **SCAN_FAILED,
        ),
        Case(
            "predict-input-broken-nifti",
            "predict",
            "broken_scan.nii.gz",
            predict("bad_nifti"),
            r"broken_scan\.nii\.gz",
            SCAN_OUTPUTS,
            **SCAN_FAILED,
        ),
        Case(
            "predict-input-1d-nifti",
            "predict",
            "line_scan.nii.gz",
            predict("one_d_nifti"),
            r"line_scan\.nii\.gz",
            SCAN_OUTPUTS,
            **SCAN_FAILED,
        ),
        Case(
            "predict-input-text-file",
            "predict",
            "notes.txt",
            predict("text_file"),
            r"notes\.txt: unrecognised input",
            SCAN_OUTPUTS,
            **SCAN_FAILED,
        ),
    ]


def _checkpoint_cases() -> list[Case]:
    def train_with(key: str, ckpt: str) -> Argv:
        return lambda bad, tmp: train("good", f"{key}={bad.ckpts[ckpt]}")(bad, tmp)

    return [
        Case(
            "evaluate-ckpt-truncated",
            "checkpoint",
            "truncated.ckpt",
            evaluate("good", "truncated"),
            r"truncated\.ckpt",
            RUN_OUTPUTS,
        ),
        Case("evaluate-ckpt-text", "checkpoint", "text.ckpt", evaluate("good", "text"), r"text\.ckpt", RUN_OUTPUTS),
        Case(
            "evaluate-ckpt-cyclegan",
            "checkpoint",
            "cyclegan.ckpt",
            evaluate("good", "cyclegan"),
            r"cyclegan\.ckpt",
            RUN_OUTPUTS,
        ),
        Case(
            "evaluate-ckpt-missing",
            "checkpoint",
            "missing.ckpt",
            evaluate("good", "missing"),
            r"ckpt: .*missing\.ckpt does not exist",
            RUN_OUTPUTS,
        ),
        Case(
            "train-init-from-truncated",
            "checkpoint",
            "truncated.ckpt",
            train_with("init_from", "truncated"),
            r"truncated\.ckpt",
            RUN_OUTPUTS,
        ),
        Case(
            "train-ckpt-path-truncated",
            "checkpoint",
            "truncated.ckpt",
            train_with("ckpt_path", "truncated"),
            r"truncated\.ckpt",
            RUN_OUTPUTS,
        ),
        Case(
            "train-ckpt-path-cyclegan",
            "checkpoint",
            "cyclegan.ckpt",
            train_with("ckpt_path", "cyclegan"),
            r"cyclegan\.ckpt",
            RUN_OUTPUTS,
        ),
        Case(
            "train-ckpt-path-missing",
            "checkpoint",
            "missing.ckpt",
            train_with("ckpt_path", "missing"),
            r"ckpt_path: .*missing\.ckpt does not exist",
            RUN_OUTPUTS,
        ),
        Case(
            "predict-ckpt-truncated",
            "checkpoint",
            "truncated.ckpt",
            predict("nan_store", "truncated"),
            r"truncated\.ckpt",
            PREDICT_OUTPUTS,
        ),
        Case(
            "predict-ckpt-text", "checkpoint", "text.ckpt", predict("nan_store", "text"), r"text\.ckpt", PREDICT_OUTPUTS
        ),
    ]


def _config_cases() -> list[Case]:
    def cfg(case: str, stage_argv: Argv, key: str, message: str, forbidden: tuple[str, ...] = RUN_OUTPUTS) -> Case:
        return Case(case, "config", key, stage_argv, message, forbidden)

    return [
        cfg(
            "train-lr-abc",
            train("good", "model.optimizer.lr=abc"),
            "model.optimizer.lr=abc",
            r"^model\.optimizer\.lr: expected a number > 0, got 'abc'",
        ),
        cfg(
            "train-lr-negative",
            train("good", "model.optimizer.lr=-0.01"),
            "model.optimizer.lr=-0.01",
            r"^model\.optimizer\.lr: expected a number > 0, got -0\.01",
        ),
        cfg(
            "train-lr-zero",
            train("good", "model.optimizer.lr=0"),
            "model.optimizer.lr=0",
            r"^model\.optimizer\.lr: expected a number > 0, got 0",
        ),
        cfg("train-unknown-key", train("good", "foo=1"), "foo=1", r"^foo: no such key in the config \(`--cfg job`"),
        cfg(
            "train-unknown-nested-key",
            train("good", "datamodule.foo=1"),
            "datamodule.foo=1",
            r"^datamodule\.foo: no such key in the config",
        ),
        cfg(
            "train-unknown-model",
            train("good", "model=resnetvea"),
            "model=resnetvea",
            r"^model=resnetvea: no such choice in group 'model' \(did you mean resnetvae\?\); choices: nnunet, resnetvae$",
        ),
        cfg(
            "translate-unknown-physics-key",
            translate("good", "physics.spacingpx=3"),
            "physics.spacingpx=3",
            r"^physics\.spacingpx: no such key in the config \(did you mean physics\.spacing_px\?\)",
            STORE_OUTPUTS,
        ),
        cfg("train-seed-abc", train("good", "seed=abc"), "seed=abc", r"^seed: expected an integer, got 'abc'"),
        cfg("train-seed-float", train("good", "seed=1.5"), "seed=1.5", r"^seed: expected an integer, got 1\.5"),
        cfg(
            "train-max-epochs-abc",
            train("good", "trainer.max_epochs=abc"),
            "trainer.max_epochs=abc",
            r"^trainer\.max_epochs: expected an integer >= -1 or null, got 'abc'",
        ),
        cfg(
            "train-batch-size-zero",
            train("good", "datamodule.batch_size=0"),
            "datamodule.batch_size=0",
            r"^datamodule\.batch_size: expected an integer >= 1, got 0",
        ),
        cfg(
            "train-image-size-abc",
            train("good", "datamodule.image_size=abc"),
            "datamodule.image_size=abc",
            r"^datamodule\.image_size: expected an integer >= 8, got 'abc'",
        ),
        cfg(
            "train-flip-prob",
            train("good", "datamodule.augment.flip_prob=1.5"),
            "datamodule.augment.flip_prob=1.5",
            r"^datamodule\.augment\.flip_prob: expected a number >= 0 and <= 1, got 1\.5",
        ),
        cfg(
            "train-workers-negative",
            train("good", "datamodule.num_workers=-1"),
            "datamodule.num_workers=-1",
            r"^datamodule\.num_workers: expected an integer >= 0, got -1",
        ),
        cfg(
            "train-split-ratios",
            train("good", "datamodule.split_ratios=[0.5,0.5]"),
            "datamodule.split_ratios=[0.5,0.5]",
            r"^datamodule\.split_ratios: expected a list of 3 numbers",
        ),
        cfg(
            "evaluate-split-unknown",
            lambda bad, tmp: [*evaluate("good")(bad, tmp), "split=training"],
            "split=training",
            r"^split: expected one of \['train', 'val', 'test', 'all'\], got 'training'",
        ),
        cfg(
            "translate-seed-abc",
            translate("good", "seed=abc"),
            "seed=abc",
            r"^seed: expected an integer, got 'abc'",
            STORE_OUTPUTS,
        ),
        cfg(
            "predict-batch-size-zero",
            predict("nan_store", "good", "batch_size=0"),
            "batch_size=0",
            r"^batch_size: expected an integer >= 1, got 0",
            PREDICT_OUTPUTS,
        ),
        cfg(
            "prepare-image-size-abc",
            lambda bad, tmp: ["prepare", "prepare.image_size=abc", f"output={tmp / 'out.h5'}"],
            "prepare.image_size=abc",
            r"^prepare\.image_size: expected an integer >= 8 or 'auto' or null, got 'abc'",
            STORE_OUTPUTS,
        ),
    ]


def _raw_cases() -> list[Case]:
    return [
        Case(
            "prepare-acdc-ed-equals-es",
            "raw",
            "acdc Info.cfg ED == ES",
            prepare("acdc_ed_es", "acdc", "strict=true"),
            r"Info\.cfg",
            STORE_OUTPUTS,
        ),
        Case(
            "prepare-acdc-broken-label-file",
            "raw",
            "acdc *_gt.nii.gz not NIfTI",
            prepare("acdc_bad_nifti", "acdc", "strict=true"),
            r"_gt\.nii\.gz",
            STORE_OUTPUTS,
        ),
        Case(
            "prepare-scd-frame-of-another-matrix",
            "raw",
            "scd series with one 20x18 frame",
            prepare("scd_matrix", "scd", "strict=true"),
            r"IM-0004-0021\.dcm|SC-HF-I-1",
            STORE_OUTPUTS,
        ),
        Case(
            "prepare-missing-root",
            "raw",
            "acdc root missing",
            prepare("missing_root", "acdc"),
            r"no_such_dataset",
            STORE_OUTPUTS,
        ),
        Case(
            "prepare-verify-with-problems",
            "raw",
            "acdc ED == ES, verify=true",
            prepare("acdc_ed_es", "acdc", "verify=true"),
            r"problem",
            STORE_OUTPUTS,
        ),
    ]


CASES: list[Case] = [*_store_cases(), *_predict_cases(), *_checkpoint_cases(), *_config_cases(), *_raw_cases()]
