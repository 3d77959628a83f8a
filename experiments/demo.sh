#!/usr/bin/env bash
# The paper's Table 3 and Table 4 at demo scale, on the built-in phantom, on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
TAGSEG=${TAGSEG:-.venv/bin/tagseg}
export WANDB_MODE=${WANDB_MODE:-offline}
# 8 cells: model=resnetvae,nnunet x strategy=scratch,cine,physics,cyclegan
$TAGSEG train -m experiment=strategy_matrix_demo
# 7 cells: ResNetVAE from scratch, loss.gamma=0,0.001,0.005,0.05,0.1,0.5,1.0
$TAGSEG train -m experiment=gamma_sweep_demo
