"""GLTA's stage-2 (item-alignment) training step, its text leads run with and without a gradient, side by side.

    python benchmarks/glta_item_alignment_step.py --dataset amazon-beauty --data_path ../shared/datasets --repeats 5

A stage-2 prompt holds m item descriptions before its first soft token (the item tokens). With the
backbone frozen, nothing before that token can reach a trained parameter, so ``hidden_at`` runs
those leads under ``torch.no_grad`` and only the rest of each prompt with the gradient
(``recbole_llm.llm.prompt._hidden_with_text_lead_ungraded``). Three ways of the same step are timed
alternately on the same items and the same shuffles, and the medians compared:

- the default (leads without a gradient);
- the leads with a gradient, as before: only the part every prompt shares runs once;
- one pass, every prompt whole (``share_prefix: False``, what a GPU runs).

The loss of each way is printed too: they agree up to float rounding. Stage 1 is not needed for a
step's cost: the graph embeddings keep their random initialisation (``graph_model`` is any).
"""

import argparse
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import recbole_llm.llm.prompt as prompt_module  # noqa: E402
from benchmarks.harness import alternate, timing_model  # noqa: E402
from recbole_llm.model.glta import GLTA  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    args, overrides = parser.parse_known_args(argv)  # the rest: --key=value config overrides
    config, model = timing_model(GLTA, args.dataset, args.data_path, overrides)
    model.train()
    params = model.item_alignment_parameters()
    m, batch = model.item_alignment_items, config["item_alignment_batch_size"]
    generator = torch.Generator().manual_seed(config["seed"])
    items = 1 + torch.randperm(model.n_items - 1, generator=generator)[: m * batch]
    interaction = {model.ITEM_ID: items.to(config["device"])}
    with torch.no_grad():
        torch.manual_seed(0)
        prompts = model.prompts.build([  # the step's prompts, to count their tokens
            model.item_template.fill(descriptions="; ".join(f"{t + 1}. {model.descriptions[i]}" for t, i in enumerate(group.tolist())),
                                     item_tokens=prompt_module.Soft(model.item_tokens(group)))
            for group in items.view(-1, m)])
        n_tokens, lead = int(prompts.attention_mask.sum()), sum(prompts.text_lead or [0])

    worth = prompt_module._lead_is_worth_a_pass
    losses = {}

    def step(name, share_prefix="auto", leads_graded=False):
        def run():
            model.prompts.share_prefix = share_prefix
            prompt_module._lead_is_worth_a_pass = (lambda *a: False) if leads_graded else worth
            try:
                torch.manual_seed(0)  # the same shuffles for every way
                loss = model.item_alignment_loss(interaction)
                loss.backward()
                losses[name] = loss.item()
            finally:
                model.prompts.share_prefix = "auto"
                prompt_module._lead_is_worth_a_pass = worth
        return run

    steps = {"default": step("default"), "graded": step("graded", leads_graded=True),
             "one pass": step("one pass", share_prefix=False)}
    seconds = alternate(steps, args.repeats, params, config["device"])

    median = {name: statistics.median(values) for name, values in seconds.items()}
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or 'x86_64'})"
    print(f"command: python benchmarks/glta_item_alignment_step.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"dataset {args.dataset}, seed {config['seed']}, backbone {config['llm_path']} "
          f"({config['llm_num_layers'] or 'all'} layers, {config['llm_dtype']}), device {device}, torch {torch.__version__}")
    print(f"{batch} prompts of {m} items, {n_tokens} real tokens per step, {lead} of them before the first soft token")
    print("| stage-2 step | median s | loss |")
    print("|---|---|---|")
    rows = {"default": "default: text leads without a gradient",
            "graded": "text leads with a gradient (the shared part run once)",
            "one pass": "one pass, every prompt whole (share_prefix: False)"}
    for name, label in rows.items():
        print(f"| {label} | {median[name]:.3f} | {losses[name]:.6f} |")
    print(f"speed-up of the default over the leads with a gradient: {median['graded'] / median['default']:.2f}x; "
          f"over one pass: {median['one pass'] / median['default']:.2f}x")
    return median


if __name__ == "__main__":
    main()
