"""Seconds per stage-2 step of GAL-Rec configurations, side by side in one process.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/galrec_step_cost.py --dataset amazon-beauty \
        --data_path ../shared/datasets --steps 10 --rounds 3 \
        --variant "target=" --variant "next_item=lm_objective=next_item"

Each variant is a set of ``key=value`` overrides of GAL-Rec's defaults on the benchmark protocol of
the dataset. All variants are built first; then, round after round, each trains ``steps`` steps
(``calculate_loss``, backward and an Adam step on ``prompt_batch_size`` users, as ``GALRecTrainer``
runs them) on the same batches of users, so that the machine's drift touches every variant alike,
and the medians of the rounds' seconds per step are compared. A stage-2 epoch is
``users_per_epoch / prompt_batch_size`` such steps. Stage 1 is not trained (its random embeddings
are frozen): a step costs the same with any graph embeddings. Validation is not included: its
prompts have the same form for every variant.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.variants import parse_variant, print_header, variant_config  # noqa: E402
from recbole_llm.model.galrec import GALRec  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--steps", type=int, default=10, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", required=True, help="name=key=value,key=value")
    args = parser.parse_args(argv)
    variants = {}
    for text in args.variant:
        name, overrides = parse_variant(text)
        config, train = variant_config("GALRec", args.dataset, overrides, args.data_path)
        model = GALRec(config, train._dataset)
        model.freeze_graph()
        model.init_head_from_item_tokens()
        model.train()
        optimizer = torch.optim.Adam(model.graph_aware_parameters(), lr=config["learning_rate"])
        variants[name] = dict(model=model, optimizer=optimizer, config=config, seconds=[], losses=[])
        print(f"built {name}", file=sys.stderr, flush=True)

    first = next(iter(variants.values()))
    batch, lm_users = first["config"]["prompt_batch_size"], first["model"].lm_users
    generator = torch.Generator().manual_seed(0)
    for _ in range(args.rounds):
        users = lm_users[torch.randperm(len(lm_users), generator=generator)[:batch * args.steps]]
        for name, v in variants.items():
            model, optimizer = v["model"], v["optimizer"]
            start = time.perf_counter()
            for step in range(args.steps):
                optimizer.zero_grad(set_to_none=True)
                loss = model.calculate_loss({model.USER_ID: users[step * batch:(step + 1) * batch]})
                loss.backward()
                optimizer.step()
                v["losses"].append(loss.item())
            v["seconds"].append((time.perf_counter() - start) / args.steps)
            print(f"{name}: {v['seconds'][-1]:.3f} s/step", file=sys.stderr, flush=True)

    names = list(variants)
    base = statistics.median(variants[names[0]]["seconds"])
    print_header("galrec_step_cost.py", argv if argv is not None else sys.argv[1:], args.dataset)
    print(f"| variant | overrides | users per step | s/step (median of {args.rounds} rounds of {args.steps} steps) | "
          f"each round | ratio to {names[0]} | first / last loss |")
    print("|---|---|---|---|---|---|---|")
    for text, (name, v) in zip(args.variant, variants.items()):
        median = statistics.median(v["seconds"])
        rounds = ", ".join(f"{s:.3f}" for s in v["seconds"])
        print(f"| {name} | {text.partition('=')[2] or 'defaults'} | {batch} | {median:.3f} | {rounds} | "
              f"{median / base:.2f} | {v['losses'][0]:.2f} / {v['losses'][-1]:.2f} |")


if __name__ == "__main__":
    main()
