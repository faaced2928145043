"""Keep committed rows true to what they ran when a model's defaults change.

    python benchmarks/relabel.py --model GALRec --before 2026-11-29T06:10 \
        --was use_l1=True,use_l2=True,use_l3=True --now use_l1=False,use_l2=False,use_l3=False \
        results/ml-100k.json results/ml-1m.json results/amazon-beauty.json results/yelp.json

A row's label is a list of overrides on the defaults of the code that reads it, so a change of
defaults changes what an old label means. For each record of ``--model`` that finished before
``--before`` (``finished_at``), a key of ``--was`` that its label does not set is added with its old
value, and a key it sets to its ``--now`` value is dropped, as the plain label now means that. Every
record's runner ``command`` is then made to carry its label's overrides (it keeps those it ran
with), so running it reproduces the row under today's defaults. ``--datasets`` limits the
relabelling to some datasets (a key such as ``users_per_epoch`` changes nothing on a dataset with
fewer users). A record's ``control``, its id control's label, follows its new label. Rerunning is
harmless.

A key the record's protocol file sets (``config_files``: the benchmark protocol's ``epochs`` and
``eval_step``) is not the model file's default there: the protocol wins, so a change of the model
file does not change what a plain label runs, and such a key is neither added nor dropped. A key the
run passed over its protocol's value is put back in its label if an earlier pass dropped it, as the
plain label would run the protocol's value.
"""

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

from benchmarks.harness import ROOT, NotAStore, RecordStore, control_label, parse_row, row_label, row_values  # noqa: E402


def pairs(text):
    """'a=1,b=2' -> {'a': '1', 'b': '2'}."""
    return dict(item.split("=", 1) for item in text.split(",") if item) if text else {}


def relabel(label, command, was, now, protocol_keys=()):
    """``label`` with the old values of ``was`` it relied on made explicit and its ``now`` values dropped.

    A key the run's ``command`` set did not rely on the old default (the label may have dropped it
    on an earlier pass), which keeps a second pass from changing anything. ``protocol_keys``, the
    keys the record's protocol file sets, are left to the protocol; one the command set is kept.
    """
    overrides = row_values(label)
    passed = dict(part[2:].split("=", 1) for part in shlex.split(command) if part.startswith("--") and "=" in part)
    kept = {k: v for k, v in overrides.items() if not (k in now and v == now[k] and k not in protocol_keys)}
    kept.update({k: v for k, v in was.items() if k not in overrides and k not in passed and k not in protocol_keys})
    kept = {**{k: passed[k] for k in protocol_keys if k in passed and k not in kept}, **kept}
    if "id_control" in kept:  # last, as ``control_label`` names a row's id control
        kept["id_control"] = kept.pop("id_control")
    return row_label(parse_row(label)[0], kept)


def protocol_keys(record):
    """The keys the record's ``config_files`` set (paths relative to the repository), in file order."""
    keys = {}
    for name in record.get("config_files") or ():
        path = Path(name) if Path(name).is_absolute() else ROOT / name
        if path.is_file():
            keys.update(dict.fromkeys(yaml.safe_load(path.read_text()) or {}))
    return tuple(keys)


def command_with(command, label):
    """``command`` with each override of ``label`` in it, replacing the same key's value if present."""
    parts = shlex.split(command)
    for arg in parse_row(label)[1]:
        key = arg.split("=", 1)[0] + "="
        parts = [part for part in parts if not part.startswith(key)] + [arg]
    return shlex.join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="+", help="results/<dataset>.json files")
    parser.add_argument("--model", required=True)
    parser.add_argument("--before", required=True, help="ISO time: records finished before it ran on the old defaults")
    parser.add_argument("--was", required=True, help="the old defaults: key=value,...")
    parser.add_argument("--now", default="", help="the new defaults of the same keys: key=value,...")
    parser.add_argument("--datasets", default="", help="comma-separated; default: every dataset")
    args = parser.parse_args(argv)
    was, now = pairs(args.was), pairs(args.now)
    datasets = set(filter(None, args.datasets.split(",")))

    def change(records):
        for record in records:
            if (record["model"] == args.model and record["finished_at"] < args.before
                    and (not datasets or record["dataset"] in datasets)):
                old = record["label"]
                record["label"] = relabel(old, record["command"], was, now, protocol_keys(record))
                if old != record["label"]:
                    print(f"{store.path}: {old} -> {record['label']}")
                    if record.get("control"):  # the id control's label follows its row's
                        record["control"] = control_label(record["model"], record["label"])
            record["command"] = command_with(record["command"], record["label"])
        return records

    try:  # every file is read, and so checked, before any is rewritten
        stores = [RecordStore(path) for path in args.stores]
    except NotAStore as e:
        parser.error(f"{e}; leave it out.")
    for store in stores:
        store.rewrite(change)
    return 0


if __name__ == "__main__":
    sys.exit(main())
