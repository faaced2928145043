"""GLTA at the paper's shape on one GPU: stage-3 step time, tokens/s, one full ranking, peak memory.

    python benchmarks/gpu_paper_shape.py --dataset ml-1m --data_path ../shared/datasets \
        --tokenizer <folder with tokenizer.json> --steps 10 --out results/gpu_paper_shape.md

The paper's backbone is LLaMA-2-7B. Its weights cannot reach a machine without network access, and
the cost of a step does not depend on the values of the weights, so the backbone here is a randomly
initialised model of Llama-2-7B's shape (32 layers, width 4096, MLP 11008, 32 heads) in bfloat16,
written to a local folder and loaded through GLTA's own loader (``llm_path``), exactly as a real
checkpoint would be. Its vocabulary is the tokenizer's (SmolLM2's 49,152 tokens when the packaged
tokenizer is given, against Llama-2's 32,000): 70M more embedding parameters, about 1% of the model,
and no change to the layers a step runs through.

What runs is GLTA's stage 3 as its trainer runs it (``user_alignment_loss``, backward, AdamW on
``user_alignment_parameters``) with ``recbole_llm/properties/glta-paper-gpu.yaml`` on the benchmark
protocol of the dataset, then one full-sort evaluation of every test user through RecBole's
``Trainer.evaluate``. Stage 1 is not trained (the graph embeddings keep their random start), so the
metrics printed for the ranking measure nothing but the pipeline. The paper's two generated texts
(``use_profile``, ``use_prediction``) are off: generating them for every user is a separate job,
and without them each prompt is about 2 x ``user_text_max_tokens`` tokens shorter.

``--shape tiny`` builds a 2-layer model of width 64 instead, to check the script on a CPU.
"""

import argparse
import json
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import transformers  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.trainer import Trainer  # noqa: E402
from recbole.utils import init_seed  # noqa: E402
from transformers import AutoTokenizer, LlamaConfig, LlamaModel  # noqa: E402

from benchmarks.harness import synchronize  # noqa: E402
from recbole_llm.config import Config  # noqa: E402
from recbole_llm.helpers import atomic_write_text  # noqa: E402
from recbole_llm.model.glta import GLTA  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PROPERTIES = ROOT / "recbole_llm" / "properties"

# Llama-2-7B's config.json (meta-llama/Llama-2-7b-chat-hf), less the vocabulary size.
SHAPES = {
    "llama2-7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=4096, rms_norm_eps=1e-5),
}


