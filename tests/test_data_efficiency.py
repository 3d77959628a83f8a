"""experiment=data_efficiency: the cells of the sweep and what their stages share."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from tagseg.data.shifts import shift_names
from tagseg.data.splits import split_subjects
from tagseg.pipeline.runner import assign_keys
from tagseg.pipeline.strategy import evaluate_orientation, plan_strategy
from tagseg.runtime.config import CONF_DIR

N_KEY = "datamodule.n_train_subjects"


def _cells(experiment: str) -> list[dict[str, str]]:
    """The sweep's cells (override dicts), as Hydra's basic sweeper enumerates them."""
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        sweep = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = {k: str(v).split(",") for k, v in sweep.hydra.sweeper.params.items()}
    return [dict(zip(params, combo)) for combo in itertools.product(*params.values())]


def _plans(experiment: str, cells: list[dict[str, str]]) -> list[dict]:
    plans = []
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        for cell in cells:
            cfg = compose("train", overrides=[f"experiment={experiment}", *(f"{k}={v}" for k, v in cell.items())])
            with open_dict(cfg):
                cfg.paths.output_dir = "unused"
            plans.append({s.label: s for s in assign_keys(plan_strategy(cfg))})
    return plans


def _check_sharing(cells: list[dict[str, str]], plans: list[dict]) -> dict:
    """Pretraining keys ignore n (one per chain, translation and seed); fine-tunings are per cell."""
    pretrains: dict = {}
    for cell, plan in zip(cells, plans):
        tests = [label for label, s in plan.items() if s.kind == "test"]
        assert tests == ["test"] + [f"test[{n}]" for n in shift_names()]  # tagged test split + every shift
        for label, stage in plan.items():
            if stage.kind == "pretrain":
                key = (label, cell["seed"], tuple(plan[n].key for n in stage.needs))
                assert pretrains.setdefault(key, stage.key) == stage.key, (cell, label)
                assert stage.config["train"]["datamodule"]["n_train_subjects"] is None
        assert plan["finetune"].config["train"]["datamodule"]["n_train_subjects"] == int(cell[N_KEY])
    finetunes = {p["finetune"].key for p in plans}
    assert len(finetunes) == len(plans)
    for label in ["prepare[phantom_tagged]", *(f"prepare[shift_{n}]" for n in shift_names())]:
        assert len({p[label].key for p in plans}) == 1, label  # shared by every cell
    return pretrains


def test_full_experiment_cells_and_keys():
    cells = _cells("data_efficiency")
    assert len(cells) == 6 * 5 * 3
    assert {c["strategy"] for c in cells} == {
        "scratch",
        "cine",
        "physics",
        "physics_dynamic",
        "cyclegan",
        "three_stage",
    }
    assert {c[N_KEY] for c in cells} == {"1", "2", "4", "8", "16"} and {c["seed"] for c in cells} == {"0", "1", "2"}
    # a sample of cells (planning all 90 takes minutes): every strategy at n = 1 and 16, seed 0, and one seed 1
    sample = [c for c in cells if c["seed"] == "0" and c[N_KEY] in ("1", "16")]
    sample += [c for c in cells if c["seed"] == "1" and c[N_KEY] == "1" and c["strategy"] == "cine"]
    plans = _plans("data_efficiency", sample)
    pretrains = _check_sharing(sample, plans)
    # seed 0: cine, physics, physics_dynamic, cyclegan, cine>physics (three_stage; its first stage is cine's); seed 1: cine
    assert len(set(pretrains.values())) == 5 + 1
    by = {(c["strategy"], c["seed"]): p for c, p in zip(sample, plans)}
    assert by[("three_stage", "0")]["pretrain[cine]"].key == by[("cine", "0")]["pretrain[cine]"].key
    assert by[("cine", "1")]["pretrain[cine]"].key != by[("cine", "0")]["pretrain[cine]"].key  # once per seed
    assert by[("physics_dynamic", "0")]["translate[physics]"].key != by[("physics", "0")]["translate[physics]"].key
    cfg = by[("scratch", "0")]["finetune"].config["train"]
    assert cfg["datamodule"]["min_train_samples"] == 384 and cfg["datamodule"]["image_size"] == 128
    store = by[("scratch", "0")]["prepare[phantom_tagged]"].config
    splits = list(
        split_subjects([str(i) for i in range(store["data"]["n_subjects"])], store["spec"]["split_ratios"]).values()
    )
    assert splits.count("train") >= 16 and splits.count("test") >= 15


@pytest.mark.slow
def test_full_experiment_every_cell_planned():
    cells = _cells("data_efficiency")
    pretrains = _check_sharing(cells, _plans("data_efficiency", cells))
    assert len(set(pretrains.values())) == 5 * 3


def test_demo_is_the_documented_subset():
    cells = _cells("data_efficiency_demo")
    assert len(cells) == 4 * 3 * 3
    assert {c["strategy"] for c in cells} == {"scratch", "cine", "physics", "cyclegan"}
    assert sorted({int(c[N_KEY]) for c in cells}) == [1, 4, 16]
    sample = [
        c for c in cells if c["seed"] == "0" and c["strategy"] in ("scratch", "cyclegan") and c[N_KEY] in ("1", "16")
    ]
    plans = _plans("data_efficiency_demo", sample)
    _check_sharing(sample, plans)
    cfg = plans[0]["finetune"].config["train"]
    assert cfg["datamodule"]["image_size"] == 64 and cfg["model"]["network"]["name"] == "resnetvae"
    store = plans[0]["prepare[phantom_tagged]"].config
    splits = list(
        split_subjects([str(i) for i in range(store["data"]["n_subjects"])], store["spec"]["split_ratios"]).values()
    )
    assert splits.count("train") >= 16 and splits.count("test") >= 10


def test_postprocess_re_tests_the_cached_fine_tuning():
    cell = {"seed": "0", "strategy": "scratch", N_KEY: "4"}
    plain_plan, lcc_plan = _plans("data_efficiency_demo", [cell, {**cell, "strategy.postprocess": "largest_component"}])
    assert lcc_plan["finetune"].key == plain_plan["finetune"].key  # not retrained
    for label, stage in plain_plan.items():
        if stage.kind == "test":
            # postprocess=none adds nothing to the key (the search's settings are always in it)
            assert stage.config == {"split": "test", "orientation": evaluate_orientation()}
            assert lcc_plan[label].key != stage.key and lcc_plan[label].config["postprocess"] == "largest_component"


def test_randomisation_demo_compares_the_fixed_mixed_and_wide_phantoms():
    cells = _cells("randomisation_demo")
    assert len(cells) == 3 * 3 and {c["data.randomise"] for c in cells} == {"null", "mixed", "wide"}
    plans = _plans("randomisation_demo", [c for c in cells if c["seed"] == "0"])
    stores = {p["prepare[phantom_tagged]"].config["data"].get("randomise") for p in plans}
    assert stores == {None, "mixed", "wide"}  # each randomisation prepares its own store
    for plan in plans:
        train = plan["finetune"].config["train"]
        assert train["datamodule"]["image_size"] == 128 and train["trainer"]["max_epochs"] == 15  # the demo's
        assert [s for s in plan if s.startswith("test")] == ["test"] + [f"test[{n}]" for n in shift_names()]
    shifts = {p["prepare[shift_none]"].key for p in plans}
    assert len(shifts) == 1  # every model meets the same shifted sets
