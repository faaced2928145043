"""Whether the MiniLM-to-backbone embedding time ratio depends on the precision both run at (issue 34's 10x bar).

Embeds the same texts of ml-100k's training split (the first ``--users`` user profile texts and the
first ``--items`` item descriptions, as a first LightGCN+ run builds them) with each encoder, in float32
and under bfloat16 autocast, side by side in one process, through the plugin's ``embed_texts``. Prints
the seconds, the ratio of backbone to MiniLM at each precision, and the smallest cosine between an
encoder's float32 and bfloat16 vectors. Each timing follows a short warm-up on the loaded encoder, so
loading is not timed (``benchmarks/text_encoder_time.py`` times whole first runs). Bfloat16 autocast is
not a plugin setting; this asks only whether precision moves the ratio. Run pinned, offline:

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/probes/text_encoder_precision.py [--users 200 --items 200]
"""

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--items", type=int, default=200)
    args = parser.parse_args()

    from benchmarks.text_encoder_time import first_run_texts
    from recbole_llm.data import text_embedding

    protocol = str(ROOT / "recbole_llm/properties/benchmark/ml-100k.yaml")
    config, items, users = first_run_texts("minilm", "ml-100k", protocol, "LightGCNPlus")
    texts = [t for t in users if t][: args.users] + [t for t in items if t][: args.items]
    print(f"ml-100k: {args.users} user texts and {args.items} item texts, {torch.get_num_threads()} torch threads")

    seconds = {}
    for encoder in ("minilm", "backbone"):
        config["text_encoder"] = encoder
        loaded = text_embedding.load_text_encoder(config)
        text_embedding.embed_texts(texts[:8], config, loaded=loaded)
        vectors = {}
        for precision in ("float32", "bfloat16"):
            began = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                vectors[precision] = text_embedding.embed_texts(texts, config, loaded=loaded)
            seconds[encoder, precision] = time.perf_counter() - began
            print(f"{encoder:8s} {precision:8s} {seconds[encoder, precision]:7.2f} s")
        cosine = torch.nn.functional.cosine_similarity(vectors["float32"], vectors["bfloat16"])
        print(f"{encoder:8s} smallest cosine, float32 against bfloat16 vectors: {cosine.min().item():.6f}")
    for precision in ("float32", "bfloat16"):
        print(f"backbone / MiniLM, both {precision}: {seconds['backbone', precision] / seconds['minilm', precision]:.2f}x")
    print(f"backbone float32 / MiniLM bfloat16: {seconds['backbone', 'float32'] / seconds['minilm', 'bfloat16']:.2f}x")


if __name__ == "__main__":
    main()