def write_random_backbone(shape, tokenizer_dir, folder, device):
    """A checkpoint folder of the given shape with random weights and the given tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    llama_config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                               eos_token_id=tokenizer.eos_token_id, **SHAPES[shape])
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):  # initialised where it runs: seconds on a GPU for 6.7B weights
            model = LlamaModel(llama_config)
    finally:
        torch.set_default_dtype(default_dtype)
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return n_params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--tokenizer", required=True, help="a folder holding the tokenizer files")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama2-7b")
    parser.add_argument("--model_dir", default="/tmp/glta-random-backbone")
    parser.add_argument("--steps", type=int, default=10, help="timed stage-3 steps, after 2 warm-up steps")
    parser.add_argument("--out", default=None, help="write the table (markdown) here, and the figures as JSON beside it")
    args, overrides = parser.parse_known_args(argv)  # the rest: --key=value config overrides

    began = time.perf_counter()
    phases = {}
    device_name = "cuda" if torch.cuda.is_available() else "cpu"
    n_params = write_random_backbone(args.shape, args.tokenizer, args.model_dir, device_name)
    phases["write random backbone"] = time.perf_counter() - began
    print(f"wrote a {n_params / 1e9:.2f}B-parameter random backbone in {phases['write random backbone']:.1f} s", flush=True)

    config_files = [str(PROPERTIES / "benchmark" / f"{args.dataset}.yaml"), str(PROPERTIES / "glta-paper-gpu.yaml")]
    config_dict = {"llm_path": args.model_dir, "use_profile": False, "use_prediction": False,
                   "checkpoint_dir": "/tmp/glta-paper-shape-saved", "show_progress": False}
    if args.data_path:
        config_dict["data_path"] = args.data_path
    if device_name == "cpu":
        config_dict.update(gpu_id="", use_gpu=False)
    config = Config("GLTA", args.dataset, config_file_list=config_files, config_dict=config_dict, cmd_args=overrides)
    init_seed(config["seed"], True)
    start = time.perf_counter()
    train, _, test = data_preparation(config, create_dataset(config))
    phases["load dataset"] = time.perf_counter() - start
    device = config["device"]

    start = time.perf_counter()
    model = GLTA(config, train._dataset).to(device)
    synchronize(device)
    phases["build GLTA (load backbone)"] = time.perf_counter() - start
    print(f"dataset loaded in {phases['load dataset']:.1f} s, GLTA built in {phases['build GLTA (load backbone)']:.1f} s",
          flush=True)

    # Count the real (unpadded) tokens of every prompt batch the model builds.
    tokens = []
    build = model.prompts.build

    def counting_build(prompts):
        batch = build(prompts)
        tokens.append(int(batch.attention_mask.sum()))
        return batch

    model.prompts.build = counting_build

    params = model.user_alignment_parameters()
    optimizer = torch.optim.AdamW(params, lr=config["user_alignment_lr"])
    batch = config["user_alignment_batch_size"]
    generator = torch.Generator().manual_seed(config["seed"])
    model.train()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_seconds, step_tokens = [], []
    for step in range(args.steps + 2):
        users = torch.randint(1, model.n_users, (batch,), generator=generator).to(device)
        tokens.clear()
        synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = model.user_alignment_loss({model.USER_ID: users})
        loss.backward()
        optimizer.step()
        synchronize(device)
        if step >= 2:  # the first two warm up kernels and allocators
            step_seconds.append(time.perf_counter() - start)
            step_tokens.append(sum(tokens))
    print(f"stage-3 steps: {', '.join(f'{t:.3f}' for t in step_seconds)} s", flush=True)
    train_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None

    model.eval()
    tokens.clear()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = Trainer(config, model)
    synchronize(device)
    start = time.perf_counter()
    result = trainer.evaluate(test, load_best_model=False, show_progress=False)
    synchronize(device)
    ranking_seconds = time.perf_counter() - start
    ranking_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    ranking_tokens = sum(tokens)
    n_ranked = len(test.uid_list) if hasattr(test, "uid_list") else None

    median = statistics.median(step_seconds)
    median_tokens = statistics.median(step_tokens)
    gib = 2 ** 30
    figures = {
        "command": "python benchmarks/gpu_paper_shape.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({platform.processor() or 'x86_64'})",
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                     "transformers": transformers.__version__},
        "dataset": args.dataset, "protocol": f"recbole_llm/properties/benchmark/{args.dataset}.yaml",
        "seed": config["seed"], "shape": args.shape, "backbone_parameters": n_params, "dtype": config["llm_dtype"],
        "n_users": model.n_users - 1, "n_items": model.n_items - 1,
        "stage3_batch_users": batch, "max_history": config["max_history"],
        "stage3_step_seconds": step_seconds, "stage3_step_median_s": median,
        "stage3_tokens_per_step_median": median_tokens, "stage3_tokens_per_s": median_tokens / median,
        "stage3_peak_gib": train_peak / gib if train_peak is not None else None,
        "ranking_seconds": ranking_seconds, "ranking_users": n_ranked, "ranking_tokens": ranking_tokens,
        "ranking_tokens_per_s": ranking_tokens / ranking_seconds,
        "ranking_eval_batch_size": config["eval_batch_size"],
        "ranking_peak_gib": ranking_peak / gib if ranking_peak is not None else None,
        "ranking_metrics_random_weights": {k: float(v) for k, v in result.items()},
        "phases_s": phases,
    }
    peak = lambda v: f"{v:.1f} GiB" if v is not None else "n/a"  # noqa: E731
    lines = [
        f"# GLTA at paper shape ({args.shape}), {figures['device']}",
        "",
        f"command: `{figures['command']}`  ",
        f"dataset {args.dataset} ({figures['protocol']}), seed {config['seed']}, "
        f"{n_params / 1e9:.2f}B-parameter backbone with random weights, {config['llm_dtype']}, "
        f"{', '.join(f'{k} {v}' for k, v in figures['versions'].items())}",
        "",
        "| what | figure |",
        "|---|---|",
        f"| stage-3 step ({batch} users, history {config['max_history']}), median of {args.steps} | {median:.3f} s |",
        f"| stage-3 real tokens per step (median) | {median_tokens:.0f} |",
        f"| stage-3 tokens/s | {median_tokens / median:.0f} |",
        f"| stage-3 peak GPU memory | {peak(figures['stage3_peak_gib'])} |",
        f"| full ranking of {n_ranked} test users over {model.n_items - 1} items | {ranking_seconds:.1f} s |",
        f"| full ranking tokens/s | {ranking_tokens / ranking_seconds:.0f} |",
        f"| full ranking peak GPU memory | {peak(figures['ranking_peak_gib'])} |",
        "",
        "Set-up time: " + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()) + ".",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, table + "\n")
        atomic_write_text(Path(args.out).with_suffix(".json"), json.dumps(figures, indent=1) + "\n")
    return figures


if __name__ == "__main__":
    main()
