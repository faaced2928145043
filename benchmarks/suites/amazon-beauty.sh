#!/usr/bin/env bash
# Regenerates results/amazon-beauty.{md,json,png} under properties/benchmark/amazon-beauty.yaml:
# leave-one-out over each user's sequence (LS split, order TO), full ranking, Hit and NDCG@5/10/20.
# Needs ../shared/datasets (DATA to override). One torch thread pinned to one core, as ml-100k.sh.
# Finished (row, seed) pairs are skipped on a rerun.
set -euo pipefail
cd "$(dirname "$0")/../.."
P=properties/benchmark/amazon-beauty.yaml
D=${DATA:-../shared/datasets}
on_core() { local core=$1; shift; OMP_NUM_THREADS=1 taskset -c "$core" python benchmarks/run.py --dataset amazon-beauty --data_path "$D" --protocol "$P" "$@"; }
on_core 0 --seeds 2020 --models "Pop,BPR,EASE,FastLightGCN"
# Not yet run: GAL-Rec (about 11 min an epoch of 2048 users and 8-14 min a full evaluation of the
# 22k users on one core) and SASRec.
if [[ "${MORE:-0}" == 1 ]]; then
  on_core 0 --seeds 2020 --models "GALRec[epochs=3,eval_step=3],SASRec"
fi
