"""Turn benchmark records into ``results/<name>.md`` (mean ± std over seeds) and a PNG chart."""

import argparse
import json
import re
import sys
from collections import OrderedDict
from pathlib import Path
from statistics import mean, stdev

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from recbole_llm.helpers import atomic_write, atomic_write_text  # noqa: E402
from recbole_llm.utils import MODEL_ALIASES  # noqa: E402

COST_COLUMNS = [
    ("best epoch", "best_epoch", "{:.0f}"),
    ("train s/epoch", "train_s_per_epoch", "{:.2f}"),
    ("eval s", "eval_s", "{:.2f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
]


def group_by_label(records):
    """Records grouped by row label: models in first-seen order, each model's plain row before its variants."""
    groups = OrderedDict()
    for record in records:
        groups.setdefault(record["label"], []).append(record)
    model_of = {label: label.split("[", 1)[0] for label in groups}
    model_order = {}
    for label in groups:
        model_order.setdefault(model_of[label], len(model_order))
    ordered = sorted(groups.items(), key=lambda item: (model_order[model_of[item[0]]], item[0] != model_of[item[0]]))
    return OrderedDict(ordered)


def mean_std(values):
    return mean(values), (stdev(values) if len(values) > 1 else 0.0)


def _cell(values, fmt, bold=False):
    m, s = mean_std(values)
    text = fmt.format(m) + (f" ± {fmt.format(s)}" if len(values) > 1 else "")
    return f"**{text}**" if bold else text


def _params(record):
    total, trainable = record["params_total"], record["params_trainable"]
    return f"{total / 1e6:.2f}M" if total == trainable else f"{total / 1e6:.2f}M ({trainable / 1e6:.2f}M trainable)"


def markdown_table(records, metrics=None, split="test"):
    """Rows = labels, columns = ``split`` ("test" or "valid") metrics (best mean in bold) then costs."""
    groups = group_by_label(records)
    metrics = metrics or list(next(iter(groups.values()))[0][split])
    best = {m: max(mean(r[split][m] for r in rs) for rs in groups.values() if all(m in r[split] for r in rs))
            for m in metrics}
    header = ["model", "seeds"] + metrics + [name for name, _, _ in COST_COLUMNS] + ["params"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, rs in groups.items():
        cells = [label, str(len(rs))]
        for m in metrics:
            values = [r[split][m] for r in rs if m in r[split]]
            cells.append(_cell(values, "{:.4f}", bold=len(groups) > 1 and mean(values) == best[m]) if values else "")
        cells += [_cell([r[key] for r in rs], fmt) for _, key, fmt in COST_COLUMNS]
        cells.append(_params(rs[0]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_table(records):
    """Per-stage seconds per epoch for multi-stage models (empty if none)."""
    rows = [(label, rs) for label, rs in group_by_label(records).items() if rs[0].get("stage_s_per_epoch")]
    if not rows:
        return ""
    stages = list(OrderedDict.fromkeys(s for _, rs in rows for s in rs[0]["stage_s_per_epoch"]))
    lines = ["| model | " + " | ".join(f"{s} s/epoch" for s in stages) + " |", "|" + "---|" * (len(stages) + 1)]
    for label, rs in rows:
        cells = [_cell([r["stage_s_per_epoch"][s] for r in rs if s in r["stage_s_per_epoch"]], "{:.2f}")
                 if s in rs[0]["stage_s_per_epoch"] else "" for s in stages]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage1_table(records, metrics=("ndcg@10", "precision@10")):
    """What the language model adds over its own stage-1 LightGCN, per row of GLTA / GAL-Rec records that
    hold ``graph_test``: test metric of the final model minus stage 1 alone, per seed and mean ± std."""
    rows = [(label, rs) for label, rs in group_by_label(records).items()
            if all(r.get("graph_test") for r in rs)]
    metrics = [m for m in metrics if rows and all(m in r["test"] and m in r["graph_test"] for _, rs in rows for r in rs)]
    if not metrics:
        return ""
    header = ["model", "seeds"] + [f"{m}: final − stage 1 per seed" for m in metrics] + [f"{m} mean ± std" for m in metrics]
    lines = ["| " + " | ".join(header + ["above on every seed"]) + " |", "|" + "---|" * (len(header) + 1)]
    for label, rs in rows:
        rs = sorted(rs, key=lambda r: r["seed"])
        gains = {m: [r["test"][m] - r["graph_test"][m] for r in rs] for m in metrics}
        cells = [label, ", ".join(str(r["seed"]) for r in rs)]
        cells += [", ".join(f"{g:+.4f}" for g in gains[m]) for m in metrics]
        cells += [f"{mean_std(gains[m])[0]:+.4f}" + (f" ± {mean_std(gains[m])[1]:.4f}" if len(rs) > 1 else "") for m in metrics]
        cells.append("yes" if all(g > 0 for m in metrics for g in gains[m]) else "no")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The rows whose defaults use a language model or its text vectors: each is compared with the best other row,
# which is so never a model that reads text (TextLightGCN's items are MiniLM's vectors).
LANGUAGE_MODELS = ("GLTA", "GALRec", "LightGCNPlus", "HCCFPlus", "RLMRecCon", "RLMRecGen", "TextLightGCN")

# The benchmark protocol sets ``epochs`` and ``eval_step`` for every model (to early stopping), over a model
# file's own budget (GAL-Rec's 18 epochs validated every 3): a default row may carry its budget in its label.
# These two of the run's budget keys (``recbole_llm.trainer.run_state.BUDGET_KEYS``, which change no run
# folder) are the ones the protocol overrides; a label with another of them is not a default row.
PROTOCOL_BUDGET_KEYS = frozenset({"epochs", "eval_step"})


def is_default_row(label, model):
    """Whether ``label`` is ``model`` at its defaults: its name alone, or with an epoch budget."""
    from benchmarks.harness import parse_row, row_values

    name = parse_row(label)[0]
    return MODEL_ALIASES.get(name, name) == model and set(row_values(label)) <= PROTOCOL_BUDGET_KEYS


def comparison_table(records, metric="ndcg@10", root=ROOT, resamples=10_000):
    """Paired tests over test users (``benchmarks/compare.py``) of each row against its id control
    (``control``: the same row without any text, where the control's records are here), and of each
    language-model row's defaults against its own stage 1 (GLTA, GAL-Rec) and the best row without a
    language model.

    Only rows whose records name per-user files take part. The best row without a language model
    is the one of them with the highest mean validation ``metric``, so the test split chooses nothing.
    """
    from benchmarks.compare import compare, per_user_runs

    groups = {label: rs for label, rs in group_by_label(records).items() if any(r.get("per_user") for r in rs)}
    model_of = {label: MODEL_ALIASES.get(rs[0]["model"], rs[0]["model"]) for label, rs in groups.items()}
    defaults = [label for label in groups if model_of[label] in LANGUAGE_MODELS and is_default_row(label, model_of[label])]
    others = [label for label in groups if model_of[label] not in LANGUAGE_MODELS]
    best = max(others, key=lambda label: mean(r["valid"].get(metric, float("-inf")) for r in groups[label]), default=None)
    # Any row whose id control ran (a default row, or one with an epoch budget or another setting) meets it.
    controlled = {label: control for label, rs in groups.items()
                  if (control := next((r["control"] for r in rs if r.get("control")), None)) in groups}
    pairs = []
    for label in dict.fromkeys(defaults + list(controlled)):
        runs = per_user_runs(records, label, root=root)
        if label in controlled:
            pairs.append((label, controlled[label], runs, per_user_runs(records, controlled[label], root=root)))
        if label not in defaults:
            continue
        stage1 = per_user_runs(records, label, key="graph_per_user", root=root)
        if stage1:
            pairs.append((label, f"{label} stage 1", runs, stage1))
        if best is not None:
            pairs.append((label, best, runs, per_user_runs(records, best, root=root)))
    if not pairs:
        return ""
    lines = [f"| A | B | seeds | users | {metric} A | {metric} B | A − B | 95% bootstrap interval | paired t p | Wilcoxon p |",
             "|" + "---|" * 10]
    for label_a, label_b, runs_a, runs_b in pairs:
        if not set(runs_a) & set(runs_b):
            continue
        seeds, results = compare(runs_a, runs_b, metrics=[metric], resamples=resamples)
        r = results[metric]
        lines.append(f"| {label_a} | {label_b} | {', '.join(map(str, seeds))} | {r['users']} | {r['mean_a']:.4f} | "
                     f"{r['mean_b']:.4f} | {r['diff']:+.4f} | [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | "
                     f"{r['t_p']:.2g} | {r['wilcoxon_p']:.2g} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def write_markdown(path, title, records, protocol_text, notes="", split="test"):
    first = records[0]
    commands = list(OrderedDict.fromkeys(r["harness_command"] for r in records if r.get("harness_command")))
    devices = sorted({r["device"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    parts = [
        f"# {title}",
        "",
        f"Dataset `{first['dataset']}`, {split} split, mean ± std over seeds {seeds}; best mean per metric in bold. "
        "Costs: median training seconds per epoch, seconds of the test evaluation, peak resident memory of "
        "the run's process. Every run used the same protocol file and evaluator; per-model tuned "
        "hyper-parameters, where used, are in `recbole_llm/properties/benchmark/<dataset>/<Model>.yaml`.",
        "",
        markdown_table(records, split=split),
        "",
    ]
    stages = stage_table(records)
    if stages:
        parts += ["Per-stage training time of multi-stage models:", "", stages, ""]
    over_stage1 = stage1_table(records)
    if over_stage1:
        parts += ["What the language model adds over its own stage-1 LightGCN (test; each record's `graph_test` is "
                  "stage 1 alone, evaluated once when it was frozen):", "", over_stage1, ""]
    compared = comparison_table(records) if split == "test" else ""
    if compared:
        parts += ["What the language model adds, user by user (test; `python benchmarks/compare.py --dataset "
                  f"{first['dataset']} A B` for all three metrics). Each user's A − B is averaged over the seeds both "
                  "rows ran, then the interval (10,000 resamples of users) and the tests are taken over users; B is the "
                  "row's id control (the same row without any text: what text and the language model add), its own "
                  "stage 1, or the row without a language model that validates best among those with per-user files:",
                  "", compared, ""]
    if notes:
        parts += [notes.strip(), ""]
    parts += ["## How these figures were made", "", "Regenerate with:", "", "```bash", *commands, "```", "",
              "One row and seed alone, e.g.:", "", "```bash", first["command"], "```", "",
              f"Device: {'; '.join(devices)}.  ", "Versions: " + ", ".join(f"{k} {v}" for k, v in first["versions"].items()) + ".",
              "", "Protocol:", "", "```yaml", protocol_text.strip(), "```", ""]
    atomic_write_text(path, "\n".join(parts))


def write_chart(path, title, records, metric):
    """Two panels: ``metric`` per model (mean ± std), and ``metric`` against total training time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(label, rs) for label, rs in group_by_label(records).items() if all(metric in r["test"] for r in rs)]
    groups.sort(key=lambda g: mean(r["test"][metric] for r in g[1]))
    labels = [label for label, _ in groups]
    stats = [mean_std([r["test"][metric] for r in rs]) for _, rs in groups]
    times = [mean(r["train_s_total"] for r in rs) for _, rs in groups]

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.45 * len(groups) + 2.5))
    left.barh(labels, [m for m, _ in stats], xerr=[s for _, s in stats], color="tab:blue", alpha=0.8)
    for y, (m, _) in enumerate(stats):
        left.text(m, y, f" {m:.4f}", va="center", fontsize=8)
    left.set_xlabel(f"test {metric}")
    left.set_title(f"{title}: accuracy")
    right.scatter(times, [m for m, _ in stats], color="tab:orange")
    for t, (m, _), label in zip(times, stats, labels):
        right.annotate(label, (t, m), fontsize=8, xytext=(4, 2), textcoords="offset points")
    right.set_xscale("log")
    right.set_xlabel("total training seconds (log scale)")
    right.set_ylabel(f"test {metric}")
    right.set_title("accuracy against training time")
    right.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)


OVERVIEW_METRIC = "ndcg@10"
# The README's overview table stands between these two lines; ``--readme`` rewrites what is between them.
OVERVIEW_BEGIN = "<!-- overview table: python benchmarks/report.py --readme -->"
OVERVIEW_END = "<!-- end of overview table -->"


def _dataset_records(results_dir):
    """Records of every ``results/<dataset>.json`` whose records are all of that dataset (not speed studies)."""
    stores = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        records = json.loads(path.read_text())
        if isinstance(records, list) and records and all(r.get("dataset") == path.stem for r in records):
            stores[path.stem] = records
    return stores


def recbole_test(record):
    """The record's test figures as RecBole tests a general model, on the training history alone: a run with
    ``fold_in_valid`` (GLTA, GAL-Rec) keeps those under ``test_unfolded``."""
    return record.get("test_unfolded") or record["test"]


def _overview_cell(records, metric):
    """A model's plain row if it has one, else its variant with the best validation score (marked †).

    Variants are compared on the seeds they all ran, where they share any: a row with more seeds
    would otherwise be judged on seeds the others never saw. Every cell is one protocol, RecBole's
    (``recbole_test``): the figures of a row that read the validation items at test are in its table.
    """
    groups = group_by_label(r for r in records if metric in r["test"])
    model = records[0]["model"]
    plain = [rs for label, rs in groups.items() if MODEL_ALIASES.get(label, label) == model]
    if plain:
        return _cell([recbole_test(r)[metric] for r in plain[0]], "{:.4f}")
    shared = set.intersection(*({r.get("seed") for r in rs} for rs in groups.values()))

    def validation(rs):
        compared = [r for r in rs if r.get("seed") in shared] or rs
        return mean(r["valid"].get(metric, float("-inf")) for r in compared)

    chosen = max(groups.values(), key=validation)
    return _cell([recbole_test(r)[metric] for r in chosen], "{:.4f}") + " †"


def overview_table(results_dir=ROOT / "results", metric=OVERVIEW_METRIC):
    """Models (rows) by datasets (columns): test ``metric`` of each model's committed benchmark rows.

    A cell is the model's plain row (mean ± std over its seeds) or, where it only has variants (a
    tuned learning rate, an epoch budget), the variant with the best validation score, marked †.
    Plugin models come first, then stock ones, each group alphabetical.
    """
    stores = _dataset_records(results_dir)
    plugin = {p.stem for p in (ROOT / "recbole_llm" / "model").glob("*.py")}
    by_model = OrderedDict()
    for dataset, records in stores.items():
        for record in records:
            model = MODEL_ALIASES.get(record["model"], record["model"])
            by_model.setdefault(model, {}).setdefault(dataset, []).append({**record, "model": model})
    paper_name = {name: alias for alias, name in MODEL_ALIASES.items()}
    lines = ["| model | " + " | ".join(stores) + " |", "|" + "---|" * (len(stores) + 1)]
    for model in sorted(by_model, key=lambda m: (m.lower() not in plugin, m.lower())):
        cells = [_overview_cell(by_model[model][d], metric) if d in by_model[model] else "" for d in stores]
        lines.append(f"| {paper_name.get(model, model)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_with_overview(readme_text, table):
    """``readme_text`` with the text between the overview markers replaced by ``table``."""
    pattern = re.compile(re.escape(OVERVIEW_BEGIN) + r"\n.*?" + re.escape(OVERVIEW_END), re.S)
    if not pattern.search(readme_text):
        raise ValueError(f"README.md has no overview table between {OVERVIEW_BEGIN!r} and {OVERVIEW_END!r}")
    return pattern.sub(lambda _: f"{OVERVIEW_BEGIN}\n{table}\n{OVERVIEW_END}", readme_text)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Print the models x datasets overview table of results/*.json.")
    parser.add_argument("--metric", default=OVERVIEW_METRIC)
    parser.add_argument("--readme", action="store_true", help="write it into README.md between its markers")
    args = parser.parse_args(argv)
    table = overview_table(metric=args.metric)
    if args.readme:
        readme = ROOT / "README.md"
        text = readme_with_overview(readme.read_text(), table)
        atomic_write_text(readme, text)
    else:
        print(table)


if __name__ == "__main__":
    main()
