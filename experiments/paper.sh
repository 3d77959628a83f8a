#!/usr/bin/env bash
# The paper's Table 3 and Table 4 at full scale on one 2-GPU workstation (DDP, 16-mixed).
# TAGGED, ACDC, MNMS, SCD: folders of the raw datasets (see the README's real-data section).
set -euo pipefail
cd "$(dirname "$0")/.."
TAGSEG=${TAGSEG:-.venv/bin/tagseg}
DATA=(data.root="${TAGGED:?set TAGGED}" strategy.source.acdc_root="${ACDC:?set ACDC}"
      strategy.source.mnms_root="${MNMS:?set MNMS}" strategy.source.scd_root="${SCD:?set SCD}")
$TAGSEG train -m experiment=strategy_matrix "${DATA[@]}" logger=wandb
$TAGSEG train -m experiment=gamma_sweep "${DATA[@]}" logger=wandb
# one cell alone, e.g. the paper's best (ResNetVAE, CycleGAN pretraining):
#   $TAGSEG train experiment=paper strategy=cyclegan model=resnetvae "${DATA[@]}"
# the authors' three-stage chain (cine -> transformed -> tagged):
#   $TAGSEG train experiment=paper strategy=three_stage strategy.chain=[cine,cyclegan] "${DATA[@]}"
