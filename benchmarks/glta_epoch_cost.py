"""Seconds per stage-3 epoch and memory of GLTA configurations, side by side in one process.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/glta_epoch_cost.py --epochs 3 \
        --variant "old=score_fusion=none,lm_holdout_ratio=0" --variant "new="

Each variant is a set of ``key=value`` overrides of GLTA's defaults on the benchmark protocol of the
dataset. All variants are built first (the resident memory each adds is its footprint: the
backbone, the graphs, the holdout bookkeeping); then their stage-3 epochs (``user_alignment_loss``,
backward and an AdamW step on every batch of ``lm_users``, as ``GLTATrainer`` runs them) alternate,
so that the machine's drift touches every variant alike, and the medians are compared. Stage 1 is
not trained: an epoch costs the same with any graph embeddings. ``--score`` also times, after each
epoch, the fused scores of every user over all items without a gradient (what a validation pass runs,
less RecBole's metric bookkeeping), for variants whose scoring differs (``llm_dtype``, the history).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import torch  # noqa: E402

from benchmarks.variants import parse_variant, print_header, variant_config  # noqa: E402
from recbole_llm.model.glta import GLTA  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--variant", action="append", required=True, help="name=key=value,key=value")
    parser.add_argument("--score", action="store_true", help="also time scoring every user (a validation pass)")
    args = parser.parse_args(argv)
    process = psutil.Process()
    variants = {}
    for text in args.variant:
        name, overrides = parse_variant(text)
        config, train = variant_config("GLTA", args.dataset, overrides, args.data_path)
        before = process.memory_info().rss
        model = GLTA(config, train._dataset)
        model.train()
        optimizer = torch.optim.AdamW(model.user_alignment_parameters(), lr=config["user_alignment_lr"])
        footprint = (process.memory_info().rss - before) / 2 ** 20
        variants[name] = dict(model=model, optimizer=optimizer, config=config, footprint_mb=footprint, seconds=[],
                              score_seconds=[])

    for _ in range(args.epochs):
        for name, v in variants.items():
            model, optimizer, batch = v["model"], v["optimizer"], v["config"]["user_alignment_batch_size"]
            users = model.lm_users[torch.randperm(len(model.lm_users))]
            start = time.perf_counter()
            for first in range(0, len(users), batch):
                optimizer.zero_grad(set_to_none=True)
                model.user_alignment_loss({model.USER_ID: users[first:first + batch]}).backward()
                optimizer.step()
            v["seconds"].append(time.perf_counter() - start)
            if args.score:
                v["score_seconds"].append(score_every_user(model, max(1, v["config"]["eval_batch_size"] // model.n_items)))

    names = list(variants)
    base = statistics.median(variants[names[0]]["seconds"])
    print_header("glta_epoch_cost.py", argv if argv is not None else sys.argv[1:], args.dataset)
    score_base = statistics.median(variants[names[0]]["score_seconds"]) if args.score else None
    scored = f" scoring every user, s (median) | ratio to {names[0]} |" if args.score else ""
    print(f"| variant | overrides | users per epoch | stage-3 s/epoch (median of {args.epochs}) | ratio to {names[0]} |"
          f"{scored} resident memory the model adds |")
    print("|---|---|---|---|---|---|" + ("---|---|" if args.score else ""))
    for text, (name, v) in zip(args.variant, variants.items()):
        median = statistics.median(v["seconds"])
        score = ""
        if args.score:
            score_median = statistics.median(v["score_seconds"])
            score = f" {score_median:.1f} | {score_median / score_base:.2f} |"
        print(f"| {name} | {text.partition('=')[2] or 'defaults'} | {len(v['model'].lm_users)} | {median:.1f} | "
              f"{median / base:.2f} |{score} {v['footprint_mb']:.0f} MB |")


@torch.no_grad()
def score_every_user(model, batch_size):
    """Seconds to score every user over all items, in eval mode, ``batch_size`` users at a time (as RecBole's
    full-sort evaluation batches them: ``eval_batch_size // n_items``)."""
    model.eval()
    users = torch.arange(1, model.n_users)
    start = time.perf_counter()
    for first in range(0, len(users), batch_size):
        model.full_sort_predict({model.USER_ID: users[first:first + batch_size]})
    seconds = time.perf_counter() - start
    model.train()
    return seconds


if __name__ == "__main__":
    main()
