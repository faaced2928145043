"""What GLTA's generated profile/prediction texts look like: how many repeat the prompt, how many differ.

    python benchmarks/probes/user_text_stats.py ~/.cache/recbole_llm/user_text/ml-100k-profile-*.json

For each cache file written by ``recbole_llm.data.user_text`` (one text per internal user id, the
padding user's empty): the number of users, how many texts start by repeating the prompt ("The user
interacted with these items"), how many are one word over and over (the most frequent word, list
marks aside, is at least half of the words), how many are distinct, their mean length in words,
and a few of them.
"""

import argparse
import json
from collections import Counter
from pathlib import Path
from statistics import mean

ECHO = "The user interacted with these items"


def repeats_one_word(text):
    words = [w.strip(",;.-") for w in text.split()]
    words = [w for w in words if w and not w.rstrip(".").isdigit()]
    return bool(words) and Counter(words).most_common(1)[0][1] * 2 >= len(words)


def stats(path, show=5):
    texts = [text for text in json.loads(Path(path).read_text()) if text]
    return {
        "file": Path(path).name,
        "users": len(texts),
        "repeat the prompt": sum(text.startswith(ECHO) for text in texts),
        "one word repeated": sum(repeats_one_word(text) for text in texts),
        "distinct": len(set(texts)),
        "mean words": round(mean(len(text.split()) for text in texts), 1) if texts else 0,
        "first texts": texts[:show],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="user_text cache files (.json)")
    parser.add_argument("--show", type=int, default=5, help="texts to print per file")
    args = parser.parse_args(argv)
    for path in args.files:
        result = stats(path, args.show)
        print(f"{result['file']}: {result['users']} users, {result['repeat the prompt']} repeat the prompt, "
              f"{result['one word repeated']} repeat one word, {result['distinct']} distinct, "
              f"{result['mean words']} words on average")
        for text in result["first texts"]:
            print(f"  {text}")


if __name__ == "__main__":
    main()
