"""One table of what each numeric config key may hold, checked once, after the config is built.

RecBole reads most keys without checking them: ``train_batch_size=0`` silently trains with batches
of one, ``epochs=-1`` trains nothing, ``learning_rate=abc`` ends in a ``TypeError`` deep in the
optimizer, ``nproc=0`` starts no process and reports success. ``check_values`` turns each of those
into one ``ConfigValueError`` naming the key, the value and the fix, before any data is loaded.

``unknown_keys`` finds the keys the user gave that neither RecBole nor the plugin reads (RecBole
accepts and ignores them, so ``--learing_rate=0.1`` would silently train with the default).
"""

import difflib
import math
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

import recbole
import yaml

from recbole_llm.errors import ConfigValueError

_PROPERTY_DIRS = (Path(recbole.__file__).resolve().parent / "properties",
                  Path(__file__).resolve().parent / "properties")

# The runner's own flags (run_recbole_llm.py) and the entries the runner sets for a process group.
RUNNER_KEYS = {"model", "dataset", "config_files", "nproc", "world_size", "ip", "port", "group_offset", "offset",
               "local_rank", "recommend", "users", "topk", "out"}


@dataclass(frozen=True)
class Rule:
    """A number of ``kind`` (int or float) in [low, high], either end open; ``optional`` also accepts ~ (None)."""

    kind: type
    low: float = -math.inf
    high: float = math.inf
    open_low: bool = False
    open_high: bool = False
    optional: bool = False
    also: tuple = ()  # further values allowed outside the bounds (world_size=-1)
    many: bool = False  # a list of such numbers is allowed too (topk)

    def accepts(self, value):
        if value is None:
            return self.optional
        if self.many and isinstance(value, list):
            return bool(value) and all(self.accepts(v) for v in value)
        numeric = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            return False
        if value in self.also:
            return True
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return math.isfinite(value) and above and below

    def describe(self):
        text = "an integer" if self.kind is int else "a number"
        if self.low > -math.inf and self.high < math.inf:
            text += f" in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"
        elif self.low > -math.inf:
            text += f" {'>' if self.open_low else '>='} {self.low:g}"
        text += "".join(f" or {v}" for v in self.also)
        if self.many:
            text += " (or a list of them)"
        return text + (" or ~" if self.optional else "")


def count(low=1, **kw):
    return Rule(int, low=low, **kw)


def positive(**kw):
    return Rule(float, low=0, open_low=True, **kw)


def non_negative(**kw):
    return Rule(float, low=0, **kw)


RULES = {
    # RecBole's training and evaluation
    "epochs": count(0), "train_batch_size": count(), "eval_batch_size": count(), "learning_rate": positive(),
    "weight_decay": non_negative(), "eval_step": count(0), "stopping_step": count(), "seed": Rule(int),
    "topk": count(many=True), "worker": count(0), "metric_decimal_place": count(0), "embedding_size": count(),
    "n_layers": count(0), "reg_weight": non_negative(), "MAX_ITEM_LIST_LENGTH": count(),
    # The runner
    "nproc": count(), "world_size": count(also=(-1,)), "group_offset": count(0),
    # Every plugin model: backbone and scale options
    "llm_num_layers": count(optional=True), "lora_r": count(0, optional=True), "lora_alpha": positive(),
    "lora_dropout": Rule(float, 0, 1, open_high=True),
    "gradient_accumulation_steps": count(optional=True),
    # The LightGCN family's softmax loss
    "softmax_negatives": count(0), "softmax_tau": positive(), "id_tower": Rule(float, 0, 1, open_high=True),
    # Stage 1 of GLTA and GAL-Rec
    "graph_epochs": count(), "graph_learning_rate": positive(), "graph_eval_step": count(optional=True),
    # GLTA's stages 2 and 3
    "item_alignment_items": count(), "item_alignment_epochs": count(), "item_alignment_lr": positive(),
    "item_alignment_batch_size": count(), "user_alignment_targets": count(), "user_alignment_epochs": count(),
    "user_alignment_lr": positive(), "user_alignment_batch_size": count(), "max_history": count(),
    "profile_words": count(), "prediction_words": count(), "user_text_items": count(), "user_text_max_tokens": count(),
    # GAL-Rec's graph-aware stage
    "n_hop1": count(), "n_hop2": count(), "queue_size": count(), "projection_size": count(), "tau": positive(),
    "momentum": Rule(float, 0, 1, open_high=True), "lambda1": non_negative(), "lambda2": non_negative(), "lambda3": non_negative(),
    "lambda4": non_negative(), "prompt_batch_size": count(), "users_per_epoch": count(optional=True),
    # GLTA's and GAL-Rec's language-model stage beyond the papers
    "lm_holdout_ratio": Rule(float, 0, 1, open_high=True),
    # The graph baselines
    "hyper_num": count(), "temp": positive(), "keep_rate": Rule(float, 0, 1, open_low=True),
    "leaky": non_negative(), "ssl_reg": non_negative(), "text_max_tokens": count(),
    "kd_weight": non_negative(), "kd_temperature": positive(), "mask_ratio": Rule(float, 0, 1, open_low=True),
}


