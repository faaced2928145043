"""Does a trained graph catch up with a user's latest items by propagating over them? On validation.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/probes/graph_fold_in.py --dataset amazon-beauty \
        --data_path ../shared/datasets --graph_cache_dir results/.amazon-beauty.graph_cache \
        --settings "graph_eval_step=1,graph_model=TextLightGCN,id_tower=0.5,graph_loss=softmax"

Under leave-one-out a general model is built on the training split, so on test it has not seen the
validation item, the one right before the target; SASRec's test input has it. On amazon-beauty every
general model tests at 0.55-0.61 of its validation NDCG@10, SASRec at 0.76. This probe measures,
on validation alone, whether a trained LightGCN-type graph can use interactions it was not trained
on by propagating over them with the same parameters (no gradient step): "folding them in".

The analog of test: GAL-Rec's holdout graph (``lm_holdout_ratio: 0.1`` under ``order: TO``) was
trained without the latest tenth of each user's training items (at least one for a user with two or
more), so on validation it is one item or more behind, as any graph is on test. Scored over all
validation users (NDCG@10, training items masked as RecBole's evaluator masks them):

- ``holdout graph``: as trained, on its own interactions (the stale case);
- ``holdout graph, folded in``: the same parameters, propagated over all training interactions
  (a model of the same class built on the training split, the holdout graph's weights loaded);
- ``full graph``: the graph trained on all training interactions (what folding in could reach).

For TextLightGCN with ``id_tower``, each tower's ranking alone is printed too: the text tower's users
are the mean of their items' text, so a folded-in item reaches their layer 0; the ID tower's users
keep their trained ID rows and reach it through propagation only.

Both graphs come from the cache (``graph_cache_dir``) that benchmark rows of these settings left.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from benchmarks.probes.lm_stage_curve import load_cached_graph, ndcg_at_10, probe_parser, validation_subset  # noqa: E402
from benchmarks.variants import parse_variant  # noqa: E402
from recbole_llm.config import Config  # noqa: E402
from recbole_llm.model.galrec import GALRec  # noqa: E402
from recbole_llm.trainer.graph_stage_trainer import graph_cache_file  # noqa: E402


@torch.no_grad()
def score(graph, users, history, targets, batch=2048):
    """NDCG@10 of ``graph``'s own scores and, for TextLightGCN with ``id_tower``, of each tower's alone (the two
    halves of its embeddings: text, then IDs)."""
    user_e, item_e = graph.forward()
    d = graph.latent_dim
    views = {"mix": slice(None)}
    if user_e.shape[1] == 2 * d:
        views.update({"text tower": slice(0, d), "ID tower": slice(d, 2 * d)})
    totals = dict.fromkeys(views, 0.0)
    for start in range(0, len(users), batch):
        rows = slice(start, start + batch)
        keep = (history[0] >= start) & (history[0] < start + batch)
        mask = (history[0][keep] - start, history[1][keep])
        for name, cols in views.items():
            scores = graph.scores(user_e[users[rows]][:, cols], item_e[:, cols])
            totals[name] += ndcg_at_10(scores, mask, targets[rows]) * len(users[rows])
    return {name: total / len(users) for name, total in totals.items()}


def main(argv=None):
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--settings", default="", help="stage-1 settings, key=value,key=value")
    args = parser.parse_args(argv)
    protocol = args.protocol or f"recbole_llm/properties/benchmark/{args.dataset}.yaml"
    _, overrides = parse_variant(f"x={args.settings}")
    config = Config("GALRec", args.dataset, config_file_list=[protocol],
                    config_dict={"show_progress": False, "state": "WARNING", "data_path": args.data_path,
                                 "graph_cache_dir": args.graph_cache_dir, "seed": args.seed},
                    cmd_args=overrides + ["--score_fusion=residual", "--lm_holdout_ratio=0.1"])
    init_seed(config["seed"], config["reproducibility"])
    train, valid, _ = data_preparation(config, create_dataset(config))
    model = GALRec(config, train._dataset)
    files = {"full": graph_cache_file(config, GALRec), "holdout": graph_cache_file(config, GALRec, holdout=True)}
    for name, path in files.items():
        if not path.is_file():
            raise SystemExit(f"error: no stage-1 cache file {path} for these settings and seed. Fix: run a "
                             "GAL-Rec benchmark row with the same stage-1 settings (and lm_holdout_ratio 0.1) first.")
    users, history, targets = validation_subset(valid, len(valid._dataset.inter_feat), args.seed)
    stale = load_cached_graph(model.holdout_graph, files["holdout"]).eval()
    folded = load_cached_graph(type(model.graph)(model.stage1_config, train._dataset), files["holdout"]).eval()
    full = load_cached_graph(model.graph, files["full"]).eval()
    print(f"command: python benchmarks/probes/graph_fold_in.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"graphs: {files['full'].name} (full), {files['holdout'].name} (holdout); {len(users)} validation users")
    for row, (name, graph) in enumerate((("holdout graph", stale), ("holdout graph, folded in", folded), ("full graph", full))):
        result = score(graph, users, history, targets)
        if not row:
            print("| graph | " + " | ".join(f"validation NDCG@10, {view}" for view in result) + " |")
            print("|---|" + "---|" * len(result))
        print(f"| {name} | " + " | ".join(f"{value:.4f}" for value in result.values()) + " |", flush=True)


if __name__ == "__main__":
    main()
