"""EASE reading the validation items at test, as ``fold_in_valid`` lets GLTA and GAL-Rec read them.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/probes/ease_fold_in.py --dataset amazon-beauty \
        --data_path ../shared/datasets --seed 2020

RecBole evaluates a general model on test with what it was built from, the training split; SASRec's
test input also holds the validation item, and so, with ``fold_in_valid``, do GLTA's and GAL-Rec's
graphs and contexts. This probe puts tuned EASE (the dataset's protocol and its
``properties/benchmark/<dataset>/EASE.yaml``) on the same footing: its item-item weights ``B`` are
computed from the training split as RecBole computes them, and a user's test scores are then
``x_u B`` with ``x_u`` the user's training and validation items (RecBole's EASE scores from its
``interaction_matrix``, which is replaced for that evaluation). Everything is evaluated through
RecBole's Trainer and evaluator: validation and test as the committed EASE rows have them (a check),
then test with the validation items folded in. Nothing is chosen by it.

``--against LABEL`` (repeatable) sets a row of ``results/<dataset>.json`` against folded-in EASE, paired
over test users as ``benchmarks/compare.py`` pairs two rows (on this seed; e.g. a GAL-Rec row with
``fold_in_valid``, which reads the same items).
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.data.interaction import cat_interactions  # noqa: E402
from recbole.model.general_recommender.ease import EASE  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from benchmarks import per_user  # noqa: E402
from benchmarks.compare import ROOT, compare, format_table, per_user_runs  # noqa: E402
from recbole_llm.config import Config  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--against", action="append", default=[], help="a row label of results/<dataset>.json")
    args = parser.parse_args(argv)
    files = [f"recbole_llm/properties/benchmark/{args.dataset}.yaml", f"recbole_llm/properties/benchmark/{args.dataset}/EASE.yaml"]
    config = Config("EASE", args.dataset, config_file_list=files,
                    config_dict={"show_progress": False, "state": "WARNING", "data_path": args.data_path, "seed": args.seed,
                                 "checkpoint_dir": tempfile.mkdtemp(prefix="ease-fold-in-")})
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    model = EASE(config, train._dataset)
    trainer = Trainer(config, model)
    print(f"command: python benchmarks/probes/ease_fold_in.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"EASE reg_weight {config['reg_weight']}, files {files}")
    rows = [("valid", valid), ("test", test)]
    results = {name: trainer.evaluate(split, load_best_model=False) for name, split in rows}
    folded = train._dataset.copy(cat_interactions([train._dataset.inter_feat, valid._dataset.inter_feat]))
    model.interaction_matrix = folded.inter_matrix(form="csr").astype(np.float32)
    with per_user.capture() as evaluations:
        results["test, validation items folded in"] = folded_result = trainer.evaluate(test, load_best_model=False)
    print("| split | NDCG@10 | Hit@10 |")
    print("|---|---|---|")
    for name, result in results.items():
        print(f"| {name} | {result['ndcg@10']:.4f} | {result['hit@10']:.4f} |", flush=True)
    if args.against:
        users, values = per_user.per_user_table(evaluations, folded_result)
        ease = {args.seed: {u: {m: float(v[i]) for m, v in values.items()} for i, u in enumerate(users)}}
        records = json.loads((ROOT / "results" / f"{args.dataset}.json").read_text())
        for label in args.against:
            runs = {seed: run for seed, run in per_user_runs(records, label).items() if seed == args.seed}
            seeds, out = compare(runs, ease)
            print(format_table(label, "EASE, validation items folded in", seeds, out), flush=True)


if __name__ == "__main__":
    main()