def check_value(key, value):
    """Raise a ``ConfigValueError`` naming the fix if ``value`` breaks the rule of ``key`` in ``RULES``.

    Models and trainers built without the plugin's ``Config`` (RecBole's own, a dict) call this for
    the keys they read, so a bad value gets the same message either way.
    """
    rule = RULES[key]
    if not rule.accepts(value):
        shown = "nothing" if value == "" else repr(value)
        raise ConfigValueError(f"{key}={shown} is not usable: {key} must be {rule.describe()}. "
                               f"Fix: pass --{key}=<{rule.describe()}> or leave it out for the default.")


def check_values(config_dict):
    """Raise a ``ConfigValueError`` for the first key of ``RULES`` whose value breaks its rule."""
    for key in RULES:
        if key in config_dict:
            check_value(key, config_dict[key])


def _yaml_keys(path):
    with open(path, encoding="utf-8") as f:
        loaded = yaml.safe_load(f)
    return set(loaded) if isinstance(loaded, dict) else set()


def known_keys():
    """Every key of RecBole's and the plugin's property files, and the runner's flags."""
    keys = set(RUNNER_KEYS)
    for directory in _PROPERTY_DIRS:
        for path in directory.rglob("*.yaml"):
            keys |= _yaml_keys(path)
    return keys


def unknown_keys(given, known):
    """``(key, close known keys)`` for each key of ``given`` not in ``known``."""
    return [(key, difflib.get_close_matches(key, known, n=3, cutoff=0.6)) for key in sorted(set(given) - known)]


_EVAL_ARGS_FIX = ("Fix: write it as in RecBole, e.g. --eval_args=\"{split: {RS: [0.8, 0.1, 0.1]}, order: RO, "
                  "group_by: user, mode: full}\" (split LS: valid_and_test for leave-one-out, order TO by time).")


def _check_eval_args(eval_args):
    def refuse(problem):
        raise ConfigValueError(f"eval_args={eval_args!r} is not usable: {problem}. {_EVAL_ARGS_FIX}")

    if not isinstance(eval_args, dict):
        refuse("it must be a mapping of split, order, group_by and mode")
    unknown = sorted(set(eval_args) - {"split", "order", "group_by", "mode"})
    if unknown:
        refuse(f"{', '.join(map(str, unknown))} is none of split, order, group_by, mode")
    split = eval_args.get("split", {"RS": [0.8, 0.1, 0.1]})
    if not isinstance(split, dict) or len(split) != 1 or next(iter(split)) not in ("RS", "LS", "TS"):
        refuse("split must hold one of RS (ratios), LS (leave-one-out) or TS (time ratios)")
    (how, value), = split.items()
    if how in ("RS", "TS") and not (isinstance(value, list) and len(value) == 3 and sum(value) > 0 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value)):
        refuse(f"split {how} must be three ratios for train, validation and test, e.g. [0.8, 0.1, 0.1]")
    if how == "LS" and value not in ("valid_and_test", "valid_only", "test_only"):
        refuse("split LS must be valid_and_test, valid_only or test_only")
    if eval_args.get("order", "RO") not in ("RO", "TO"):
        refuse("order must be RO (random) or TO (by timestamp)")
    if eval_args.get("group_by", "user") not in ("user", None, "none", "None"):
        refuse("group_by must be user or none")
    mode = eval_args.get("mode", "full")
    for phase_mode in (mode.values() if isinstance(mode, dict) else [mode]):
        if not (isinstance(phase_mode, str) and (phase_mode in ("full", "labeled") or (
                phase_mode[:3] in ("uni", "pop") and phase_mode[3:].isdigit() and int(phase_mode[3:]) > 0))):
            refuse("mode must be full, labeled, uniN or popN (N sampled negatives), or {valid: ..., test: ...}")
    if isinstance(mode, dict) and not set(mode) <= {"valid", "test"}:
        refuse("mode as a mapping takes the keys valid and test")


