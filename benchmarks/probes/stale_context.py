"""What GAL-Rec's language model loses when its context ends one item before the latest, on validation.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/probes/stale_context.py --dataset amazon-beauty \
        --data_path ../shared/datasets --graph_cache_dir results/.amazon-beauty.graph_cache \
        --steps 1200 --eval_every 400 --eval_users 4096 --variant "text=graph_model=TextLightGCN,..."

Under leave-one-out, validation asks for the item right after a user's training sequence, and test
for the item after that (the validation item). GAL-Rec is a general RecBole model: it is built on the
training split alone, so on test its context still ends at the last training item and its target is
two steps ahead, while SASRec's test input includes the validation item. This probe measures on
validation what that costs: each variant trains the language model as ``lm_stage_curve.py`` does (same
users, same seeds, stage 1 from the graph cache) and, every ``eval_every`` steps, scores the same
validation users twice:

- ``fresh``: the inference context GAL-Rec uses (the latest training items);
- ``stale``: the same with each user's last training item left out of the context (users with a
  single training item keep it), so the target is two steps ahead, as on test.

Printed for both: the LM alone and the best mix with stage 1 (``graph/σ + w·LM/σ``). Stage 1 is the
same in both (it cannot be retrained here), so the mix's difference is the language model's part of
the test's handicap, not the graph's. Validation only: it measures, it chooses nothing on test.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from benchmarks.probes.lm_stage_curve import build, evaluate, probe_parser, train_lm, validation_subset  # noqa: E402
from benchmarks.variants import parse_variant  # noqa: E402


def contexts(model, seed):
    """(fresh, stale) inference contexts of all users: the model's own, and one ending an item earlier."""
    users = torch.arange(model.n_users)
    ends = torch.tensor([len(s) - 1 if len(s) > 1 else len(s) for s in model.sequences])
    stale = model.sample_context("user", users, torch.Generator().manual_seed(seed),
                                 hop1=model.latest_items(model.sequences, users, ends))
    return model.inference_context, stale


def main(argv=None):
    parser = probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--eval_every", type=int, default=400)
    parser.add_argument("--eval_users", type=int, default=4096)
    parser.add_argument("--variant", action="append", required=True, help="name=key=value,key=value")
    args = parser.parse_args(argv)
    protocol = args.protocol or f"recbole_llm/properties/benchmark/{args.dataset}.yaml"
    print(f"command: python benchmarks/probes/stale_context.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; validation NDCG@10 of {args.eval_users} "
          "random validation users")
    print("| variant | step | seconds | lm fresh | lm stale | graph | mix fresh (w) | mix stale (w) |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for text in args.variant:
        name, overrides = parse_variant(text)
        config, model, valid, cached = build(args.dataset, protocol, overrides, args.seed, args.data_path,
                                             args.graph_cache_dir)
        if model.sequences is None:
            raise SystemExit("error: this probe reads ordered training sequences. Fix: use a protocol with "
                             "eval_args order: TO and ordered_context: True.")
        print(f"<!-- {name}: stage 1 {cached.name} -->", flush=True)
        fresh, stale = contexts(model, config["seed"])
        users, history, targets = validation_subset(valid, args.eval_users, args.seed)

        def report(step, seconds, losses):
            if not step:
                return
            model.inference_context = fresh
            a = evaluate(model, users, history, targets)
            model.inference_context = stale
            b = evaluate(model, users, history, targets)
            model.inference_context = fresh
            print(f"| {name} | {step} | {seconds:.0f} | {a['lm']:.4f} | {b['lm']:.4f} | {a['graph']:.4f} | "
                  f"{a['fused']:.4f} ({a['w']}) | {b['fused']:.4f} ({b['w']}) |", flush=True)

        train_lm(model, config, args.seed, args.steps, args.eval_every, report)

if __name__ == "__main__":
    main()
