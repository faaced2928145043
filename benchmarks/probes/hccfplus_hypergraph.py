"""Why HCCF+ builds its hypergraphs from the ID embeddings: the first steps of both choices, side by side.

    python benchmarks/probes/hccfplus_hypergraph.py --dataset ml-1m --data_path ../shared/datasets \
        --protocol recbole_llm/properties/benchmark/ml-1m.yaml --learning_rate 0.005

HCCF+ fuses text into layer 0 of both of HCCF's views. Its learnable hypergraphs H = E W can be
built from the ID embeddings (``HCCF.get_hypergraphs``, what HCCF+ does) or from the text-fused
layer 0 (what HCCF+ first did). For each choice this trains HCCF+ from the same seed and config
through RecBole's trainer for one epoch and prints the batch loss at a few steps and the
validation NDCG@10 after the epoch. The text embeddings come from the plugin's cache (computed
on first use with the config's backbone). Checkpoints go to a temporary folder; nothing is logged
to ./log.
"""

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recbole.data import data_preparation  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from benchmarks.harness import environment  # noqa: E402
from recbole_llm.config import Config  # noqa: E402
from recbole_llm.model.hccfplus import HCCFPlus  # noqa: E402
from recbole_llm.utils import create_dataset, get_trainer  # noqa: E402

REPORTED_STEPS = (1, 2, 5, 10, 20, 60)


class FusedHypergraphHCCFPlus(HCCFPlus):
    """HCCF+ with H = E^(0) W from the text-fused layer 0 (the choice HCCF+ no longer makes)."""

    def get_hypergraphs(self):
        user_ego, item_ego = self.get_ego_embeddings()
        return user_ego @ self.user_hyper, item_ego @ self.item_hyper


VARIANTS = {"H from ID embeddings (HCCF+)": HCCFPlus, "H from text-fused layer 0": FusedHypergraphHCCFPlus}


def first_epoch(model_class, config, train_data, valid_data):
    """Batch losses of one epoch (step 1 first) and the validation NDCG@10 after it."""
    init_seed(config["seed"], config["reproducibility"])
    model = model_class(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], "HCCF+")(config, model)
    losses = []

    def recorded_loss(interaction):
        loss = model.calculate_loss(interaction)
        losses.append(loss.item())
        return loss

    trainer._train_epoch(train_data, 0, loss_func=recorded_loss)  # RecBole's loop, each batch's loss recorded
    score, _ = trainer._valid_epoch(valid_data)
    return losses, score


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--protocol", default=None, help="benchmark property file (split and metrics)")
    parser.add_argument("--learning_rate", type=float, default=0.005)
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()

    work = tempfile.mkdtemp()
    config_dict = {"learning_rate": args.learning_rate, "seed": args.seed, "state": "WARNING", "show_progress": False,
                   "checkpoint_dir": os.path.join(work, "saved"), "valid_metric": "NDCG@10"}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    config = Config("HCCF+", args.dataset, config_file_list=[args.protocol] if args.protocol else None,
                    config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))

    results = {name: first_epoch(model_class, config, train_data, valid_data) for name, model_class in VARIANTS.items()}
    steps = sorted({step for step in REPORTED_STEPS if step <= len(train_data)} | {len(train_data)})
    print(f"command: python {shlex.join(sys.argv)}")
    device, versions = environment()
    print(f"dataset {args.dataset} ({config['eval_args']['split']}), seed {args.seed}, learning_rate "
          f"{args.learning_rate}, train_batch_size {config['train_batch_size']}, {len(train_data)} steps per epoch")
    print(f"device {device}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print("| hypergraphs | " + " | ".join(f"loss at step {step}" for step in steps) + " | valid NDCG@10 after epoch 0 |")
    print("|---|" + "---|" * (len(steps) + 1))
    for name, (losses, score) in results.items():
        print(f"| {name} | " + " | ".join(f"{losses[step - 1]:.3f}" for step in steps) + f" | {score:.4f} |")


if __name__ == "__main__":
    main()
