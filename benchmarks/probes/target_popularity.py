"""How often the validation and the test item of a user were seen in training, and how rows score by it.

    python benchmarks/probes/target_popularity.py --dataset amazon-beauty --data_path ../shared/datasets \\
        --rows "FastLightGCN[graph_loss=softmax,learning_rate=0.005]" "TextLightGCN[learning_rate=0.005]"

Under the leave-one-out split (``eval_args`` of ``recbole_llm/properties/benchmark/<dataset>.yaml``) each
user's validation item is the one before the test item, so the test item is one step further from
the training interactions. This probe counts each target item's training interactions (the split's
training set, as RecBole builds it), puts the users in buckets by that count, and gives the share of
validation and test targets in each bucket. With ``--rows`` it adds each row's mean test NDCG@10 in
each bucket, from the per-user files of ``results/<dataset>.json`` (the seeds every row has): where a
text row gains over an ID row on test but not on validation, this says whether the gain is on the
items the graph has little of.
"""

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from recbole.data import data_preparation  # noqa: E402

from benchmarks.compare import per_user_runs  # noqa: E402
from benchmarks.harness import RecordStore, environment  # noqa: E402
from recbole_llm.config import Config  # noqa: E402
from recbole_llm.utils import create_dataset  # noqa: E402

PROPERTIES = ROOT / "recbole_llm" / "properties" / "benchmark"
EDGES = (0, 1, 5, 20, 100)  # bucket lower edges of a target's training interactions


def bucket_names():
    ends = [f"{lo}-{hi - 1}" if hi - lo > 1 else str(lo) for lo, hi in zip(EDGES, EDGES[1:])]
    return ends + [f"{EDGES[-1]}+"]


def training_counts(train):
    """Each item id's number of interactions in the training dataloader ``train``'s split."""
    dataset = train._dataset
    return np.bincount(dataset.inter_feat[dataset.iid_field].numpy(), minlength=dataset.item_num)


def targets(data, counts):
    """``{user token: bucket index}`` of each user's target item in ``data`` (one target a user)."""
    dataset = data._dataset
    users = dataset.inter_feat[dataset.uid_field].numpy()
    items = dataset.inter_feat[dataset.iid_field].numpy()
    tokens = dataset.field2id_token[dataset.uid_field]
    return {tokens[u]: int(np.searchsorted(EDGES, counts[i], side="right") - 1) for u, i in zip(users, items)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--rows", nargs="*", default=[])
    args = parser.parse_args(argv)
    entries = {"data_path": args.data_path} if args.data_path else {}
    config = Config("Pop", args.dataset, config_file_list=[str(PROPERTIES / f"{args.dataset}.yaml")],
                    config_dict=entries)
    logging.basicConfig(level=logging.ERROR)
    train, valid, test = data_preparation(config, create_dataset(config))
    counts = training_counts(train)
    valid_bucket, test_bucket = targets(valid, counts), targets(test, counts)
    names = bucket_names()
    print(f"# Training interactions of each user's target item: {args.dataset}\n")
    print(f"`python benchmarks/probes/target_popularity.py {' '.join(sys.argv[1:])}`\n")
    print("| bucket (training interactions of the target) | validation targets | test targets |")
    print("|---|---|---|")
    for b, name in enumerate(names):
        share_v = np.mean([v == b for v in valid_bucket.values()])
        share_t = np.mean([v == b for v in test_bucket.values()])
        print(f"| {name} | {share_v:.1%} | {share_t:.1%} |")
    if args.rows:
        records = RecordStore(ROOT / "results" / f"{args.dataset}.json").read()
        runs = {row: per_user_runs(records, row) for row in args.rows}
        seeds = sorted(set.intersection(*(set(r) for r in runs.values())))
        if not seeds:
            sys.exit("error: the rows share no seed with per-user files. Fix: name rows of "
                     f"results/{args.dataset}.json that ran on a common seed.")
        print(f"\nMean test NDCG@10 by the test target's bucket, seeds {', '.join(map(str, seeds))} pooled:\n")
        print("| bucket | users | " + " | ".join(f"`{row}`" for row in args.rows) + " |")
        print("|---|---|" + "---|" * len(args.rows))
        for b, name in enumerate(names + ["all"]):
            users = [u for u, v in test_bucket.items() if v == b or name == "all"]
            means = [np.mean([runs[row][s][u]["ndcg@10"] for s in seeds for u in users if u in runs[row][s]])
                     for row in args.rows]
            print(f"| {name} | {len(users)} | " + " | ".join(f"{m:.4f}" for m in means) + " |")
    _, versions = environment()
    print(f"\nCounts from RecBole's training split under the protocol's split; recbole {versions['recbole']}, "
          f"torch {versions['torch']}, commit {versions['recbole_llm_commit']}.")


if __name__ == "__main__":
    main()
