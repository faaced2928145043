"""Config's plugin behaviour and the RecBole compatibility fixes."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import recbole_llm  # noqa: F401  (applies the fixes)
from recbole_llm.config import Config
from recbole_llm.errors import ConfigValueError

ROOT = Path(__file__).resolve().parents[1]


def test_numpy_aliases_recbole_and_ray_read_exist():
    assert np.float_ is np.float64 and np.complex_ is np.complex128
    assert np.unicode_ is np.str_ and np.bool8 is np.bool_


def test_dok_update_fills_the_matrix():
    matrix = sp.dok_matrix((3, 3), dtype=np.float32)
    matrix._update({(0, 1): 1.0, (2, 0): 2.0})
    assert matrix.toarray().tolist() == [[0, 1, 0], [0, 0, 0], [2, 0, 0]]


def test_recbole_trainer_loads_its_own_pickled_checkpoints(tmp_path):
    import recbole.trainer.trainer as recbole_trainer

    path = tmp_path / "ckpt.pth"
    torch.save({"config": {"nested": np.arange(3)}, "state_dict": {}}, path)
    with pytest.raises(Exception):
        torch.load(path)  # torch's own default stays strict everywhere else
    assert recbole_trainer.torch.load(path)["config"]["nested"].tolist() == [0, 1, 2]


def test_checkpoint_is_written_by_rank_zero_only(tmp_path):
    # Every rank of a DDP run has the same checkpoint name; a rank other than 0 that also renamed
    # rank 0's partial file raced it (FileNotFoundError in the two-process test, 1 run in 20).
    import recbole.trainer.trainer as recbole_trainer

    class Trainer:
        saved_model_file = str(tmp_path / "model.pth")
        cur_step, best_valid_score = 0, 0.0
        model = torch.nn.Linear(1, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        _save_checkpoint = recbole_trainer.Trainer._save_checkpoint

        def __init__(self, rank):
            self.config = {"single_spec": False, "local_rank": rank}
            self.model.other_parameter = lambda: None

    rank_one = Trainer(1)
    (tmp_path / "model.pth.partial").write_bytes(b"rank 0 is writing this")
    rank_one._save_checkpoint(0, verbose=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth.partial"]  # left to rank 0
    (tmp_path / "model.pth.partial").unlink()
    Trainer(0)._save_checkpoint(0, verbose=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pth"]
    assert "state_dict" in recbole_trainer.torch.load(tmp_path / "model.pth")


def test_sys_argv_is_not_read(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pytest", "--epochs=7", "-q", "--tb=short"])
    assert Config("BPR", "ml-100k")["epochs"] != 7


def test_cmd_args_override_and_convert():
    config = Config("BPR", "ml-100k", config_dict={"epochs": 3}, cmd_args=["--epochs=5", "--learning_rate=0.01"])
    assert config["epochs"] == 5 and config["learning_rate"] == 0.01


@pytest.mark.parametrize("bad", [["--epochs"], ["epochs=5"], ["--epochs=1", "--epochs=2"]])
def test_malformed_cmd_args_are_user_errors(bad):
    with pytest.raises(ConfigValueError, match="--"):
        Config("BPR", "ml-100k", cmd_args=bad)


def test_plugin_property_files_are_loaded():
    config = Config("BPR", "ml-100k")
    assert config["item_text_fields"] == ["movie_title", "class"]
    assert config["llm_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "item_text_fields" in config.parameters["Dataset"]


def test_plugin_models_inherit_their_base_classes_property_files():
    # HCCF+'s file lists only the text fusion; HCCF's keys come from HCCF.yaml (official defaults).
    config = Config("HCCF+", "ml-100k")
    assert config["hyper_num"] == 128 and config["keep_rate"] == 0.5 and config["text_fusion"] == "add"
    # LightGCN+'s LightGCN part comes from FastLightGCN.yaml (RecBole has no file for either).
    config = Config("LightGCN+", "ml-100k")
    assert config["embedding_size"] == 64 and config["n_layers"] == 2 and config["reg_weight"] == 1e-05


def test_user_config_file_beats_plugin_defaults(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("llm_dtype: bfloat16\nitem_text_template: '{movie_title}'\n")
    config = Config("BPR", "ml-100k", config_file_list=[str(path)])
    assert config["llm_dtype"] == "bfloat16" and config["item_text_template"] == "{movie_title}"


def test_ce_sequential_models_default_to_no_negative_sampling():
    assert Config("SASRec", "ml-100k")["train_neg_sample_args"]["distribution"] == "none"
    assert Config("BPR", "ml-100k")["train_neg_sample_args"]["distribution"] == "uniform"


def test_single_process_config_stays_single():
    config = Config("BPR", "ml-100k")
    assert config["single_spec"] and config["device"].type in ("cpu", "cuda")


def _anomaly_mode_after(code):
    """Anomaly mode in a fresh interpreter after ``code`` (this process imported recbole_llm long ago)."""
    import subprocess

    script = f"import torch\n{code}\nprint(torch.is_anomaly_enabled())"
    # This checkout's package, whatever the working folder (under xdist a worker's own) or the install.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_sequential_models_do_not_switch_on_anomaly_mode():
    # RecBole's SINE module calls torch.autograd.set_detect_anomaly(True) at import, which the
    # package's __init__ reaches for every sequential model.
    assert _anomaly_mode_after("import recbole.model.sequential_recommender") == "True"
    assert _anomaly_mode_after("import recbole_llm\nfrom recbole_llm.utils import get_model\n"
                               "get_model('SASRec'); get_model('SINE')") == "False"
    # A user who wants it keeps it.
    assert _anomaly_mode_after("torch.autograd.set_detect_anomaly(True)\nimport recbole_llm\n"
                               "from recbole_llm.utils import get_model\nget_model('SASRec')") == "True"


def test_a_properties_path_reads_the_packaged_file_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config("GLTA", "ml-100k", config_file_list=["properties/glta-paper.yaml"])
    assert config["score_fusion"] == "none" and config["lm_holdout_ratio"] == 0
    (tmp_path / "properties").mkdir()
    (tmp_path / "properties" / "glta-paper.yaml").write_text("lm_holdout_ratio: 0.2\n")
    assert Config("GLTA", "ml-100k", config_file_list=["properties/glta-paper.yaml"])["lm_holdout_ratio"] == 0.2


def test_glta_prompts_show_20_history_items_by_default_and_on_the_papers_path():
    assert Config("GLTA", "ml-100k")["max_history"] == 20
    assert Config("GLTA", "ml-100k", config_file_list=["properties/glta-paper.yaml"])["max_history"] == 20
    # The GPU file, read after the paper file, sets its own.
    gpu = Config("GLTA", "ml-100k", config_file_list=["properties/glta-paper.yaml", "properties/glta-paper-gpu.yaml"])
    assert gpu["max_history"] == 50
