"""What GAL-Rec's language-model stage learns in its first steps, variant by variant, on validation.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/probes/lm_stage_curve.py --dataset amazon-beauty \
        --data_path ../shared/datasets --graph_cache_dir results/.amazon-beauty.graph_cache \
        --steps 400 --eval_every 100 --eval_users 2048 \
        --variant "defaults=" --variant "tied=gllm_head=tied"

A cheap reading of which LM-stage settings let the language model learn what comes next, before a
benchmark row spends hours on one of them. Every variant runs GAL-Rec on the dataset's benchmark
protocol with ``score_fusion=validated,lm_holdout_ratio=0`` added (the LM trained alone on every
prefix, so no holdout graph is needed) and its overrides on top; its stage 1 is loaded from the
graph cache (``graph_cache_dir``), where a benchmark row of the same stage-1 settings and seed left it
(the probe refuses to train one). Each variant then trains ``steps`` steps of ``prompt_batch_size``
users (``calculate_loss``, backward, Adam, as ``GALRecTrainer`` runs them) and, every ``eval_every``
steps, scores ``eval_users`` validation users drawn at random (seeded, the same for every variant):

- ``lm``: the LM head's logits alone (``lm_logits``), the language model's own ranking;
- ``graph``: stage 1 alone (the same for every variant, a check);
- ``fused``: ``graph / std + w * lm / std`` at the best ``w`` of ``FUSION_WEIGHTS`` on these users,
  what ``score_fusion: validated`` would deliver if it stopped here.

NDCG@10 of a leave-one-out split (one validation item per user), with the user's training items
masked as RecBole's full-sort evaluator masks them. It reads validation only: it chooses what to run,
never a test figure. A probe, not a benchmark: the users are a fixed subset, and a variant's curve
over a few hundred steps says how fast it learns, not where it ends.
"""

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from benchmarks.variants import parse_variant  # noqa: E402
from recbole_llm.config import Config  # noqa: E402
from recbole_llm.model.galrec import GALRec  # noqa: E402
from recbole_llm.model.score_fusion import FUSION_WEIGHTS  # noqa: E402
from recbole_llm.trainer.graph_stage_trainer import graph_cache_file  # noqa: E402

BASE = ["--score_fusion=validated", "--lm_holdout_ratio=0"]


def build(dataset, protocol, overrides, seed, data_path, cache_dir):
    config = Config("GALRec", dataset, config_file_list=[protocol],
                    config_dict={"show_progress": False, "state": "WARNING", "data_path": data_path,
                                 "graph_cache_dir": cache_dir, "seed": seed},
                    cmd_args=BASE + overrides)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, _ = data_preparation(config, create_dataset(config))
    model = GALRec(config, train._dataset)
    cached = graph_cache_file(config, GALRec)
    if cached is None or not cached.is_file():
        raise SystemExit(f"error: no stage-1 cache file {cached} for these settings and seed. Fix: run a benchmark row "
                         "with the same stage-1 settings first, or point --graph_cache_dir at its cache.")
    load_cached_graph(model.graph, cached)
    model.freeze_graph()
    model.init_head_from_item_tokens()
    model.train()
    return config, model, valid, cached


def load_cached_graph(graph, path):
    """``graph``'s parameters from the stage-1 cache file ``path`` (what a benchmark row of its settings left)."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    with torch.no_grad():
        for name, p in graph.named_parameters():
            p.copy_(state[name])
    return graph


def validation_subset(valid, n_users, seed):
    """(users, training-history mask (rows, items), validation item per user) of ``n_users`` validation users
    drawn at random (seeded): the loader's first users are not typical (on amazon-beauty its first 2,048 validate
    at a third of the whole split's NDCG)."""
    users, rows, items, targets = [], [], [], []
    seen = 0
    for interaction, history, positive_u, positive_i in valid:
        batch_users = interaction["user_id"]
        users.append(batch_users)
        rows.append(history[0] + seen)
        items.append(history[1])
        target = torch.full((len(batch_users),), -1, dtype=torch.long)
        target[positive_u] = positive_i
        targets.append(target)
        seen += len(batch_users)
    users, targets, rows, items = torch.cat(users), torch.cat(targets), torch.cat(rows), torch.cat(items)
    pick = torch.randperm(len(users), generator=torch.Generator().manual_seed(seed))[:n_users].sort().values
    new_row = torch.full((len(users),), -1, dtype=torch.long)
    new_row[pick] = torch.arange(len(pick))
    keep = new_row[rows] >= 0
    return users[pick], (new_row[rows[keep]], items[keep]), targets[pick]


