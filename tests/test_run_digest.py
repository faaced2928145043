"""The run folders and the stage-1 cache are named by digests of the config. The rules: a key stage 1
reads changes both; a key only the later stages read changes the run digest alone; a budget key
changes no run digest, so a longer run resumes a shorter one. One guard keeps the stage-1 cache key
of the default GLTA and GAL-Rec configs as it was, so the caches that runs already left stay valid.
"""

import os
from pathlib import Path

import pytest

from recbole_llm.config import Config
from recbole_llm.helpers import property_keys
from recbole_llm.model.galrec import GALRec
from recbole_llm.model.glta import GLTA
from recbole_llm.model.graph_stage import HOLDOUT_KEYS, GraphLMRecommender
from recbole_llm.trainer.graph_stage_trainer import graph_cache_digest
from recbole_llm.trainer.run_state import BOOKKEEPING_KEYS, BUDGET_KEYS, run_digest, with_entries

DATA = "../shared/datasets"
MODELS = {"GLTA": GLTA, "GALRec": GALRec}

# The stage-1 cache keys of the default configs, as computed since the cache was introduced: a change
# here orphans every cached stage 1 that users have.
CACHE_DIGESTS = {
    ("GLTA", "ml-100k"): "7e225be1802a",
    ("GALRec", "ml-100k"): "23670f0e528c",
    ("GLTA", "ml-1m"): "944343bc6c92",
    ("GALRec", "amazon-beauty"): "6d0ef2178e00",
}


def config(model, dataset="ml-100k", **entries):
    built = Config(model, dataset, config_dict=entries or None)
    # The two machine-dependent entries, pinned: RecBole's absolute ml-100k path and the device.
    built.final_config_dict["data_path"] = f"dataset/{dataset}"
    built.final_config_dict["device"] = "cpu"
    return built


def other(value):
    """A value different from ``value``, of its type where it has one."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + " changed"
    return 7 if value is None else None


def digests(built, model):
    return run_digest(built), graph_cache_digest(built, MODELS[model]), graph_cache_digest(built, MODELS[model], True)


@pytest.fixture(scope="module", params=sorted(MODELS))
def default(request):
    model = request.param
    built = config(model)
    return model, built, digests(built, model)


@pytest.mark.parametrize("model, dataset", sorted(CACHE_DIGESTS))
def test_the_stage_1_cache_key_of_the_default_configs_is_unchanged(model, dataset, monkeypatch):
    # data_path is part of the key, as the benchmarks write it: relative to the checkout.
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    entries = {} if dataset == "ml-100k" else {"data_path": DATA}
    if entries and not os.path.isdir(os.path.join(DATA, dataset)):
        pytest.skip(f"{DATA}/{dataset} is not here")
    assert graph_cache_digest(config(model, dataset, **entries), MODELS[model]) == CACHE_DIGESTS[model, dataset]


def test_glta_and_galrec_read_one_stage_1_block():
    block = GraphLMRecommender.stage1_keys()
    assert {"embedding_size", "n_layers", "graph_epochs", "graph_learning_rate"} <= block
    assert not block & property_keys("GLTA") and not block & property_keys("GALRec")
    glta, galrec = config("GLTA"), config("GALRec")
    assert all(glta[key] == galrec[key] for key in block)


def test_a_key_stage_1_reads_changes_the_run_and_the_cache(default):
    model, built, (run, cache, holdout) = default
    for key in GraphLMRecommender.stage1_keys() - {"graph_checkpoint", "graph_cache", "graph_cache_dir"}:
        changed = digests(with_entries(built, **{key: other(built[key])}), model)
        assert changed[0] != run and changed[1] != cache and changed[2] != holdout, key
    # So do the data, the split and the seed, which no property file of the model names.
    for key, value in [("seed", 7), ("eval_args", {**built["eval_args"], "order": "TO"})]:
        changed = digests(with_entries(built, **{key: value}), model)
        assert changed[0] != run and changed[1] != cache, key


def test_a_later_stage_key_changes_the_run_but_not_the_cache(default):
    model, built, (run, cache, holdout) = default
    later = MODELS[model].later_stage_keys()
    assert {"score_fusion", "llm_path", "lora_r"} <= later and not later & GraphLMRecommender.stage1_keys()
    for key in sorted(later - BUDGET_KEYS - BOOKKEEPING_KEYS):
        changed = digests(with_entries(built, **{key: other(built[key])}), model)
        assert changed[0] != run and changed[1] == cache, key
        # The held-out interactions' keys choose the LightGCN the language model reads.
        assert (changed[2] != holdout) == (key in HOLDOUT_KEYS), key


def test_a_budget_key_changes_no_run_digest(default):
    model, built, (run, cache, holdout) = default
    for key in BUDGET_KEYS & built.final_config_dict.keys():
        changed = digests(with_entries(built, **{key: other(built[key])}), model)
        assert changed[0] == run, key
        # Stage 1 early-stops with eval_step and stopping_step itself; the epochs of later stages it never reads.
        assert (changed[1] == cache) == (key not in {"eval_step", "stopping_step"}), key


@pytest.mark.parametrize("model", ["BPR", "SASRec", "HCCF"])
def test_stock_and_other_plugin_runs_follow_the_same_rules(model):
    built = config(model)
    assert run_digest(with_entries(built, epochs=built["epochs"] + 5, checkpoint_dir="elsewhere")) == run_digest(built)
    assert run_digest(with_entries(built, learning_rate=built["learning_rate"] * 2)) != run_digest(built)
