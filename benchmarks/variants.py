"""Side-by-side cost scripts (``glta_epoch_cost.py``, ``galrec_step_cost.py``): variants given as
``name=key=value,...``, each built on the dataset's benchmark protocol as the runner builds it."""

import platform
from pathlib import Path

import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from recbole_llm.config import Config

PROPERTIES = Path(__file__).resolve().parent.parent / "recbole_llm" / "properties" / "benchmark"


def parse_variant(text):
    """``name=key=value,key=value`` -> (name, ``--key=value`` overrides, read as the runner reads them)."""
    name, _, overrides = text.partition("=")
    return name, [f"--{pair}" for pair in overrides.split(",") if pair]


def variant_config(model, dataset, overrides, data_path=None):
    """(config, training data) of ``model`` on ``dataset`` under its benchmark protocol and ``overrides``, seeded."""
    config_dict = {"show_progress": False, "state": "WARNING"}
    if data_path:
        config_dict["data_path"] = data_path
    config = Config(model, dataset, config_file_list=[str(PROPERTIES / f"{dataset}.yaml")],
                    config_dict=config_dict, cmd_args=overrides)
    init_seed(config["seed"], True)
    train, _, _ = data_preparation(config, create_dataset(config))
    return config, train


def print_header(script, argv, dataset):
    """The command and the environment lines printed above each script's table."""
    print(f"command: python benchmarks/{script} {' '.join(argv)}")
    print(f"dataset {dataset}, protocol recbole_llm/properties/benchmark/{dataset}.yaml, "
          f"device cpu ({platform.processor() or 'x86_64'}), {torch.get_num_threads()} torch threads, torch {torch.__version__}")
