"""Does a language-model stage trained on its own add to its stage-1 LightGCN, with the weight chosen on validation?

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/probes/validated_fusion.py <GLTA-best.pth>

Reads a GLTA (or GAL-Rec) checkpoint of any ``score_fusion``, scores every user once with the
language model alone (``lm_logits``) and with its frozen stage-1 LightGCN, and evaluates
``graph / std(graph) + w * lm / std(lm)`` for each ``w`` of ``FUSION_WEIGHTS`` through RecBole's
evaluator on the validation and the test split (``w = 0`` is stage 1). The weight a user would pick
is the one best on validation; its test row is what ``score_fusion: validated`` would deliver.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402

from recbole_llm.model.graph_stage import FUSION_WEIGHTS  # noqa: E402
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
    graph, lm = graph / graph[1:, 1:].std(), lm / lm[1:, 1:].std()
    trainer = Trainer(config, model)
    rows = []
    for w in FUSION_WEIGHTS:
        with model.scoring_from(graph + w * lm):
            v = trainer.evaluate(valid, load_best_model=False, show_progress=False)
            t = trainer.evaluate(test, load_best_model=False, show_progress=False)
        rows.append((w, v["ndcg@10"], v["precision@10"], t["ndcg@10"], t["precision@10"]))
        print(f"| {w} | {v['ndcg@10']:.4f} | {v['precision@10']:.4f} | {t['ndcg@10']:.4f} | {t['precision@10']:.4f} |", flush=True)
    best = max(rows, key=lambda r: r[1])
    print(f"checkpoint {args.checkpoint}, seed {config['seed']}: best validation w={best[0]}: "
          f"test NDCG@10 {best[3]:.4f} P@10 {best[4]:.4f} against stage 1 {rows[0][3]:.4f} / {rows[0][4]:.4f}")


if __name__ == "__main__":
    main()
