"""Training strategies as chains of cached stages: ``tagseg train strategy=<name> model=<arch>``.

A strategy (``conf/strategy/<name>.yaml``) lists its pretraining sources in ``chain``; the plan is

``prepare[<tagged>]`` -> ``prepare[<cine>]`` -> ``cyclegan`` -> ``translate[<method>]`` ->
``pretrain[<source>]`` (one per source, each from the previous one's weights) -> ``finetune``
(from the last pretraining, or from scratch) -> ``test`` (the fine-tuned best checkpoint on the
tagged test split, on one device)

with only the stages the chain needs. Each stage is cached by :class:`~tagseg.pipeline.cache.StageCache`
under a hash of what determines it (:func:`stage_config`), so cells of a sweep share their
preparation, translation and pretraining, and a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from tagseg.data.shifts import SHIFT_SEED_OFFSET, TEST_ONLY, check_shifts, shift_data_config
from tagseg.data.store_spec import StoreSpec
from tagseg.errors import ConfigError
from tagseg.io.run_dir import STRATEGY_FILE, last_checkpoint
from tagseg.metric_registry import mean_std_keys, metric_names
from tagseg.pipeline.cache import RankSync, StageCache, StageResult
from tagseg.pipeline.runner import Stage, plan_table, run_stages
from tagseg.postprocess import check_postprocess
from tagseg.runtime.config import compose, key_config
from tagseg.runtime.ddp import global_rank, single_process_env, world_size

log = logging.getLogger(__name__)

#: the untranslated pretraining source: the prepared cine set itself
CINE_SOURCE = "cine"
STORE = "store.h5"


# --------------------------------------------------------------------------- stages


def store_stage(
    data_cfg: DictConfig,
    strategy: DictConfig,
    label: str,
    spec_node: Any = None,
    seed: int | None = None,
    split_ratios: Sequence[float] | None = None,
) -> Stage:
    """The slice store of a dataset: an existing ``data.store`` is used as is (keyed by its path,
    size and modification time); otherwise the dataset is prepared into the cache with the one store
    specification (``spec_node``, the run's ``prepare`` node), as ``tagseg prepare`` would; ``seed``
    and ``split_ratios`` replace the specification's (the pretraining set's ratios, shifted test sets)."""
    store = Path(str(data_cfg.store)) if data_cfg.get("store") else None
    if store is not None and store.exists() and strategy.get("use_existing_stores", True):
        stat = store.stat()
        config = {"path": str(store.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        return Stage("store", label, config, lambda out, inputs: {"store": store})

    from tagseg.stages.prepare import prepare_store

    spec = StoreSpec.from_config(spec_node, data_cfg)
    if seed is not None:
        spec = replace(spec, seed=int(seed))
    if split_ratios is not None:
        spec = replace(spec, split_ratios=tuple(float(r) for r in split_ratios))
    data = key_config(data_cfg, ["store"])
    if data.get("randomise", "") is None:
        data.pop("randomise")  # the fixed phantom's keys do not depend on the randomisation option
    config = {"data": data, "spec": spec.as_dict()}

    def compute(out: Path, inputs: Mapping[str, StageResult]) -> dict[str, Any]:
        report = prepare_store(data_cfg, out / STORE, spec, attrs={"config": json.dumps(config, default=str)})
        print(report.table())
        print(report.table1())
        return {"store": out / STORE, "n_slices": report.n_slices, "n_skipped": len(report.skipped)}

    return Stage("prepare", label, config, compute)


def cyclegan_stage(cfg: DictConfig, cine: str, tagged: str) -> Stage:
    """Train the cine -> tagged CycleGAN on the prepared cine (A) and tagged (B) stores."""
    overrides = list(cfg.strategy.get("cyclegan") or [])
    gan_cfg = compose("cyclegan", overrides)
    drop = list(cfg.strategy.cache_ignore) + [
        "data_a",
        "data_b",
        "datamodule.store_a",
        "datamodule.store_b",
        "ckpt_path",
        "tagness_check.output",
    ]
    config = {"cyclegan": key_config(gan_cfg, drop)}

    def compute(out: Path, inputs: Mapping[str, StageResult]) -> dict[str, Any]:
        from tagseg.stages.cyclegan import train_cyclegan

        run_cfg = gan_cfg.copy()
        last = last_checkpoint(out)
        with open_dict(run_cfg):
            run_cfg.paths.output_dir = str(out)
            for domain, label in (("a", cine), ("b", tagged)):
                store = str(inputs[label].outputs["store"])
                run_cfg[f"data_{domain}"].store = store
                run_cfg.datamodule[f"store_{domain}"] = store
            run_cfg.ckpt_path = str(last) if last.exists() else None
        result = train_cyclegan(run_cfg)
        return {"ckpt": Path(result["last_ckpt"]), "run_dir": out}

    return Stage("cyclegan", "cyclegan", config, compute, needs=(cine, tagged), collective=True)


def translate_stage(tr_cfg: DictConfig, source: str, cine: str, gan: str | None) -> Stage:
    """Translate the prepared cine store by ``tagseg translate``'s own function, with the translate config
    composed from ``strategy.translate[<source>]`` (its compression and method options apply); ``gan``:
    the stage whose checkpoint the translator loads (``method.ckpt``)."""
    config = {"method": key_config(tr_cfg.method, ["ckpt", "progress", "device", "n_figure"]), "seed": int(tr_cfg.seed)}
    needs = (cine,) if gan is None else (cine, gan)

    def compute(out: Path, inputs: Mapping[str, StageResult]) -> dict[str, Any]:
        from tagseg.stages.translate import translate

        run_cfg = tr_cfg.copy()
        with open_dict(run_cfg):
            run_cfg.input = str(inputs[cine].outputs["store"])
            run_cfg.output = str(out / STORE)
            if gan is not None:
                run_cfg.method.ckpt = str(inputs[gan].outputs["ckpt"])
        report = translate(run_cfg, attrs={"config": json.dumps(config, default=str)})
        print(report.summary())
        return {"store": out / STORE, "figure": report.figure}

    return Stage("translate", f"translate[{source}]", config, compute, needs=needs)


def training_config(cfg: DictConfig, data_cfg: DictConfig, merge: Mapping[str, Any] | None) -> DictConfig:
    """The train config of one training stage: ``cfg`` with this stage's data and settings."""
    run_cfg = cfg.copy()
    with open_dict(run_cfg):
        run_cfg.data = data_cfg.copy()
        run_cfg.test = False
        run_cfg.ckpt_path = None
        run_cfg.init_from = None
    if merge:
        try:
            run_cfg = OmegaConf.merge(
                run_cfg,
                OmegaConf.create(
                    OmegaConf.to_container(merge, resolve=True) if OmegaConf.is_config(merge) else dict(merge)
                ),
            )
        except Exception as exc:  # a typo'd key in strategy.pretrain / strategy.finetune
            raise ConfigError(
                f"strategy: cannot merge {dict(merge) if not OmegaConf.is_config(merge) else OmegaConf.to_container(merge)} "
                f"into the training config: {exc}"
            ) from None
    return run_cfg


