"""What holding a fraction of each user's training interactions out of a LightGCN costs it.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/probes/holdout_graph.py --ratio 0.1 --seed 2020

Trains FastLightGCN (the tuned ml-100k settings, the benchmark protocol) on the training split
without ``holdout_mask``'s interactions and prints validation and test NDCG@10 / P@10. It is the
reason ``lm_holdout_ratio`` trains a second LightGCN for the language model and keeps the one of
all training interactions for the fused score (``recbole_llm/model/graph_stage.py``).
"""

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recbole.data import data_preparation  # noqa: E402
from recbole.data.dataloader import TrainDataLoader  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from recbole_llm.config import Config  # noqa: E402
from recbole_llm.data.holdout import holdout_mask  # noqa: E402
from recbole_llm.model.fastlightgcn import FastLightGCN  # noqa: E402
from recbole_llm.utils import create_dataset  # noqa: E402

PROPERTIES = Path(__file__).resolve().parents[2] / "recbole_llm" / "properties" / "benchmark"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--checkpoint_dir", default="/tmp/holdout_graph_probe")
    args = parser.parse_args(argv)
    config = Config("FastLightGCN", "ml-100k",
                    config_file_list=[str(PROPERTIES / "ml-100k.yaml"), str(PROPERTIES / "ml-100k" / "FastLightGCN.yaml")],
                    config_dict={"seed": args.seed, "checkpoint_dir": args.checkpoint_dir, "show_progress": False})
    init_seed(config["seed"], config["reproducibility"])
    logging.basicConfig(level=logging.ERROR)
    train, valid, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    dataset = train._dataset
    held = holdout_mask(dataset, args.ratio, args.seed, ordered=False)
    kept = dataset.copy(dataset.inter_feat[~held])
    model = FastLightGCN(config, kept)
    trainer = Trainer(config, model)
    began = time.perf_counter()
    _, valid_result = trainer.fit(TrainDataLoader(config, kept, train._sampler, shuffle=True), valid, verbose=False)
    test_result = trainer.evaluate(test, load_best_model=True)
    pick = lambda result: {k: round(float(v), 4) for k, v in result.items() if k in ("ndcg@10", "precision@10")}  # noqa: E731
    print(f"ratio {args.ratio} seed {args.seed}: held out {int(held.sum())} of {len(held)} training interactions; "
          f"valid {pick(valid_result)}, test {pick(test_result)}, {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
