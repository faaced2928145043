"""Side-by-side benchmark of plugin and stock models under one protocol.

    python benchmarks/run.py --dataset ml-100k --models BPR,LightGCN,EASE \
        --protocol recbole_llm/properties/benchmark/ml-100k.yaml --seeds 2020,2021,2022

writes ``results/<dataset>.json`` (one record per row and seed), ``results/<dataset>.md`` and
``results/<dataset>.png``. Rerunning skips finished (row, seed) pairs; ``--report-only`` just
rebuilds the table and chart from the records. Rows are ``Model`` or ``Model[key=value,...]``.

``--config_files`` adds property files every row reads after the protocol, e.g. ml-1m's TMDB text
(``--config_files=properties/ml-1m-tmdb.yaml --name ml-1m-tmdb``: ``--name`` keeps those records in
their own table). Logs go to ``log/benchmarks/<dataset>/`` for ``results/<dataset>.json`` and beside
any other store (``.<name>.logs/``), so a probe's rerun of a row leaves the row's own log alone.
"""

import argparse
import shlex
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import ROOT, NotAStore, RecordStore, run_rows  # noqa: E402
from benchmarks.report import write_chart, write_markdown  # noqa: E402


def split_rows(text):
    """Split on commas outside brackets: 'A,B[x=1,y=2]' -> ['A', 'B[x=1,y=2]']."""
    rows, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            rows.append(current.strip())
            current = ""
        else:
            current += char
    return [row for row in rows + [current.strip()] if row]


def stop_on_sigterm():
    """Turn SIGTERM into an ordinary exit, so ``run_to_end`` stops the row it is running as well."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--models", default="", help="comma-separated rows: Model or Model[key=value,...]")
    parser.add_argument("--protocol", required=True, help="YAML file with split, metrics and training budget")
    parser.add_argument("--seeds", default="2020", help="comma-separated seeds")
    parser.add_argument("--data_path", default=None, help="folder holding <dataset>/ (ml-100k needs none)")
    parser.add_argument("--out", default=str(ROOT / "results"), help="folder for <dataset>.{json,md,png}")
    parser.add_argument("--name", default=None, help="file stem instead of the dataset name")
    parser.add_argument("--config_files", default="",
                        help="space-separated YAML files every row reads after the protocol (e.g. properties/ml-1m-tmdb.yaml); "
                             "keep their records apart with --name")
    parser.add_argument("--metric", default=None, help="metric of the chart (default ndcg@10, else hit@10)")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the table and chart")
    parser.add_argument("--rerun-tuned", action="store_true",
                        help="train a tuned Model row again even when tune.py already ran its values on that seed")
    parser.add_argument("--replace", action="store_true",
                        help="run the rows again even where the store has them, replacing their records")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep each finished row's checkpoints in .<dataset>.checkpoints/ beside the results")
    args = parser.parse_args(argv)

    out = Path(args.out)
    stem = args.name or args.dataset
    try:
        store = RecordStore(out / f"{stem}.json")
    except NotAStore as e:
        parser.error(f"{e}; restore it from git, or name another file with --out or --name.")
    if not args.report_only:
        command = "python benchmarks/run.py " + shlex.join(a for a in (argv if argv is not None else sys.argv[1:]))
        run_rows(split_rows(args.models), args.dataset, args.protocol, [int(s) for s in args.seeds.split(",")],
                 store, data_path=args.data_path, harness_command=command, keep_checkpoints=args.keep_checkpoints,
                 replace=args.replace, config_files=args.config_files.split(),
                 tuning_store=None if args.rerun_tuned else RecordStore(out / "tuning" / f"{args.dataset}.json"))
    records = [r for r in store.read() if r["dataset"] == args.dataset]
    if not records:
        print(f"No records for {args.dataset} in {store.path}")
        return 1
    protocol_text = (ROOT / args.protocol).read_text() if (ROOT / args.protocol).is_file() else Path(args.protocol).read_text()
    # Hand-written context for a table (how it was run, what a row means) lives beside the suites.
    notes_file = ROOT / "benchmarks" / "notes" / f"{stem}.md"
    notes = notes_file.read_text() if notes_file.is_file() else ""
    write_markdown(out / f"{stem}.md", f"{stem} benchmark", records, protocol_text, notes=notes)
    metric = args.metric or next(m for m in ("ndcg@10", "hit@10", *records[0]["test"]) if m in records[0]["test"])
    write_chart(out / f"{stem}.png", stem, records, metric)
    print(f"Wrote {out / f'{stem}.md'}, {out / f'{stem}.json'} and {out / f'{stem}.png'}")
    return 0


if __name__ == "__main__":
    stop_on_sigterm()
    sys.exit(main())