def train_stage(cfg: DictConfig, kind: str, label: str, run_cfg: DictConfig, store: str, init: str | None) -> Stage:
    """A training stage (``pretrain`` / ``finetune``): fit on ``store``'s data from ``init``'s weights."""
    drop = list(cfg.strategy.cache_ignore) + ["data", "datamodule.stores", "init_from", "ckpt_path", "test"]
    config = {"train": key_config(run_cfg, drop)}
    needs = (store,) if init is None else (store, init)

    def compute(out: Path, inputs: Mapping[str, StageResult]) -> dict[str, Any]:
        from tagseg.stages.train import train

        stage_cfg = run_cfg.copy()
        store_path = str(inputs[store].outputs["store"])
        last = last_checkpoint(out)
        with open_dict(stage_cfg):
            stage_cfg.data.store = store_path
            stage_cfg.datamodule.stores = [store_path]
            stage_cfg.paths.output_dir = str(out)
            stage_cfg.init_from = str(inputs[init].outputs["best_ckpt"]) if init is not None else None
            stage_cfg.ckpt_path = str(last) if last.exists() else None
            _wandb_identity(stage_cfg, cfg, label)
        if stage_cfg.ckpt_path:
            log.info("%s: resuming from %s", label, last)
        result = train(stage_cfg)
        best = result.best_ckpt or result.last_ckpt
        if best is None:
            raise ConfigError(f"{label}: training wrote no checkpoint (is callbacks.model_checkpoint set?)")
        return {
            "best_ckpt": Path(best),
            "last_ckpt": result.last_ckpt,
            "run_dir": out,
            "epochs": result.epochs,
            "global_step": result.global_step,
        }

    return Stage(kind, label, config, compute, needs=needs, collective=True)


def evaluate_orientation() -> dict[str, Any]:
    """The orientation settings ``tagseg evaluate`` tests with (``conf/orientation/default.yaml``), as
    plain values: part of a test stage's key, so a cached test made under another rule is not reused."""
    return dict(_evaluate_orientation())


