"""Which answer prefix makes the backbone write profile tags instead of repeating the prompt (a spot check).

    python benchmarks/probes/answer_prefixes.py --users 16 --prefixes "" "Tags:" "User tags:" "Favorite genres:"

Generates GLTA's profile text (``recbole_llm.data.user_text``, the default backbone and
``recbole_llm/properties/model/GLTA.yaml``'s settings) for the first ``--users`` users of ml-100k's training
split (seed 2020) once per prefix, in one batch, and prints how many texts repeat the prompt
(``benchmarks/probes/user_text_stats.py``) with the first few texts. The texts go to a temporary cache.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recbole.data import create_dataset, data_preparation  # noqa: E402

from benchmarks.probes.user_text_stats import stats  # noqa: E402
from recbole_llm.config import Config  # noqa: E402
from recbole_llm.data.item_text import item_descriptions  # noqa: E402
from recbole_llm.data.user_text import user_texts  # noqa: E402
from recbole_llm.llm import resolve_llm_path  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--prefixes", nargs="+", default=["", "Tags:", "User tags:", "Favorite genres:"])
    parser.add_argument("--show", type=int, default=3)
    args = parser.parse_args(argv)

    config = Config("GLTA", "ml-100k", config_dict={"state": "WARNING", "seed": 2020})
    train, _, _ = data_preparation(config, create_dataset(config))
    matrix = train._dataset.inter_matrix(form="csr")
    history = [matrix.indices[matrix.indptr[u]:matrix.indptr[u + 1]] for u in range(args.users + 1)]
    descriptions = item_descriptions(train._dataset)
    settings = {k: config[k] for k in ("profile_words", "prediction_words", "user_text_items", "user_text_max_tokens",
                                       "llm_path", "llm_dtype", "llm_cache_dir")}
    # The generator loads from the cached fp32 copy of the backbone (a local folder), so the texts
    # alone go to a temporary llm_cache_dir.
    settings["llm_path"] = resolve_llm_path(settings["llm_path"], settings["llm_cache_dir"])
    with tempfile.TemporaryDirectory() as texts_dir:
        for prefix in args.prefixes:
            user_texts({**settings, "llm_cache_dir": texts_dir, "dataset": "prefix-check"}, None, history, descriptions,
                       "profile", batch_size=args.users, prefix=prefix)
            (path,) = Path(texts_dir, "user_text").glob("prefix-check-profile-*.json")
            result = stats(path, args.show)
            os.remove(path)
            print(f"prefix {prefix!r}: {result['repeat the prompt']} of {result['users']} repeat the prompt")
            for text in result["first texts"]:
                print(f"  {text}")


if __name__ == "__main__":
    main()
