"""Paired comparison of two benchmark rows of one dataset over the test users and seeds they share.

    python benchmarks/compare.py --dataset ml-100k GLTA EASE
    python benchmarks/compare.py --dataset ml-1m --name ml-1m-tmdb "TextLightGCN[...]" EASE
    python benchmarks/compare.py --dataset amazon-beauty GALRec stage1:GALRec
    python benchmarks/compare.py --dataset amazon-beauty --seeds 2024 GLTA EASE

reads both rows' per-user files (``per_user`` in each record of ``results/<dataset>.json``, written
by the harness from RecBole's evaluator) and prints, for each metric, the mean of A and of B, the
mean difference A − B, its 95% bootstrap interval and the p-values of the paired t-test and of the
Wilcoxon signed-rank test (scipy). ``stage1:LABEL`` names GLTA's or GAL-Rec's stage 1 alone in the
records of LABEL (their ``graph_per_user`` files), so a row can be set against its own graph.

The unit is the user. A seed redraws the split (and the model's initialisation), so one user's
figures under different seeds are not independent draws: each user's difference is first averaged
over the seeds both rows ran (with a per-user file), then the interval and the tests are taken over
those per-user differences. A user counts where both rows have it in every shared seed. ``--seeds``
keeps only the seeds it names (one seed's figures before the others have run). The bootstrap
resamples users with replacement (``--resamples``, seeded by ``--bootstrap-seed``).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.per_user import METRICS, read_csv_gz  # noqa: E402


# A label written ``stage1:LABEL`` reads the stage-1 per-user files of LABEL's records.
STAGE1 = "stage1:"


class CompareError(ValueError):
    """The two rows cannot be compared (a missing label, no shared seed with per-user files)."""


def per_user_runs(records, label, key="per_user", root=ROOT):
    """``{seed: {user: {metric: value}}}`` of ``label``'s records that name a per-user file under ``key``."""
    runs = {}
    for record in records:
        if record["label"] == label and record.get(key):
            runs[record["seed"]] = read_csv_gz(Path(root) / record[key])
    return runs


def paired(runs_a, runs_b, metric):
    """(seeds, users, per-user mean of A, of B) over the seeds both have and the users both have in each."""
    seeds = sorted(set(runs_a) & set(runs_b))
    if not seeds:
        raise CompareError("the two rows share no seed with per-user files")
    users = sorted(set.intersection(*(set(runs_a[s]) & set(runs_b[s]) for s in seeds)))
    a = np.array([[runs_a[s][u][metric] for s in seeds] for u in users]).mean(axis=1)
    b = np.array([[runs_b[s][u][metric] for s in seeds] for u in users]).mean(axis=1)
    return seeds, users, a, b


def bootstrap_means(arrays, resamples=10_000, seed=0):
    """Each of ``arrays`` (same length, one value per user) averaged over ``resamples`` draws of users with
    replacement, the same draws for all of them: a list of [resamples] arrays."""
    n = len(arrays[0])
    rng = np.random.default_rng(seed)
    # In chunks: 10,000 resamples of amazon-beauty's 22k users at once would take 1.8 GB of indices.
    chunk = max(1, 2_000_000 // n)
    draws = [rng.integers(0, n, size=(min(chunk, resamples - start), n)) for start in range(0, resamples, chunk)]
    return [np.concatenate([np.asarray(values)[index].mean(axis=1) for index in draws]) for values in arrays]


def paired_stats(a, b, resamples=10_000, seed=0):
    """Mean difference of ``a - b``, its 95% bootstrap interval over users, paired t and Wilcoxon p-values."""
    from scipy import stats

    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    (means,) = bootstrap_means([diff], resamples, seed)
    low, high = np.percentile(means, [2.5, 97.5])
    if np.all(diff == 0):
        t_p = wilcoxon_p = 1.0  # identical figures: no evidence of any difference
    else:
        t_p = float(stats.ttest_rel(a, b).pvalue)
        wilcoxon_p = float(stats.wilcoxon(diff).pvalue)
    return {"users": len(diff), "mean_a": float(np.mean(a)), "mean_b": float(np.mean(b)), "diff": float(diff.mean()),
            "ci_low": float(low), "ci_high": float(high), "t_p": t_p, "wilcoxon_p": wilcoxon_p}


def compare(runs_a, runs_b, metrics=METRICS, resamples=10_000, seed=0):
    """``(seeds, {metric: paired_stats})`` of two rows' per-user runs."""
    out = {}
    seeds = None
    for metric in metrics:
        seeds, _, a, b = paired(runs_a, runs_b, metric)
        out[metric] = paired_stats(a, b, resamples, seed)
    return seeds, out


def format_table(label_a, label_b, seeds, results):
    lines = [f"{label_a} (A) against {label_b} (B): {next(iter(results.values()))['users']} users, "
             f"per-user means over seeds {', '.join(map(str, seeds))}",
             "| metric | A | B | A − B | 95% bootstrap interval | paired t p | Wilcoxon p |",
             "|---|---|---|---|---|---|---|"]
    for metric, r in results.items():
        lines.append(f"| {metric} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | {r['diff']:+.4f} | "
                     f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['t_p']:.3g} | {r['wilcoxon_p']:.3g} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("label_a")
    parser.add_argument("label_b")
    parser.add_argument("--results", default=str(ROOT / "results"), help="folder of <dataset>.json")
    parser.add_argument("--name", default=None,
                        help="the store's file stem where benchmarks/run.py was given --name (e.g. ml-1m-tmdb)")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds to pair over (default: every seed both rows ran)")
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        seeds_kept = None if args.seeds is None else {int(seed) for seed in args.seeds.split(",")}
    except ValueError:
        parser.error(f"--seeds={args.seeds!r} is not a comma-separated list of integer seeds (e.g. --seeds 2023,2024)")
    store = Path(args.results) / f"{args.name or args.dataset}.json"
    if not store.is_file():
        parser.error(f"no records for {args.dataset}: {store} does not exist"
                     + ("" if args.name else "; a store written with benchmarks/run.py --name needs the same --name"))
    records = [r for r in json.loads(store.read_text()) if r.get("dataset") == args.dataset]
    runs = {}
    for label in (args.label_a, args.label_b):
        row, key = (label[len(STAGE1):], "graph_per_user") if label.startswith(STAGE1) else (label, "per_user")
        if not any(r["label"] == row for r in records):
            parser.error(f"{store} has no row {row!r}; its rows: {', '.join(sorted({r['label'] for r in records}))}")
        runs[label] = per_user_runs(records, row, key=key, root=ROOT)
        if not runs[label]:
            parser.error(f"row {row!r} has no stage-1 per-user file (graph_per_user) on any seed: only GLTA's and "
                         "GAL-Rec's records have one, when their stage 1 was evaluated alone" if key == "graph_per_user"
                         else f"row {label!r} has no per-user file on any seed: run it again through benchmarks/run.py "
                         "(with --replace) so its records name one")
    if seeds_kept is not None:
        runs = {label: {seed: run for seed, run in by_seed.items() if seed in seeds_kept} for label, by_seed in runs.items()}
    try:
        seeds, results = compare(runs[args.label_a], runs[args.label_b], resamples=args.resamples, seed=args.bootstrap_seed)
    except CompareError as e:
        parser.error(f"{args.label_a} and {args.label_b}: {e}")
    print(format_table(args.label_a, args.label_b, seeds, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