@lru_cache(maxsize=1)
def _evaluate_orientation() -> tuple[tuple[str, Any], ...]:  # composed once per process (12 test stages a plan)
    from dataclasses import asdict

    from tagseg.models.orientation import OrientationSettings

    return tuple(asdict(OrientationSettings.from_config(compose("evaluate", []).get("orientation"))).items())


def test_stage(cfg: DictConfig, store: str, finetune: str, label: str = "test") -> Stage:
    """Test the fine-tuned best checkpoint on ``store``'s test split (the tagged store's, or a
    shifted set's), on one device, after ``strategy.postprocess`` (``none`` adds nothing to the key),
    each subject in the view :func:`evaluate_orientation`'s search picks (its settings are in the key)."""
    postprocess = check_postprocess(cfg.strategy.get("postprocess"), "strategy.postprocess")
    config: dict[str, Any] = {"split": "test", "orientation": evaluate_orientation()}
    if postprocess != "none":
        config["postprocess"] = postprocess

    def compute(out: Path, inputs: Mapping[str, StageResult]) -> dict[str, Any]:
        from tagseg.stages.evaluate import evaluate

        store_path = str(inputs[store].outputs["store"])
        ev_cfg = compose("evaluate", [])
        with open_dict(ev_cfg):
            ev_cfg.ckpt = str(inputs[finetune].outputs["best_ckpt"])
            ev_cfg.split = "test"
            ev_cfg.postprocess = postprocess
            ev_cfg.paths.output_dir = str(out)
            ev_cfg.data = cfg.data.copy()
            ev_cfg.data.store = store_path
            ev_cfg.datamodule.stores = [store_path]
            ev_cfg.datamodule.num_workers = 0
            ev_cfg.datamodule.batch_size = cfg.datamodule.get("eval_batch_size") or cfg.datamodule.batch_size
            ev_cfg.trainer = OmegaConf.create(
                {
                    "_target_": "lightning.pytorch.trainer.Trainer",
                    "devices": 1,
                    "accelerator": cfg.trainer.get("accelerator", "auto"),
                    "logger": False,
                    "enable_progress_bar": False,
                    "default_root_dir": str(out),
                }
            )
            ev_cfg.logger = None
            ev_cfg.callbacks = None
        with single_process_env():
            result = evaluate(ev_cfg)
        return {"summary": result.summary, "summary_path": result.summary_path, "metrics_path": result.metrics_path}

    return Stage("test", label, config, compute, needs=(store, finetune))


def _wandb_identity(stage_cfg: DictConfig, cfg: DictConfig, label: str) -> None:
    """One W&B group per sweep, a run name per cell and stage, tags strategy / arch / gamma."""
    wandb = (stage_cfg.get("logger") or {}).get("wandb")
    if wandb is None:
        return
    from tagseg.runtime.wandb_run import group_name, run_name

    cell = run_name("")
    wandb.group = wandb.get("group") or group_name(cfg)
    wandb.name = f"{cell}/{label}" if cell else label
    wandb.job_type = label.split("[")[0]
    wandb.tags = sorted(set(list(cfg.get("tags") or []) + run_tags(cfg)))


def run_tags(cfg: DictConfig) -> list[str]:
    """``strategy:<name>``, ``arch:<network>``, ``gamma:<value>``."""
    tags = [f"strategy:{cfg.strategy.name}"]
    name = OmegaConf.select(cfg, "model.network.name")
    if name is not None:
        tags.append(f"arch:{name}")
    gamma = OmegaConf.select(cfg, "loss.gamma")
    if gamma is not None:
        tags.append(f"gamma:{gamma}")
    return tags


# --------------------------------------------------------------------------- the plan


def pretraining_sources(strategy: Mapping[str, Any]) -> dict[str, list[str] | None]:
    """The pretraining sources a chain may name: ``cine`` (the cine set itself, None) and every
    entry of ``strategy.translate`` (name -> its ``tagseg translate`` overrides).

    A new source is config data: ``strategy.translate.<name>: [method=<translator>, ...]``
    (see docs/extending.md); a source whose translator is trained first (its class says so:
    ``Translator.trained_by``) gets that training stage before its translation.
    """
    sources: dict[str, list[str] | None] = {CINE_SOURCE: None}
    for name, overrides in (strategy.get("translate") or {}).items():
        sources[str(name)] = [str(o) for o in overrides]
    return sources


