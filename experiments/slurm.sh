#!/usr/bin/env bash
# The paper's sweeps on a SLURM cluster: one job per cell, 2 GPUs and 2 tasks per job (DDP ranks
# created by SLURM, so Lightning launches nothing), requeued on time-out and resumed from the
# stage cache and last.ckpt. Run from a login node; the command waits for the jobs and then writes
# the sweep's summary.csv (or rebuild it: python -m tagseg.pipeline.sweep <sweep dir>).
set -euo pipefail
cd "$(dirname "$0")/.."
TAGSEG=${TAGSEG:-.venv/bin/tagseg}
PARTITION=${PARTITION:?set PARTITION (e.g. gpu)}
DATA=(data.root="${TAGGED:?set TAGGED}" strategy.source.acdc_root="${ACDC:?set ACDC}"
      strategy.source.mnms_root="${MNMS:?set MNMS}" strategy.source.scd_root="${SCD:?set SCD}")
LAUNCH=(hydra/launcher=submitit_slurm hydra.launcher.partition="$PARTITION"
        hydra.launcher.timeout_min=720 "hydra.launcher.setup=[source .venv/bin/activate]")
# offline W&B on the nodes (training runs write into their cache folder); upload afterwards with
#   wandb sync cache/*/*/wandb/offline-run-*
export WANDB_MODE=${WANDB_MODE:-offline}
$TAGSEG train -m experiment=strategy_matrix "${DATA[@]}" "${LAUNCH[@]}" logger=wandb
$TAGSEG train -m experiment=gamma_sweep "${DATA[@]}" "${LAUNCH[@]}" logger=wandb
