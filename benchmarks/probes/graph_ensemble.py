"""Two trained graph models' scores mixed, the mix chosen on validation: does text add to IDs this way?

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/probes/graph_ensemble.py \\
        <FastLightGCN-best.pth> <TextLightGCN-best.pth> [--weights 0,0.1,...,1]

On amazon-beauty a TextLightGCN over item text alone ranks the test items that have few training
interactions twice as well as the ID LightGCN, and the popular ones worse
(``benchmarks/probes/target_popularity.py``); trained jointly with ID embeddings
(``text_item_id``) it loses most of that tail gain. This probe keeps the two models apart and mixes
their scores, ``(1 - w) * ID + w * text``, with both models' scores on the same scale (each is
cosine / ``softmax_tau`` when both are trained with the softmax). ``w`` is chosen on validation
NDCG@10 alone; test is then reported for the chosen ``w`` and for each model alone, with the
per-user paired comparison of ``benchmarks/compare.py`` (RecBole's evaluator throughout). It also
breaks validation NDCG down by how often each validation target was trained on, so where each model
wins is read from validation alone.

The two checkpoints must come from runs on the same dataset, split and seed (``benchmarks/run.py
--keep-checkpoints`` keeps them).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402

from benchmarks.compare import paired_stats  # noqa: E402
from benchmarks.harness import environment  # noqa: E402
from benchmarks.per_user import capture, per_user_table  # noqa: E402
from benchmarks.probes.target_popularity import bucket_names, targets, training_counts  # noqa: E402
from recbole_llm.quick_start import load_data_and_model  # noqa: E402


class Mixed(torch.nn.Module):
    """``(1 - weight) * first + weight * second`` of two models' full-ranking scores."""

    def __init__(self, first, second):
        super().__init__()
        self.first, self.second, self.weight = first, second, 0.0

    def full_sort_predict(self, interaction):
        if self.weight == 0.0:
            return self.first.full_sort_predict(interaction)
        if self.weight == 1.0:
            return self.second.full_sort_predict(interaction)
        return ((1 - self.weight) * self.first.full_sort_predict(interaction)
                + self.weight * self.second.full_sort_predict(interaction))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="the ID model's best checkpoint")
    parser.add_argument("second", help="the text model's best checkpoint")
    parser.add_argument("--weights", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1")
    parser.add_argument("--metric", default="ndcg@10")
    args = parser.parse_args(argv)
    config, first, _, train_data, valid, test = load_data_and_model(args.first)
    config_b, second, _, _, _, _ = load_data_and_model(args.second)
    for key in ("dataset", "seed", "eval_args"):
        if config[key] != config_b[key]:
            sys.exit(f"error: the checkpoints differ in {key} ({config[key]!r} against {config_b[key]!r}). "
                     "Fix: pass two runs of the same dataset, split and seed.")
    mixed = Mixed(first, second).eval()
    trainer = Trainer(config, first)
    trainer.model = mixed
    weights = [float(w) for w in args.weights.split(",")]
    print(f"# Score mix of {config['model']} and {config_b['model']}: {config['dataset']}, seed {config['seed']}\n")
    print(f"`python benchmarks/probes/graph_ensemble.py {' '.join(sys.argv[1:])}`\n")
    print(f"| w (share of {config_b['model']}) | valid {args.metric} |")
    print("|---|---|")
    valid_scores, valid_users = {}, {}
    with torch.no_grad():
        for w in weights:
            mixed.weight = w
            with capture() as evaluations:
                result = trainer.evaluate(valid, load_best_model=False, show_progress=False)
            valid_scores[w] = result[args.metric]
            users, values = per_user_table(evaluations, result, metrics=(args.metric,))
            valid_users[w] = dict(zip(users, values[args.metric]))
            print(f"| {w:g} | {valid_scores[w]:.4f} |", flush=True)
        chosen = max(weights, key=lambda w: (valid_scores[w], -abs(w - 0.5)))
        print(f"\nChosen on validation: w = {chosen:g}.\n")
        # Validation alone: where each model wins, by how often the validation target was trained on.
        bucket = targets(valid, training_counts(train_data))
        shown = list(dict.fromkeys([0.0, 1.0, chosen]))
        print(f"Validation {args.metric} by the validation target's training interactions:\n")
        print("| bucket | users | " + " | ".join(f"w = {w:g}" for w in shown) + " |")
        print("|---|---|" + "---|" * len(shown))
        for b, name in enumerate(bucket_names()):
            users = [u for u, v in bucket.items() if v == b]
            print(f"| {name} | {len(users)} | " + " | ".join(
                f"{np.mean([valid_users[w][u] for u in users]):.4f}" if users else "-" for w in shown) + " |")
        print()
        per_user = {}
        for w in shown:
            mixed.weight = w
            with capture() as evaluations:
                result = trainer.evaluate(test, load_best_model=False, show_progress=False)
            _, values = per_user_table(evaluations, result)
            per_user[w] = values[args.metric]
            print(f"test, w = {w:g}: {args.metric} {result[args.metric]:.4f}")
    print(f"\n| test {args.metric}: chosen mix against | difference | 95% interval | paired t p | Wilcoxon p |")
    print("|---|---|---|---|---|")
    for w, name in ((0.0, config["model"]), (1.0, config_b["model"])):
        if w == chosen:
            continue
        stats = paired_stats(per_user[chosen], per_user[w])
        print(f"| {name} alone | {stats['diff']:+.4f} | [{stats['ci_low']:+.4f}, {stats['ci_high']:+.4f}] | "
              f"{stats['t_p']:.2g} | {stats['wilcoxon_p']:.2g} |")
    device, versions = environment()
    print(f"\n{device}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))


if __name__ == "__main__":
    main()
