"""Bring committed records up to the fields the harness writes today.

    python benchmarks/record_fields.py results/ml-100k.json results/ml-1m.json results/amazon-beauty.json \
        results/yelp.json results/tuning/amazon-beauty.json

- ``per_user_stage1`` is now ``graph_per_user`` (the per-user file of stage 1 alone, ``graph_test``);
  the file it names keeps its name.
- ``control``: each record of a model with an id control (GLTA, GAL-Rec) names its control's label,
  the same row with ``id_control=True`` (``harness.control_label``); other records, which have none,
  are left as they are (readers take a missing ``control`` as None).

Nothing else changes. Rerunning is harmless.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import NotAStore, RecordStore, control_label  # noqa: E402


def updated(record):
    """``record`` with today's field names and its ``control``, in place; returns the names of the fields it changed."""
    changed = []
    if "per_user_stage1" in record:
        record["graph_per_user"] = record.pop("per_user_stage1")
        changed.append("graph_per_user")
    control = control_label(record["model"], record["label"])
    if control is not None and "control" not in record:
        record["control"] = control
        changed.append("control")
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="+", help="results/<dataset>.json files")
    args = parser.parse_args(argv)
    try:  # every file is read, and so checked, before any is rewritten
        stores = [RecordStore(path) for path in args.stores]
    except NotAStore as e:
        parser.error(f"{e}; leave it out.")
    for store in stores:
        counts = {}

        def change(records):
            for record in records:
                for field in updated(record):
                    counts[field] = counts.get(field, 0) + 1
            return records

        store.rewrite(change)
        print(f"{store.path}: " + (", ".join(f"{field} set in {n} records" for field, n in counts.items()) or "up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
