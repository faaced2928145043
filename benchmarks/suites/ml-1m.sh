#!/usr/bin/env bash
# Regenerates results/ml-1m.{md,json,png} and results/tuning/ml-1m.*: tune the stock baselines' learning
# rate and regularisation on the validation split (seed 2020), then run every row under
# properties/benchmark/ml-1m.yaml. Needs ../shared/datasets (DATA to override). Hours on a 2-core CPU;
# finished runs are skipped on a rerun, so it can be run in pieces. Run it on an otherwise idle machine:
# the table's seconds per epoch are only comparable then.
set -euo pipefail
cd "$(dirname "$0")/../.."
P=properties/benchmark/ml-1m.yaml
D=${DATA:-../shared/datasets}
tune() { python benchmarks/tune.py --dataset ml-1m --data_path "$D" --protocol "$P" "$@"; }
tune --model BPR --grid learning_rate=0.001,0.005 --grid weight_decay=0,1e-5
tune --model EASE --grid reg_weight=250.0,500.0,1000.0
tune --model MultiVAE --grid learning_rate=0.001,0.005 --grid dropout_prob=0.3,0.5
# LightGCN's grid runs on FastLightGCN (same model and scores, 5x faster on ml-1m); the choice is
# copied to stock LightGCN so both rows use it.
tune --model FastLightGCN --grid learning_rate=0.001,0.005 --grid reg_weight=1e-5,1e-4
cp properties/benchmark/ml-1m/FastLightGCN.yaml properties/benchmark/ml-1m/LightGCN.yaml
python benchmarks/run.py --dataset ml-1m --data_path "$D" --protocol "$P" --seeds ${SEEDS:-2020} \
    --models "${MODELS:-Pop,BPR,EASE,MultiVAE,FastLightGCN,LightGCN,GLTA}"
