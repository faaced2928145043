"""GLTA's training-step throughput against a plain forward+backward of its backbone, side by side.

    python benchmarks/glta_throughput.py --dataset ml-100k --batch 16 --repeats 7

Both sides process the same number of real tokens per step: GLTA's stage-3 step (prompt building,
LLM forward, GLLM head, full-softmax loss over all items, backward to the projectors) on a batch of
users, and the bare backbone run forward and backward on random input embeddings of the same token
count with no padding (the least work the backbone can do for those tokens). The two are timed
alternately and the medians compared. Stage 1 is not needed for a throughput figure: the graph
embeddings keep their random initialisation.

GLTA's step can run the part every prompt shares (chat template and instruction) once per batch
(``recbole_llm.llm.prompt.hidden_at``) or in every prompt, as a one-pass forward does; the model's
``PromptBuilder`` chooses by device (``share_prefix: auto``). Both ways are timed in the same run,
beside the default, so the choice is measured where it is made.
"""

import argparse
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.harness import alternate, timing_model  # noqa: E402
from recbole_llm.model.glta import GLTA  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--batch", type=int, default=16, help="users per step (GLTA's user_alignment_batch_size)")
    parser.add_argument("--repeats", type=int, default=7)
    args, overrides = parser.parse_known_args(argv)  # the rest: --key=value config overrides
    config, model = timing_model(GLTA, args.dataset, args.data_path, overrides)
    model.train()
    params = model.user_alignment_parameters()
    users = torch.arange(1, 1 + args.batch, device=config["device"])
    with torch.no_grad():
        n_tokens = int(model.user_prompts(users, [model.history[u][: model.max_history] for u in users.tolist()])
                       .attention_mask.sum())
    width = model.llm.get_input_embeddings().embedding_dim
    seq = n_tokens // args.batch
    plain_inputs = torch.randn(args.batch, seq, width, device=config["device"], dtype=model.llm.dtype)

    def glta_step():
        loss = model.user_alignment_loss({model.USER_ID: users})
        loss.backward()

    def glta_step_sharing(share_prefix):
        def step():
            model.prompts.share_prefix = share_prefix
            try:
                glta_step()
            finally:
                model.prompts.share_prefix = "auto"
        return step

    def plain_step():
        inputs = plain_inputs.clone().requires_grad_(True)
        model.llm(inputs_embeds=inputs).last_hidden_state.sum().backward()

    steps = {"default": glta_step, "shared once": glta_step_sharing(True), "every prompt": glta_step_sharing(False),
             "plain": plain_step}
    seconds = alternate(steps, args.repeats, params, config["device"])

    median = {name: statistics.median(values) for name, values in seconds.items()}
    tps = {name: (args.batch * seq if name == "plain" else n_tokens) / value for name, value in median.items()}
    glta_tps, plain_tps = tps["default"], tps["plain"]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or 'x86_64'})"
    default = "shared part once" if model.prompts.shares_prefix_on(config["device"]) else "shared part in every prompt"
    print(f"command: python benchmarks/glta_throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"dataset {args.dataset}, seed {config['seed']}, backbone {config['llm_path']} "
          f"({config['llm_num_layers'] or 'all'} layers, {config['llm_dtype']}), device {device}, torch {torch.__version__}")
    print(f"batch {args.batch} users, {n_tokens} real tokens per step (plain: {args.batch} x {seq})")
    print("| step | median s | tokens/s |")
    print("|---|---|---|")
    rows = {"default": f"GLTA stage-3 training step, default (share_prefix: auto, here {default})",
            "shared once": "GLTA stage-3 training step, shared part run once",
            "every prompt": "GLTA stage-3 training step, shared part run in every prompt",
            "plain": "plain backbone forward+backward"}
    for name, label in rows.items():
        print(f"| {label} | {median[name]:.3f} | {tps[name]:.0f} |")
    print(f"ratio (GLTA default / plain tokens per second): {glta_tps / plain_tps:.2f}")
    print(f"shared part run once, speed-up of GLTA's step: {median['every prompt'] / median['shared once']:.2f}x")
    return glta_tps / plain_tps


if __name__ == "__main__":
    main()