def check_evaluation(config_dict):
    """``metrics``, ``topk``, ``valid_metric`` and ``eval_args`` must describe an evaluation RecBole can run.

    RecBole checks them one at a time, as they are used: an unknown metric or a malformed
    ``eval_args`` ends in a traceback from its Config or its dataset split, and a ``valid_metric``
    that is not computed in a ``KeyError`` after the first epoch has trained.
    """
    from recbole.evaluator.register import metric_information, metric_types
    from recbole.utils import EvaluatorType

    metrics = config_dict.get("metrics")
    metrics = [metrics] if isinstance(metrics, str) else metrics
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise ConfigValueError(f"metrics={metrics!r} is not a list of metric names. "
                               "Fix: pass e.g. --metrics=\"[Recall, NDCG]\".")
    for metric in metrics:
        if metric.lower() not in metric_types:
            close = difflib.get_close_matches(metric.lower(), metric_types, n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigValueError(f"metrics names {metric!r}, which is not a RecBole metric.{hint} "
                                   f"Fix: pass metrics from {', '.join(sorted(metric_types))}.")
    kinds = {metric_types[m.lower()] for m in metrics}
    if len(kinds) > 1:
        raise ConfigValueError(f"metrics={metrics} mixes ranking metrics with value metrics (AUC, MAE, ...), which "
                               "RecBole evaluates on different data. Fix: keep one kind in --metrics.")
    if "eval_args" in config_dict:
        _check_eval_args(config_dict["eval_args"])
        mode = config_dict["eval_args"].get("mode", "full")
        if kinds == {EvaluatorType.VALUE} and "full" in (mode.values() if isinstance(mode, dict) else [mode]):
            raise ConfigValueError(f"metrics={metrics} are value metrics, which a full ranking (eval_args mode full) "
                                   "does not compute. Fix: pass --eval_args=\"{mode: labeled}\" or ranking metrics.")
    topk = config_dict.get("topk")
    topk = [topk] if isinstance(topk, int) else topk or []
    # Metrics over the top-k list are reported per cut-off (ndcg@10), the others once (auc, gauc).
    per_cutoff = [m.lower() for m in metrics if {"rec.topk", "rec.items"} & set(metric_information[m.lower()])]
    computed = [f"{m.lower()}@{k}" for m in metrics if m.lower() in per_cutoff for k in topk]
    computed += [m.lower() for m in metrics if m.lower() not in per_cutoff]
    valid_metric = config_dict.get("valid_metric")
    if not isinstance(valid_metric, str) or valid_metric.lower() not in computed:
        raise ConfigValueError(
            f"valid_metric={valid_metric!r} is not among the metrics the evaluation computes ({', '.join(computed)}): "
            "early stopping and the best checkpoint are chosen by it. "
            "Fix: pass --valid_metric=<one of those>, or add its metric to --metrics and its cut-off to --topk."
        )


def warn_untrained(config, epochs):
    """Warn when the trainer's epoch loop will run no epoch (``epochs=0``): the run saves and tests the
    model as it was initialised, which RecBole does without a word."""
    if epochs == 0 and config["epochs"] == 0:
        warnings.warn(f"epochs=0: {config['model']}'s training loop runs no epoch, so the model is saved and tested "
                      "as it was initialised. Pass --epochs=N to train it.", UserWarning, stacklevel=2)


def check_port(port, hosts_rank_0):
    """``port`` must be a port number and, on the machine of rank 0 (``hosts_rank_0``), free: a busy one
    ends each process in torch.distributed's traceback ("address already in use") after they started."""
    if not str(port).isdigit() or not 0 < int(port) < 65536:
        raise ConfigValueError(f"--port={port} is not a port number. Fix: pass --port=<1024..65535>, e.g. --port=29500.")
    if not hosts_rank_0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as torch's store does: TIME_WAIT is no conflict
        try:
            probe.bind(("", int(port)))
        except OSError as error:
            raise ConfigValueError(
                f"--port={port} cannot be used by rank 0 on this machine ({error.strerror}): another program, or "
                "another run, listens on it. Fix: pass a free port, e.g. --port=29500, or end that run.") from None
