"""The run folders and the stage-1 cache are named by digests of the config: moving property files
or code must not change them, or every existing resume folder and cached stage 1 is orphaned.

The expected values were computed on the code before the trainers shared ``trainer/run_state.py``
(commit c1304e4: ``glta_trainer.run_digest(config)``, ``graph_digest(config, <Trainer>.LATER_STAGE_KEYS)``,
GAL-Rec's run digest on the config with ``epochs=None``), from the committed property files, by
building each ``Config`` as ``config()`` below does.
"""

import os

import pytest

from recbole_llm.config import Config
from recbole_llm.model.galrec import GALRec
from recbole_llm.model.glta import GLTA
from recbole_llm.trainer.graph_stage_trainer import graph_cache_digest
from recbole_llm.trainer.run_state import run_digest, with_entries

DATA = "../shared/datasets"

# The text baselines' digests changed on purpose when they gained text_encoder (minilm by default):
# their text vectors, and so their training, differ from the backbone's, so they must not resume
# a folder of a run on the backbone's vectors.
RUN_DIGESTS = {
    "BPR": "6e1db68005f1", "LightGCN": "c6a2c4d61655", "SASRec": "802535d4ed53", "LightGCNPlus": "d24292d98592",
    "HCCF": "9eed387f1a9a", "HCCFPlus": "10dc4ead709e", "RLMRecCon": "fb2f553eac5a", "RLMRecGen": "30060901310b",
    "FastLightGCN": "854b22ce3d03",
}
# (model, dataset): (run digest, stage-1 cache digest). The run digests changed on purpose when
# GLTA's and GAL-Rec's defaults gained score_fusion, lm_holdout_ratio (and GLTA use_item_text and
# train_item_side), again with ordered_context (GAL-Rec's context on time-ordered data), GLTA's
# once more with max_history 40, and GAL-Rec's with L0 alone on 6144 users an epoch: such a run
# trains something else and must not resume an older folder. GAL-Rec's changed again when it gained
# held_out_targets (a new entry changes the digest, although its default trains as before), and
# with learning_rate 5e-4; GLTA's when it gained history_text (none, its default, trains as before);
# both when they gained projector and lora_lr (linear and ~, their defaults, train as before). Their
# stage-1 cache digests are the ones computed on c1304e4: the LightGCN of all training interactions
# is the same, so older caches still serve.
LLM_DIGESTS = {
    ("GLTA", "ml-100k"): ("30880b7d8ae7", "7e225be1802a"),
    ("GALRec", "ml-100k"): ("80ba8ee2a56c", "23670f0e528c"),
    ("GLTA", "ml-1m"): ("2707354dd878", "944343bc6c92"),
    ("GALRec", "amazon-beauty"): ("7799193c9a40", "6d0ef2178e00"),
}


def config(model, dataset="ml-100k", **entries):
    built = Config(model, dataset, config_dict=entries or None)
    # The two machine-dependent entries, pinned: RecBole's absolute ml-100k path and the device.
    built.final_config_dict["data_path"] = f"dataset/{dataset}"
    built.final_config_dict["device"] = "cpu"
    return built


@pytest.mark.parametrize("model", sorted(RUN_DIGESTS))
def test_run_digests_of_the_property_files_are_unchanged(model):
    assert run_digest(config(model)) == RUN_DIGESTS[model]


@pytest.mark.parametrize("model, dataset", sorted(LLM_DIGESTS))
def test_run_and_stage_1_cache_digests_of_glta_and_galrec_are_unchanged(model, dataset):
    entries = {} if dataset == "ml-100k" else {"data_path": DATA}
    if entries and not os.path.isdir(os.path.join(DATA, dataset)):
        pytest.skip(f"{DATA}/{dataset} is not here")
    built = config(model, dataset, **entries)
    model_class = {"GLTA": GLTA, "GALRec": GALRec}[model]
    run = run_digest(with_entries(built, epochs=None) if model == "GALRec" else built)
    assert (run, graph_cache_digest(built, model_class)) == LLM_DIGESTS[model, dataset]
