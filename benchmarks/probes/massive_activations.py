"""How much of a frozen backbone's last hidden state every prompt shares (cited by ``head_norm``, a
switch of the GLLM head measured as no better, whose code last ran at commit 5d91fdd).

Prints, for a few unrelated prompts, the share of the last token's squared norm held by its three
largest dimensions, and the cosine similarity between the prompts' last states. Run offline:

    python benchmarks/probes/massive_activations.py [--llm_num_layers 4] [--llm_path PATH]
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from recbole_llm.llm import load_backbone  # noqa: E402

PROMPTS = [
    "Read the user or item and its neighbours in the interaction graph. The user likes lipstick.",
    "A completely different sentence about football and cars and the weather today in Paris.",
    "Numbers 1 2 3 4 5 6 7",
    "Hello",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llm_path", default=None)
    parser.add_argument("--llm_num_layers", type=int, default=4)
    args = parser.parse_args()
    config = {"llm_num_layers": args.llm_num_layers, **({"llm_path": args.llm_path} if args.llm_path else {})}
    model, tokenizer = load_backbone(config)
    with torch.no_grad():
        states = torch.stack([model(**tokenizer(p, return_tensors="pt")).last_hidden_state[0, -1] for p in PROMPTS])
    for prompt, state in zip(PROMPTS, states):
        top = state.abs().topk(3).indices
        share = state[top].pow(2).sum() / state.pow(2).sum()
        print(f"norm {state.norm():6.1f}  top-3 dims {top.tolist()} hold {share:.0%} of the squared norm  ({prompt[:40]!r})")
    unit = torch.nn.functional.normalize(states, dim=-1)
    print("cosine between the prompts' last states:")
    print((unit @ unit.T).numpy().round(3))


if __name__ == "__main__":
    main()