#: the stages that train a translator, by the name its class gives (``Translator.trained_by``)
TRAINING_STAGES = {"cyclegan": cyclegan_stage}


def translator_training(tr_cfg: DictConfig) -> str | None:
    """The stage that must train a source's translator first (``trained_by`` of the class
    ``method._target_`` names: ``cyclegan`` for the CycleGAN translator), or None.

    Raises:
        ConfigError: the class names a training stage the pipeline does not have.
    """
    from hydra.utils import get_class

    trained_by = getattr(get_class(str(tr_cfg.method._target_)), "trained_by", None)
    if trained_by is not None and trained_by not in TRAINING_STAGES:
        raise ConfigError(
            f"method: {tr_cfg.method._target_} is trained by {trained_by!r}, which is no training stage "
            f"(known: {sorted(TRAINING_STAGES)})"
        )
    return trained_by


def plan_strategy(cfg: DictConfig) -> list[Stage]:
    """The stages of ``cfg.strategy`` for the composed train config ``cfg``.

    Raises:
        ConfigError: an unknown source in ``strategy.chain``, or a chain that needs the cine set
            without ``strategy.source``.
    """
    strategy = cfg.strategy
    chain = [str(s) for s in strategy.chain]
    sources = pretraining_sources(strategy)
    unknown = [s for s in chain if s not in sources]
    if unknown:
        raise ConfigError(
            f"strategy.chain: unknown source(s) {unknown}; expected a list of {list(sources)} "
            "(a new source: strategy.translate.<name>=[method=...])"
        )
    stages: list[Stage] = []
    tagged = f"prepare[{cfg.data.get('name', 'tagged')}]"
    stages.append(store_stage(cfg.data, strategy, tagged, cfg.get("prepare")))
    cine = None
    if chain:
        if strategy.get("source") is None:
            raise ConfigError(
                "strategy.source: no cine dataset to pretrain from (e.g. /data@strategy.source: phantom_cine)"
            )
        cine = f"prepare[{strategy.source.get('name', 'cine')}]"
        if cine == tagged:
            cine = f"{cine}#source"
        source_ratios = strategy.get("source_split_ratios")
        stages.append(
            store_stage(
                strategy.source,
                strategy,
                cine,
                cfg.get("prepare"),
                split_ratios=list(source_ratios) if source_ratios is not None else None,
            )
        )
    translate_cfgs = {src: compose("translate", sources[src]) for src in dict.fromkeys(chain) if sources[src]}
    trainers = {src: translator_training(tr_cfg) for src, tr_cfg in translate_cfgs.items()}
    for name in dict.fromkeys(t for t in trainers.values() if t is not None):
        stages.append(TRAINING_STAGES[name](cfg, cine, tagged))
    source_store: dict[str, str] = {}
    for src in dict.fromkeys(chain):
        if sources[src] is None:
            source_store[src] = cine
        else:
            stage = translate_stage(translate_cfgs[src], src, cine, trainers[src])
            stages.append(stage)
            source_store[src] = stage.label
    init = None
    for i, src in enumerate(chain):
        label = f"pretrain[{'>'.join(chain[: i + 1])}]"
        run_cfg = training_config(cfg, strategy.source, strategy.get("pretrain"))
        with open_dict(run_cfg):
            # the labelled tagged subjects limit the fine-tuning only: a pretraining is shared across n
            run_cfg.datamodule.n_train_subjects = None
        stages.append(train_stage(cfg, "pretrain", label, run_cfg, source_store[src], init))
        init = label
    run_cfg = training_config(cfg, cfg.data, strategy.get("finetune"))
    stages.append(train_stage(cfg, "finetune", "finetune", run_cfg, tagged, init))
    stages.append(test_stage(cfg, tagged, "finetune"))
    for name in check_shifts(strategy.get("shifts")):
        data_cfg = shift_data_config(cfg.data, name, int(strategy.get("shift_subjects", 8)))
        shifted = f"prepare[shift_{name}]"
        seed = StoreSpec.from_config(cfg.get("prepare"), cfg.data).seed + SHIFT_SEED_OFFSET
        stages.append(store_stage(data_cfg, strategy, shifted, cfg.get("prepare"), seed=seed, split_ratios=TEST_ONLY))
        stages.append(test_stage(cfg, shifted, "finetune", label=f"test[{name}]"))
    return stages


