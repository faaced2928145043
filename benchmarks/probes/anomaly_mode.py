"""What autograd's anomaly mode costs a stock sequential model: training steps with it on and off, alternating.

    python benchmarks/probes/anomaly_mode.py --dataset amazon-beauty --data_path ../shared/datasets \
        --protocol recbole_llm/properties/benchmark/amazon-beauty.yaml

RecBole 1.2.1's SINE module switches anomaly mode on at import for every sequential model;
``recbole_llm/compat.py`` puts it back. This builds the model (SASRec by default) as the runner
does, then times ``--steps`` full training steps (loss, backward, Adam) on one fixed batch of
``train_batch_size`` sequences, switching the mode on and off between steps, and prints the median
of each and their ratio.
"""

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from recbole.data import data_preparation  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from benchmarks.harness import environment  # noqa: E402
from recbole_llm.config import Config  # noqa: E402
from recbole_llm.utils import create_dataset, get_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="SASRec")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--protocol", default=None, help="benchmark property file (split and metrics)")
    parser.add_argument("--steps", type=int, default=10, help="steps in all, alternating on and off")
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()

    config_dict = {"seed": args.seed, "state": "WARNING", "show_progress": False}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    config = Config(args.model, args.dataset, config_file_list=[args.protocol] if args.protocol else None,
                    config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = get_model(args.model)(config, train_data._dataset).to(config["device"])
    mode_after_build = torch.is_anomaly_enabled()
    optimizer = torch.optim.Adam(model.parameters(), lr=config["learning_rate"])
    batch = next(iter(train_data)).to(config["device"])

    model.train()
    times = {True: [], False: []}
    for step in range(args.steps):
        anomaly = step % 2 == 0
        torch.autograd.set_detect_anomaly(anomaly)
        start = time.perf_counter()
        loss = model.calculate_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times[anomaly].append(time.perf_counter() - start)

    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"command: python {shlex.join(sys.argv)}")
    device, versions = environment()
    print(f"{args.model} on {args.dataset}, seed {args.seed}, one batch of {config['train_batch_size']}; "
          f"anomaly mode after building the model: {mode_after_build}")
    print(f"device {device}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"median step with anomaly mode {on:.2f} s, without {off:.2f} s, ratio {on / off:.2f} "
          f"({len(times[True])} + {len(times[False])} alternating steps)")


if __name__ == "__main__":
    main()
