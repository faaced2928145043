"""First-run text embedding time of the "+" baselines' texts, MiniLM against the backbone, side by side.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/text_encoder_time.py --dataset ml-100k \
        --protocol recbole_llm/properties/benchmark/ml-100k.yaml --repeats 3

Each encoder runs in a fresh process (nothing loaded, nothing cached in memory) on the texts a
first LightGCN+ / RLMRec run embeds: every item description and every user's profile text of the
protocol's training split (``recbole_llm/data/text_embedding.py``), with the model's own
``user_text_items`` and ``text_max_tokens``. It times loading the encoder, then the item texts,
then the user texts, through the plugin's own ``load_text_encoder`` and ``embed_texts``. The
embedding cache is not read or written. The default backbone's one-time conversion from the
packaged GGUF file happens before either timing (its fp32 copy is made by a warm-up load), so it is
counted for neither encoder. Writes ``results/text-encoder-time.{json,md}``.

With ``--repeats N`` the two encoders alternate for N rounds, the order flipping each round (MiniLM
first, then the backbone first, ...), so that a slow spell of the machine falls on both. The report
gives each round's ratio and their median: single runs on one idle machine read 8.9x and 10.6x
(``benchmarks/notes/ml-100k.md``, "Text baselines"), so one pair of runs cannot settle a 10x bar.
"""

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import environment  # noqa: E402
from recbole_llm.helpers import atomic_write_text  # noqa: E402

ENCODERS = ("minilm", "backbone")


def first_run_texts(encoder, dataset, protocol, model):
    """(config, item texts, user texts) that a first ``model`` run embeds: the protocol's training split."""
    from recbole.data import create_dataset, data_preparation

    from recbole_llm.config import Config
    from recbole_llm.data import text_embedding
    from recbole_llm.data.item_text import item_descriptions
    from recbole_llm.helpers import option

    config = Config(model, dataset, config_file_list=[protocol], config_dict={"text_encoder": encoder, "state": "WARNING"})
    train, _, _ = data_preparation(config, create_dataset(config))
    items = item_descriptions(train._dataset)
    users = text_embedding.user_profile_texts(train._dataset, items, option(config, "user_text_items", 10))
    return config, items, users


