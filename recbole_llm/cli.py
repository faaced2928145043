"""The command line: ``recbole-llm`` (installed entry point), ``python -m recbole_llm`` and ``python run_recbole_llm.py``.

Train and test:   recbole-llm --model=GLTA --dataset=ml-100k [--key=value ...]
Recommend:        recbole-llm --recommend=saved/<file>.pth --users=196,186 --topk=10 [--out=recs.csv]
"""

import argparse
import importlib
import logging
import sys
import tempfile
from pathlib import Path

from recbole_llm.errors import ConfigValueError, RecBoleLLMError


def _plugin_models():
    """``name  one line`` for each plugin model, from the first line of its module's docstring."""
    from recbole_llm.utils import MODEL_ALIASES, plugin_model_names

    aliases = {name: alias for alias, name in MODEL_ALIASES.items()}
    lines = []
    for name in plugin_model_names():
        first = (importlib.import_module(f"recbole_llm.model.{name.lower()}").__doc__ or "").strip().splitlines()[0]
        what = first.split(": ", 1)[-1].replace("``", "").rstrip(".")
        label = f"{name} ({aliases[name]})" if name in aliases else name
        lines.append(f"  {label:<24} {what}")
    return "\n".join(lines)


def _epilog():
    from recbole_llm.config import PROPERTIES_DIR

    return (
        "Plugin models (any other name is a stock RecBole model: BPR, LightGCN, EASE, SASRec, ...):\n"
        f"{_plugin_models()}\n\n"
        "Every other --key=value overrides a config entry (e.g. --epochs=20 --learning_rate=0.002).\n"
        "Precedence: command line > --config_files > the plugin's property files > RecBole's defaults.\n"
        f"Property files: {PROPERTIES_DIR}/overall.yaml, model/<Model>.yaml, dataset/<dataset>.yaml.\n"
        "Your own dataset: --data_path=DIR --dataset=NAME reads DIR/NAME/NAME.inter (and NAME.item)."
    )


class _Parser(argparse.ArgumentParser):
    def format_help(self):
        # Built only for --help: listing the plugin's models imports every model module.
        self.epilog = _epilog()
        return super().format_help()


def _parser():
    parser = _Parser(
        prog="recbole-llm",
        description="Train and test a plugin or stock RecBole model, or recommend from a saved one.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # a config key must never be read as a prefix of a flag
    )
    parser.add_argument("--model", "-m", type=str, default=None, help="plugin or stock RecBole model name, e.g. LightGCN")
    parser.add_argument("--dataset", "-d", type=str, default=None,
                        help="dataset name (default ml-100k; with --recommend, the checkpoint's)")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated YAML property files")
    parser.add_argument("--nproc", type=int, default=1, help="processes on this machine")
    parser.add_argument("--world_size", type=int, default=-1, help="processes on all machines together")
    parser.add_argument("--ip", type=str, default="localhost", help="address of the rank-0 machine")
    parser.add_argument("--port", type=str, default="5678", help="port of the rank-0 machine")
    parser.add_argument("--group_offset", type=int, default=0, help="global rank of this machine's first process")
    recommend = parser.add_argument_group("recommend from a saved model")
    recommend.add_argument("--recommend", metavar="FILE", default=None, help="a checkpoint a training run saved")
    recommend.add_argument("--users", default=None, help="user tokens, comma-separated, or 'all'")
    recommend.add_argument("--topk", default=None, help="items per user, default 10 (without --recommend: RecBole's topk)")
    recommend.add_argument("--out", default=None, help="write every list to this CSV file instead of printing")
    recommend.add_argument("--data_path", default=None, help="the folder holding the dataset's folder")
    recommend.add_argument("--trust_checkpoint", action="store_true",
                           help="load a checkpoint that torch's weights-only loader refuses (stock RecBole's); "
                                "it can run code: only for files you trust")
    return parser


# Flags of --recommend that are ordinary config overrides in a training run.
_RECOMMEND_FLAGS = ("users", "topk", "out", "data_path")


def _recommend(args, overrides):
    from recbole_llm.recommend import format_recommendations, recommend, write_csv

    if overrides:
        raise ConfigValueError(f"--recommend takes no config overrides, got {' '.join(overrides)}. "
                              "Fix: pass only --users, --topk, --out, --dataset, --data_path and --trust_checkpoint with --recommend.")
    if not args.users:
        raise ConfigValueError("--recommend needs --users. Fix: pass --users=<user tokens, comma-separated> or --users=all.")
    # RecBole logs the dataset's statistics as it rebuilds it: only warnings reach the console here.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        topk = int(args.topk or 10)
    except ValueError:
        raise ConfigValueError(f"--topk={args.topk} is not a whole number. Fix: pass e.g. --topk=10.") from None
    users = "all" if args.users == "all" else [u.strip() for u in args.users.split(",") if u.strip()]
    if args.out:
        _check_out(args.out)  # before the model is loaded and every user scored
    recommendations = recommend(args.recommend, users, topk=topk, dataset=args.dataset, data_path=args.data_path,
                                trust_checkpoint=args.trust_checkpoint)
    if args.out:
        write_csv(recommendations, args.out)
        print(f"{len({r['user'] for r in recommendations})} users' top-{topk} lists written to {args.out}")
    else:
        print("\n".join(format_recommendations(recommendations)))


def _check_out(out):
    """``--out`` must name a file whose folder exists or can be created, and can be written."""
    path = Path(out)
    if path.is_dir():
        raise ConfigValueError(f"--out={out} is a folder. Fix: pass a file name, e.g. --out={path / 'recs.csv'}.")
    blocker = next((p for p in path.parents if p.is_file()), None)
    if blocker is not None:
        raise ConfigValueError(f"--out={out} cannot be written: {str(blocker)!r} is a file, not a folder. "
                               "Fix: pass a path whose folders are folders, e.g. --out=recs.csv.")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise ConfigValueError(f"--out={out} cannot be written ({error.strerror or error}). "
                               "Fix: pass a path in a folder you can write to.") from None


def main(argv=None):
    """Parse the flags and run; returns the exit status (2 for a user error, printed as one ``error:`` line)."""
    from recbole_llm.quick_start import run

    parser = _parser()
    args, overrides = parser.parse_known_args(argv)
    try:
        if args.recommend:
            _recommend(args, overrides)
            return 0
        if args.trust_checkpoint:
            raise ConfigValueError("--trust_checkpoint only applies to --recommend; a training run loads only the "
                                   "checkpoints it writes. Fix: drop --trust_checkpoint, or add --recommend=FILE.")
        # Outside --recommend these are ordinary config overrides (RecBole's topk is a list of cut-offs).
        overrides += [f"--{name}={getattr(args, name)}" for name in _RECOMMEND_FLAGS if getattr(args, name) is not None]
        run(
            args.model,
            args.dataset or "ml-100k",
            config_file_list=args.config_files.strip().split(" ") if args.config_files else None,
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
            cmd_args=overrides,
        )
    except RecBoleLLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
