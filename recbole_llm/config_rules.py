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
    "lora_dropout": Rule(float, 0, 1, open_high=True), "lora_lr": positive(optional=True),
    "gradient_accumulation_steps": count(optional=True),
    # The LightGCN family's softmax loss
    "softmax_negatives": count(0), "softmax_tau": positive(),
    # Stage 1 of GLTA and GAL-Rec
    "graph_epochs": count(), "graph_learning_rate": positive(),
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
    "lm_holdout_ratio": Rule(float, 0, 1, open_high=True), "history_text_words": count(),
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
