"""Training seconds per epoch of stock LightGCN and FastLightGCN, same config and seed, side by side.

    python benchmarks/lightgcn_speed.py --dataset ml-100k
    python benchmarks/lightgcn_speed.py --dataset ml-1m --data_path ../shared/datasets --n_layers 3

Both models are built from the same config (RecBole's default RO 8:1:1 split, ``train_batch_size``
4096 by default) and trained through RecBole's ``Trainer._train_epoch``; their epochs alternate,
so a load change on a shared machine hits both alike. Reported per model: the median wall and
process-CPU seconds per epoch, the model's construction time (adjacency included), the first
epoch's loss, and, from one more epoch timed phase by phase, where an epoch's time goes: the
dataloader (batching and negative sampling), forward + loss, backward, optimizer step.
Prints the table, the command and the environment; RecBole's log and checkpoint folders go to a
temporary folder, so the run leaves no file behind.
"""

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import scipy  # noqa: E402
import torch  # noqa: E402
from recbole.data import data_preparation  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from benchmarks.harness import environment  # noqa: E402
from recbole_llm.config import Config  # noqa: E402
from recbole_llm.utils import create_dataset, get_model, get_trainer  # noqa: E402

MODELS = ("LightGCN", "FastLightGCN")


def build(model_name, dataset_name, config_dict):
    """Config, train data and trainer, seeded as ``recbole_llm.quick_start`` seeds them."""
    config = Config(model_name, dataset_name, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    start = time.perf_counter()
    model = get_model(model_name)(config, train_data._dataset).to(config["device"])
    build_s = time.perf_counter() - start
    return train_data, get_trainer(config["MODEL_TYPE"], model_name)(config, model), build_s


def timed_epoch(trainer, train_data, epoch):
    wall, cpu = time.perf_counter(), time.process_time()
    loss = trainer._train_epoch(train_data, epoch)
    return time.perf_counter() - wall, time.process_time() - cpu, loss


def phase_epoch(trainer, train_data):
    """One epoch of the trainer's loop with a clock around each phase (seconds per phase)."""
    phases = dict.fromkeys(("dataloader", "forward+loss", "backward", "optimizer"), 0.0)
    model, optimizer = trainer.model, trainer.optimizer
    model.train()
    batches = iter(train_data)
    while True:
        start = time.perf_counter()
        interaction = next(batches, None)
        phases["dataloader"] += time.perf_counter() - start
        if interaction is None:
            return phases
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = model.calculate_loss(interaction)
        phases["forward+loss"] += time.perf_counter() - start
        start = time.perf_counter()
        loss.backward()
        phases["backward"] += time.perf_counter() - start
        start = time.perf_counter()
        optimizer.step()
        phases["optimizer"] += time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None, help="folder holding <dataset>/ (ml-100k needs none)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per model")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--train_batch_size", type=int, default=4096)
    parser.add_argument("--n_layers", type=int, default=None, help="default: the models' YAML (2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    scratch = tempfile.TemporaryDirectory()
    config_dict = {"seed": args.seed, "train_batch_size": args.train_batch_size, "state": "WARNING",
                   "show_progress": False, "checkpoint_dir": os.path.join(scratch.name, "saved")}
    if args.data_path:
        config_dict["data_path"] = os.path.abspath(args.data_path)
    if args.n_layers is not None:
        config_dict["n_layers"] = args.n_layers

    cwd = os.getcwd()
    os.chdir(scratch.name)  # RecBole's trainer creates log_tensorboard/ in the working folder
    try:
        runs = {name: build(name, args.dataset, config_dict) for name in MODELS}
        times = {name: [] for name in MODELS}
        for epoch in range(args.epochs):
            for name, (train_data, trainer, _) in runs.items():
                init_seed(args.seed + epoch, reproducibility=True)  # the same negative samples for both models
                times[name].append(timed_epoch(trainer, train_data, epoch))
        phases = {name: phase_epoch(trainer, train_data) for name, (train_data, trainer, _) in runs.items()}
    finally:
        os.chdir(cwd)
        scratch.cleanup()

    config = runs[MODELS[0]][1].config
    device, versions = environment()
    command = "python benchmarks/lightgcn_speed.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    print(f"command: {command}")
    print(f"dataset: {args.dataset} ({len(runs[MODELS[0]][0].dataset)} training interactions, "
          f"{len(runs[MODELS[0]][0])} batches of {config['train_batch_size']}), split {config['eval_args']['split']} "
          f"order {config['eval_args']['order']}, "
          f"n_layers {config['n_layers']}, embedding_size {config['embedding_size']}, seed {config['seed']}")
    print(f"device: {device}, torch threads {torch.get_num_threads()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in {**versions, "scipy": scipy.__version__}.items())
          + f", platform {platform.platform()}")
    print()
    header = (f"| model | build s | epoch wall s (median of {args.epochs}) | epoch CPU s | first-epoch loss "
              "| dataloader s | forward+loss s | backward s | optimizer s |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name in MODELS:
        wall = median(t[0] for t in times[name])
        cpu = median(t[1] for t in times[name])
        print(f"| {name} | {runs[name][2]:.2f} | {wall:.2f} | {cpu:.2f} | {times[name][0][2]:.4f} | "
              + " | ".join(f"{s:.2f}" for s in phases[name].values()) + " |")
    stock, fast = (median(t[0] for t in times[name]) for name in MODELS)
    print(f"\nspeed-up per epoch (wall, median): {stock / fast:.2f}x")


if __name__ == "__main__":
    main()