def run_strategy(cfg: DictConfig) -> dict[str, Any]:
    """Plan, show and run ``cfg.strategy``; the result is this cell's sweep record.

    Returns:
        ``status``, ``strategy``, test ``test_<metric>_mean/std`` of every registered metric (``test_dice_mean``, ...),
        ``epochs`` (of the fine-tuning), ``run_dir`` (of the fine-tuning), ``summary_path`` and
        ``stages`` (label -> cache folder, key, reused). Also written to
        ``<run dir>/strategy.json``.
    """
    stages = plan_strategy(cfg)
    out_dir = Path(str(OmegaConf.select(cfg, "paths.output_dir", default=".")))
    token = f"{os.environ.get('SLURM_JOB_ID', os.environ.get('SUBMITIT_LOCAL_JOB_ID', 'job'))}-{os.environ.get('SLURM_RESTART_COUNT', '0')}"
    cache = StageCache(
        cfg.strategy.cache_dir,
        force=_force(cfg.strategy.get("force", False)),
        sync=RankSync(out_dir / ".rank_sync" / token, global_rank(), world_size()),
    )
    if global_rank() == 0:
        log.info(
            "strategy %s (%s):\n%s", cfg.strategy.name, " -> ".join(s.label for s in stages), plan_table(stages, cache)
        )
    results = run_stages(stages, cache)
    test, finetune = results["test"], results["finetune"]
    summary = test.outputs["summary"]
    tests = {label: r for label, r in results.items() if r.kind == "test"}
    from tagseg.report.dashboard import best_validation

    best_val = best_validation(finetune.dir)
    metrics = {**{f"test/{name}": summary[f"{name}_mean"] for name in metric_names()}, **best_val}
    record = {
        "status": "ok",
        "strategy": str(cfg.strategy.name),
        "seed": int(cfg.get("seed", 0)),
        "n_train_subjects": OmegaConf.select(cfg, "datamodule.n_train_subjects"),
        "postprocess": check_postprocess(cfg.strategy.get("postprocess"), "strategy.postprocess"),
        # every test set: "test" (the tagged test split) and "test[<shift>]"
        "tests": {
            ("test" if label == "test" else label[5:-1]): {
                **{f"{name}_mean": r.outputs["summary"][f"{name}_mean"] for name in metric_names()},
                "metrics_path": str(r.outputs["metrics_path"]),
            }
            for label, r in tests.items()
        },
        **{f"test_{key}": summary[key] for key in mean_std_keys()},
        "val_dice_best": best_val.get("val/dice_best"),
        "val_dice_best_epoch": best_val.get("val/dice_best_epoch"),
        "metrics": metrics,
        "epochs": finetune.outputs["epochs"],
        "run_dir": str(finetune.dir),
        "summary_path": str(test.outputs["summary_path"]),
        "stages": {
            label: {"dir": str(r.dir), "key": r.key, "reused": r.reused, "seconds": round(r.seconds, 1)}
            for label, r in results.items()
        },
    }
    if global_rank() == 0 and out_dir.is_dir():
        (out_dir / STRATEGY_FILE).write_text(json.dumps(record, indent=2))
    if global_rank() == 0:
        log_cell(cfg, stages, results, record)
    return record


def log_cell(
    cfg: DictConfig, stages: Sequence[Stage], results: Mapping[str, StageResult], record: Mapping[str, Any]
) -> None:
    """The cell's own W&B run (``logger=wandb``), logged from the cached results whether they were computed
    now or reused (then tagged ``reused``), so every sweep's W&B group has every cell."""
    if OmegaConf.select(cfg, "logger.wandb", default=None) is None:
        return
    from tagseg.report.dashboard import log_cell_run
    from tagseg.runtime.wandb_run import run_name

    test, finetune = results["test"], results["finetune"]
    stores = {
        s.label: (results[s.label].outputs["store"], s.key)
        for s in stages
        if s.kind in ("prepare", "store", "translate") and "store" in results[s.label].outputs
    }
    name = run_name(Path(str(OmegaConf.select(cfg, "paths.output_dir", default="cell"))).name)
    extra = {
        "epochs": record["epochs"],
        **{f"stage/{label}": f"{r.kind}/{r.key}{' (reused)' if r.reused else ''}" for label, r in results.items()},
    }
    log_cell_run(
        cfg,
        name=name,
        test_dir=test.dir,
        train_dir=finetune.dir,
        reused=test.reused,
        extra=extra,
        checkpoint=(finetune.outputs["best_ckpt"], finetune.key),
        stores=stores,
    )


def _force(value: Any) -> bool | list[str]:
    if isinstance(value, bool):
        return value
    if OmegaConf.is_list(value) or isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise ConfigError(f"strategy.force: expected true/false or a list of stage kinds, got '{value}'")