def ndcg_at_10(scores, history, targets):
    scores = scores.clone()
    scores[history] = -math.inf
    target_score = scores.gather(1, targets.unsqueeze(1))
    rank = (scores > target_score).sum(1)
    return torch.where(rank < 10, 1 / torch.log2(rank.float() + 2), torch.zeros(())).mean().item()


@torch.no_grad()
def evaluate(model, users, history, targets, batch=64):
    model.eval()
    lm, graph = [], []
    for start in range(0, len(users), batch):
        part = users[start:start + batch]
        lm.append(model.lm_logits(part).view(len(part), -1))
        graph.append(model.stage1_scores(part))
    model.train()
    lm, graph = torch.cat(lm), torch.cat(graph)
    fused = {w: ndcg_at_10(graph / graph[:, 1:].std() + w * lm / lm[:, 1:].std(), history, targets)
             for w in FUSION_WEIGHTS}
    best = max(fused, key=fused.get)
    return {"lm": ndcg_at_10(lm, history, targets), "graph": fused[0.0], "fused": fused[best], "w": best}


def probe_parser(description):
    """The arguments every probe on a cached stage 1 takes: the dataset, its protocol, the cache and the seed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--protocol", default=None, help="default: the dataset's benchmark protocol")
    parser.add_argument("--graph_cache_dir", required=True)
    parser.add_argument("--seed", type=int, default=2020)
    return parser


def train_lm(model, config, seed, steps, every, report):
    """``steps`` steps of ``prompt_batch_size`` users (``calculate_loss``, backward, Adam, as ``GALRecTrainer`` runs
    them), over the training users in one seeded order; ``report(step, seconds, losses)`` every ``every`` steps
    and at the end, with the training seconds so far and the losses since the last report."""
    optimizer = torch.optim.Adam(model.graph_aware_parameters(), lr=config["learning_rate"])
    batch = config["prompt_batch_size"]
    order = model.lm_users[torch.randperm(len(model.lm_users), generator=torch.Generator().manual_seed(seed))]
    losses, seconds = [], 0.0
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            report(step, seconds, losses)
            losses = []
        if step == steps:
            break
        start = (step * batch) % len(order)
        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = model.calculate_loss({model.USER_ID: order[start:start + batch]})
        loss.backward()
        optimizer.step()
        seconds += time.perf_counter() - began
        losses.append(loss.item())


def main(argv=None):
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--eval_every", type=int, default=100)
    parser.add_argument("--eval_users", type=int, default=2048)
    parser.add_argument("--variant", action="append", required=True, help="name=key=value,key=value")
    args = parser.parse_args(argv)
    protocol = args.protocol or f"recbole_llm/properties/benchmark/{args.dataset}.yaml"
    print(f"command: python benchmarks/probes/lm_stage_curve.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; validation NDCG@10 of "
          f"{args.eval_users} random validation users; every variant adds {','.join(b[2:] for b in BASE)}")
    print("| variant | step | seconds | loss (mean since last) | lm | graph | fused (best w) |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for text in args.variant:
        name, overrides = parse_variant(text)
        config, model, valid, cached = build(args.dataset, protocol, overrides, args.seed, args.data_path,
                                             args.graph_cache_dir)
        print(f"<!-- {name}: stage 1 {cached.name} -->", flush=True)
        users, history, targets = validation_subset(valid, args.eval_users, args.seed)

        def report(step, seconds, losses):
            r = evaluate(model, users, history, targets)
            loss = sum(losses) / len(losses) if losses else float("nan")
            print(f"| {name} | {step} | {seconds:.0f} | {loss:.3f} | {r['lm']:.4f} | {r['graph']:.4f} | "
                  f"{r['fused']:.4f} ({r['w']}) |", flush=True)

        train_lm(model, config, args.seed, args.steps, args.eval_every, report)

if __name__ == "__main__":
    main()
