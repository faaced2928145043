"""Recompute the stage-1-alone test metrics (``graph_test``) of a store's GLTA / GAL-Rec records.

    python benchmarks/stage1_metrics.py --store results/ml-100k.json --labels GLTA

Each record's stage-1 LightGCN of all training interactions is read back from the store's stage-1
cache (``.<store>.graph_cache/``, the file the run itself wrote or read, named as the trainer names it),
evaluated on the run's test split by RecBole's evaluator, and written into the record as
``graph_test``. Needed for the rows run before 52544be: their ``graph_test`` came from the
LightGCN's ``full_sort_predict``, whose cached embeddings were those of stage 1's last validation
epoch rather than of its best one (a run that loaded stage 1 from the cache was not affected).
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from recbole.data import data_preparation  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from benchmarks.harness import RecordStore, graph_cache_dir_of, parse_row  # noqa: E402
from recbole_llm.config import Config  # noqa: E402
from recbole_llm.model.graph_stage import graph_model_class, stage1_config  # noqa: E402
from recbole_llm.trainer.graph_stage_trainer import graph_cache_file  # noqa: E402
from recbole_llm.utils import create_dataset, get_model  # noqa: E402


def stage1_test(record, cache_dir):
    """The test metrics of ``record``'s stage-1 LightGCN, or None when its cache file is not there."""
    model, overrides = parse_row(record["label"])
    config_dict = {"seed": record["seed"], "graph_cache_dir": str(cache_dir), "show_progress": False,
                   "checkpoint_dir": "/tmp/stage1_metrics"}
    config = Config(model, record["dataset"], config_file_list=record["config_files"], config_dict=config_dict,
                    cmd_args=overrides)
    cached = graph_cache_file(config, get_model(model))
    if cached is None or not cached.is_file():
        return None
    init_seed(config["seed"], config["reproducibility"])
    train, _, test = data_preparation(config, create_dataset(config))
    stage1 = stage1_config(config)  # the graph model the run trained (graph_model, id_control)
    graph = graph_model_class(stage1)(stage1, train._dataset)
    graph.load_state_dict(torch.load(cached, map_location="cpu", weights_only=True)["state_dict"], strict=False)
    return {k: float(v) for k, v in Trainer(config, graph).evaluate(test, load_best_model=False).items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="a results/<dataset>.json")
    parser.add_argument("--labels", required=True, help="comma-separated row labels to recompute")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    store = RecordStore(args.store)
    labels = set(args.labels.split(","))
    for record in store.read():
        if record["label"] not in labels:
            continue
        result = stage1_test(record, graph_cache_dir_of(store.path))
        if result is None:
            print(f"{record['label']} seed {record['seed']}: no stage-1 cache file, left as it is")
            continue
        before = (record.get("graph_test") or {}).get("ndcg@10")
        store.add({**record, "graph_test": result})
        print(f"{record['label']} seed {record['seed']}: stage 1 alone test ndcg@10 {result['ndcg@10']:.4f} "
              f"(recorded {before}), precision@10 {result['precision@10']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
