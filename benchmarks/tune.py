"""Grid search of one model's hyper-parameters on the validation split, written where the benchmark finds it.

    python benchmarks/tune.py --dataset ml-100k --model LightGCN --protocol recbole_llm/properties/benchmark/ml-100k.yaml \
        --grid learning_rate=0.0005,0.001,0.002 --grid reg_weight=1e-5,1e-4,1e-3

Every combination trains once (``--seed``, default 2020) through the benchmark harness; the one
with the best validation score (the protocol's ``valid_metric``) is written to
``recbole_llm/properties/benchmark/<dataset>/<Model>.yaml`` with the command in its header, which
``run.py`` then adds to every run of that model on that dataset. The runs are kept in
``results/tuning/<dataset>.json`` (resumable like the benchmark) and tabulated in
``results/tuning/<dataset>.md``. Test scores are recorded but never used for the choice.
"""

import argparse
import itertools
import os
import shlex
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import ROOT, TUNED_DIR, NotAStore, RecordStore, row_label, row_values, run_rows  # noqa: E402
from benchmarks.report import write_markdown  # noqa: E402
from recbole_llm.helpers import atomic_write_text  # noqa: E402


def grid_rows(model, grid):
    """``{"lr": ["0.1", "0.2"]}`` -> rows ``Model[lr=0.1]``, ``Model[lr=0.2]`` (the tuned file is not applied)."""
    names = list(grid)
    return [row_label(model, dict(zip(names, values))) for values in itertools.product(*(grid[n] for n in names))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--grid", action="append", required=True, help="key=v1,v2,... (repeatable)")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--out", default=str(ROOT / "results" / "tuning"))
    args = parser.parse_args(argv)

    grid = {}
    for item in args.grid:
        key, _, values = item.partition("=")
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    protocol = yaml.safe_load(Path(args.protocol).read_text())
    valid_key = protocol["valid_metric"].lower()

    try:
        store = RecordStore(Path(args.out) / f"{args.dataset}.json")
    except NotAStore as e:
        parser.error(f"{e}; restore it from git, or name another folder with --out.")
    tuned_file = TUNED_DIR / args.dataset / f"{args.model}.yaml"
    if tuned_file.is_file():
        # Tuning runs must not inherit an earlier choice: set it aside, restore it if the grid fails.
        previous = tuned_file.read_text()
        tuned_file.unlink()
    else:
        previous = None
    command = "python benchmarks/tune.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    rows = grid_rows(args.model, grid)
    try:
        run_rows(rows, args.dataset, args.protocol, [args.seed], store, data_path=args.data_path, harness_command=command)
    except BaseException:
        if previous is not None:
            atomic_write_text(tuned_file, previous)
        raise

    runs = [r for r in store.read() if r["label"] in rows and r["seed"] == args.seed]
    best = max(runs, key=lambda r: r["valid"][valid_key])
    chosen = row_values(best["label"])
    # The scores stay in the tuning table beside the runs; a property file says only where they are.
    table = os.path.relpath(Path(args.out).resolve() / f"{args.dataset}.md", ROOT)
    header = [f"Tuned on the validation split ({valid_key}, seed {args.seed}) by:", f"  {command}",
              f"Every grid point's validation score: {table}"]
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(
        {k: yaml.safe_load(v) for k, v in chosen.items()}, sort_keys=False)
    atomic_write_text(tuned_file, text)
    print(f"Best {best['label']} (valid {valid_key} {best['valid'][valid_key]:.4f}); wrote {os.path.relpath(tuned_file, ROOT)}")

    dataset_records = [r for r in store.read() if r["dataset"] == args.dataset]
    write_markdown(Path(args.out) / f"{args.dataset}.md", f"{args.dataset} tuning runs (one seed each; choose by valid)",
                   dataset_records, Path(args.protocol).read_text(), split="valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