def measure(encoder, dataset, protocol, model):
    """One encoder's first run in this process: seconds to load it, to embed the item and the user texts."""
    from recbole_llm.data import text_embedding
    from recbole_llm.helpers import option

    config, items, users = first_run_texts(encoder, dataset, protocol, model)
    began = time.perf_counter()
    loaded = text_embedding.load_text_encoder(config)
    loaded_at = time.perf_counter()
    item_vectors = text_embedding.embed_texts(items, config, loaded=loaded)
    items_at = time.perf_counter()
    text_embedding.embed_texts(users, config, loaded=loaded)
    users_at = time.perf_counter()
    return {"encoder": encoder, "model_config": model, "text_max_tokens": option(config, "text_max_tokens", 128),
            "user_text_items": option(config, "user_text_items", 10),
            "item_texts": sum(1 for t in items if t), "user_texts": sum(1 for t in users if t),
            "dimension": item_vectors.shape[1], "load_s": loaded_at - began, "item_s": items_at - loaded_at,
            "user_s": users_at - items_at, "total_s": users_at - began,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def round_ratios(runs):
    """Backbone seconds over MiniLM seconds, per round that ran both (runs without a round are round 1)."""
    rounds = {}
    for r in runs:
        rounds.setdefault(r.get("round", 1), {})[r["encoder"]] = r["total_s"]
    return {k: v["backbone"] / v["minilm"] for k, v in sorted(rounds.items()) if set(ENCODERS) <= set(v)}


def markdown(record):
    runs = record["runs"]
    repeated = any(r.get("round", 1) > 1 for r in runs)
    lines = ["# First-run text embedding time: MiniLM against the backbone", "",
             f"Dataset `{record['dataset']}` (protocol `{record['protocol']}`, training split): every item description "
             f"and every user's profile text, as a first {record['model']} run embeds them. Each encoder in a fresh "
             "process; seconds of wall-clock time." + (" The encoders alternate, the order flipping each round."
                                                       if repeated else ""), "",
             "| " + ("round | " if repeated else "") + "encoder | dim | item texts | item s | user texts | user s | "
             "load s | total s | peak RSS MB |",
             "|---|" + ("---|" if repeated else "") + "---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append("| " + (f"{r.get('round', 1)} | " if repeated else "") +
                     f"{r['encoder']} | {r['dimension']} | {r['item_texts']} | {r['item_s']:.1f} | {r['user_texts']} | "
                     f"{r['user_s']:.1f} | {r['load_s']:.1f} | {r['total_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    ratios = round_ratios(runs)
    # Three decimals: a ratio of 9.997 must not read as 10.00 next to a 10x bar.
    if len(ratios) > 1:
        seconds = {e: statistics.median(r["total_s"] for r in runs if r["encoder"] == e) for e in ENCODERS}
        lines += ["", "Backbone over MiniLM, per round: " + ", ".join(f"{v:.3f}" for v in ratios.values()) + ".",
                  f"The median round's backbone run takes {statistics.median(ratios.values()):.3f} times as long as its "
                  f"MiniLM run (median seconds: {seconds['backbone']:.1f} against {seconds['minilm']:.1f})."]
    elif ratios:
        rows = {r["encoder"]: r for r in runs}
        lines += ["", f"The backbone's first run takes {next(iter(ratios.values())):.3f} times as long as MiniLM's "
                      f"({rows['backbone']['total_s']:.1f} s against {rows['minilm']['total_s']:.1f} s)."]
    lines += ["", "## How these figures were made", "", "```bash", record["command"], "```", "",
              f"Device: {record['device']}.  ",
              "Versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()) + ".", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--protocol", default="recbole_llm/properties/benchmark/ml-100k.yaml")
    parser.add_argument("--model", default="LightGCNPlus", help="whose user_text_items and text_max_tokens apply")
    parser.add_argument("--encoders", default=",".join(ENCODERS))
    parser.add_argument("--repeats", type=int, default=1, help="rounds of the encoders, the order flipping each round")
    parser.add_argument("--out", default=str(ROOT / "results" / "text-encoder-time"), help="file stem of .json and .md")
    parser.add_argument("--report-only", action="store_true", help="only rewrite the .md from the .json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.dataset, args.protocol, args.model)))
        return 0
    out = Path(args.out)
    if args.report_only:
        atomic_write_text(out.with_suffix(".md"), markdown(json.loads(out.with_suffix(".json").read_text())))
        return 0
    # Before the runs: the commit is the code they run.
    device, versions = environment()

    # The default backbone is converted from its packaged GGUF file once per machine; do it before timing.
    subprocess.run([sys.executable, "-c", "from recbole_llm.llm import load_backbone; load_backbone({})"],
                   cwd=ROOT, check=True)
    runs = []
    encoders = args.encoders.split(",")
    for round_ in range(1, args.repeats + 1):
        for encoder in (encoders if round_ % 2 else encoders[::-1]):
            child = [sys.executable, __file__, "--child", encoder, "--dataset", args.dataset, "--protocol",
                     args.protocol, "--model", args.model]
            output = subprocess.run(child, cwd=ROOT, check=True, capture_output=True, text=True).stdout
            runs.append({**json.loads(output.strip().splitlines()[-1]), "round": round_})
            print(f"round {round_}, {encoder}: {runs[-1]['total_s']:.1f} s", flush=True)
    argv_shown = argv if argv is not None else sys.argv[1:]
    # How this process was pinned, as the command that reproduces it.
    pinned = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} taskset -c " + \
        ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    record = {"dataset": args.dataset, "protocol": args.protocol, "model": args.model, "runs": runs, "device": device,
              "versions": versions, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": f"{pinned} python benchmarks/text_encoder_time.py " + shlex.join(argv_shown)}
    atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=1))
    atomic_write_text(out.with_suffix(".md"), markdown(record))
    print(f"Wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
