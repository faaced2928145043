"""Does a language-model stage trained on its own add to its stage-1 LightGCN, with the weight chosen on validation?

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/probes/validated_fusion.py <GLTA-best.pth>

Reads a GLTA (or GAL-Rec) checkpoint of any ``score_fusion``, scores every user once with the
language model alone (``lm_logits``) and with its frozen stage-1 LightGCN, and evaluates
``graph / std(graph) + w * lm / std(lm)`` for each ``w`` of ``FUSION_WEIGHTS`` through RecBole's
evaluator on the validation and the test split (``w = 0`` is stage 1). The weight a user would pick
is the one best on validation; its test row is what ``score_fusion: validated`` would deliver. A
``residual`` checkpoint's LM logits are weighed with its learned gate's sign.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402

from recbole_llm.model.score_fusion import FUSION_WEIGHTS  # noqa: E402
from recbole_llm.quick_start import load_data_and_model  # noqa: E402


@torch.no_grad()
def all_scores(model, n_users, batch=64):
    lm, graph = [], []
    for start in range(0, n_users, batch):
        users = torch.arange(start, min(start + batch, n_users))
        with model.scoring_stage1_alone():
            graph.append(model.full_sort_predict({model.USER_ID: users}).view(len(users), -1))
        lm.append(model.lm_logits(users))
    return torch.cat(graph), torch.cat(lm).view(n_users, -1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    args = parser.parse_args(argv)
    config, model, dataset, train, valid, test = load_data_and_model(args.checkpoint)
    graph, lm = all_scores(model, dataset.user_num)
    graph_std, lm_std = graph[1:, 1:].std(), lm[1:, 1:].std()
    if model.score_fusion.name == "residual":
        # The residual stage trained its LM's logits through a learned gate, of either sign: weigh
        # gate · LM, whose weight at the learned gate and scale is ``learned``.
        gate, scale = model.score_fusion.gate.item(), model.score_fusion.scale.item()
        lm_std = lm_std * (1 if gate >= 0 else -1)
        print(f"residual: scale {scale:.4f}, gate {gate:.4f}, "
              f"learned w = {abs(gate) * lm[1:, 1:].std() / (abs(scale) * graph_std):.4f}")
    graph, lm = graph / graph_std, lm / lm_std
    # The protocol's metrics at 10: NDCG and Precision (MovieLens) or Hit (leave-one-out).
    names = ["ndcg@10", "precision@10" if "precision" in {m.lower() for m in config["metrics"]} else "hit@10"]
    trainer = Trainer(config, model)
    print(f"| w | valid {names[0]} | valid {names[1]} | test {names[0]} | test {names[1]} |")
    rows = []
    for w in FUSION_WEIGHTS:
        with model.scoring_from(graph + w * lm):
            v = trainer.evaluate(valid, load_best_model=False, show_progress=False)
            t = trainer.evaluate(test, load_best_model=False, show_progress=False)
        rows.append((w, v[names[0]], v[names[1]], t[names[0]], t[names[1]]))
        print("| " + " | ".join(f"{x:.4f}" for x in rows[-1]) + " |", flush=True)
    best = max(rows, key=lambda r: r[1])
    print(f"checkpoint {args.checkpoint}, seed {config['seed']}: best validation w={best[0]}: "
          f"test {names[0]} {best[3]:.4f} {names[1]} {best[4]:.4f} against stage 1 {rows[0][3]:.4f} / {rows[0][4]:.4f}")

if __name__ == "__main__":
    main()
