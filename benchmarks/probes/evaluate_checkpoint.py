"""A saved model on the validation and test splits; for GLTA and GAL-Rec, also their stage-1 LightGCN alone.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/probes/evaluate_checkpoint.py <Model-best.pth>

For a run stopped before it finished (the benchmark harness writes a record only at the end): its
best checkpoint is evaluated as the finished run would have evaluated it, through RecBole's
evaluator on the checkpoint's own config, split and metrics. The stage-1 rows score with
``scoring_stage1_alone`` (what a record's ``graph_test`` holds); the residual fusion's learned
scale and gate are printed beside them. RecBole's plain Trainer scores the test on the training
history alone: a run with ``fold_in_valid`` recorded that figure as ``test_unfolded``. Any other RecBole model (e.g. a stock baseline whose run is
still training) is evaluated as it is.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402

from recbole_llm.quick_start import load_data_and_model  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    args = parser.parse_args(argv)
    config, model, _, _, valid, test = load_data_and_model(args.checkpoint)
    trainer = Trainer(config, model)
    print(f"checkpoint {args.checkpoint}: {config['model']} on {config['dataset']}, seed {config['seed']}")
    staged = hasattr(model, "scoring_stage1_alone")  # GLTA, GAL-Rec; any other model is scored as it is
    if model.score_fusion.name == "residual":
        print(f"fusion: scale {model.score_fusion.scale.item():.4f}, gate {model.score_fusion.gate.item():.4f}")
    with torch.no_grad():
        for name, split in (("valid", valid), ("test", test)):
            result = trainer.evaluate(split, load_best_model=False, show_progress=False)
            print(f"{name}: {dict(result)}", flush=True)
            if staged:
                with model.scoring_stage1_alone():
                    alone = trainer.evaluate(split, load_best_model=False, show_progress=False)
                print(f"{name}, stage 1 alone: {dict(alone)}", flush=True)


if __name__ == "__main__":
    main()
