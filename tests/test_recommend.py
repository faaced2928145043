"""Recommending from a saved model: each user's top-k by the model's own scores, training items left out."""

import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import run_recbole_llm
from recbole_llm import compat
from recbole_llm.errors import SavedModelError, UnknownUserError
from recbole_llm.quick_start import load_data_and_model, run_recbole_llm as train
from recbole_llm.recommend import recommend

ROOT = Path(__file__).resolve().parents[1]

# Every test reads a LightGCN and a GLTA that the runner trains first.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]
USERS = ["196", "186", "22"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_llm_path):
    """A LightGCN and a tiny GLTA, each trained for one epoch (per stage) and saved by the runner."""
    folder = tmp_path_factory.mktemp("recommend")
    quiet = {"show_progress": False, "state": "WARNING", "checkpoint_dir": str(folder)}
    lightgcn = train("LightGCN", "ml-100k", config_dict={**quiet, "epochs": 1})["saved_model_file"]
    glta = train("GLTA", "ml-100k", config_dict={
        **quiet, "llm_path": tiny_llm_path, "llm_num_layers": None, "llm_cache_dir": str(folder / "cache"),
        "graph_epochs": 1, "item_alignment_epochs": 1, "user_alignment_epochs": 1, "max_history": 10,
    })["saved_model_file"]
    return {"LightGCN": lightgcn, "GLTA": glta}


def expected_top(model_file, users, k):
    """Top-k item tokens straight from ``full_sort_predict``, each user's training items masked."""
    _, model, dataset, train_data, _, _ = load_data_and_model(model_file)
    train_inter = train_data.dataset.inter_feat
    tokens = dataset.field2id_token
    top = {}
    for user in users:
        uid = dataset.token2id(dataset.uid_field, user)
        with torch.no_grad():
            scores = model.full_sort_predict({model.USER_ID: torch.tensor([uid])}).view(-1)
        scores[train_inter[dataset.iid_field][train_inter[dataset.uid_field] == uid]] = -torch.inf
        scores[0] = -torch.inf
        top[user] = [tokens[dataset.iid_field][i] for i in scores.topk(k).indices.tolist()]
    return top


@pytest.mark.parametrize("model", ["LightGCN", "GLTA"])
def test_printed_lists_are_the_models_top_k_without_training_items(saved, model, capsys):
    assert run_recbole_llm.main([f"--recommend={saved[model]}", f"--users={','.join(USERS)}", "--topk=10"]) == 0
    printed = capsys.readouterr().out.splitlines()
    lists, user = {}, None
    for line in printed:
        if line.startswith("user "):
            user = line[len("user "):-1]
            lists[user] = []
        else:
            lists[user].append(line.split()[1])
    assert lists == expected_top(saved[model], USERS, 10)
    assert "genres:" in printed[1]  # each item carries its description (ml-100k: title and genres)


def test_all_users_go_to_a_csv_file(saved, tmp_path, capsys):
    out = tmp_path / "recs.csv"
    assert run_recbole_llm.main([f"--recommend={saved['LightGCN']}", "--users=all", "--topk=3", f"--out={out}"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 943 * 3 and {r["rank"] for r in rows} == {"1", "2", "3"}
    assert rows[0]["description"] and list(tmp_path.iterdir()) == [out]  # no temporary file left beside it
    by_user = {}
    for row in rows:
        by_user.setdefault(row["user"], []).append(row["item"])
    assert {u: by_user[u] for u in USERS} == expected_top(saved["LightGCN"], USERS, 3)


@pytest.mark.parametrize("argv, error", [
    (["--users=no-such-user"], "is not in dataset 'ml-100k'"),
    (["--users=196", "--dataset=ml-1m"], "of dataset 'ml-100k', not 'ml-1m'"),
    (["--users=196", "--topk=-1"], "topk=-1"),
])
def test_wrong_user_or_dataset_is_one_error_line(saved, capsys, argv, error):
    assert run_recbole_llm.main([f"--recommend={saved['LightGCN']}", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and error in err and "Fix:" in err and err.count("\n") == 1


def test_a_file_that_is_no_checkpoint_is_one_error_line(saved, tmp_path, capsys):
    notes, tensor, truncated = tmp_path / "notes.txt", tmp_path / "tensor.pth", tmp_path / "truncated.pth"
    notes.write_text("not a model\n")
    torch.save(torch.zeros(3), tensor)
    truncated.write_bytes(open(saved["LightGCN"], "rb").read()[:2000])
    for model_file in (notes, tensor, truncated):
        assert run_recbole_llm.main([f"--recommend={model_file}", "--users=196"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "is not a RecBole checkpoint" in err and "Fix:" in err, err
        assert err.count("\n") == 1, err


def test_python_callers_get_the_same_errors(saved, tmp_path):
    with pytest.raises(SavedModelError, match="does not exist"):
        recommend(str(tmp_path / "none.pth"), ["196"])
    with pytest.raises(UnknownUserError, match="Fix:"):
        recommend(saved["LightGCN"], ["196", "no-such-user"])


@pytest.mark.slow
def test_runner_checkpoints_load_weights_only_and_recbole_ones_need_the_trust_flag(saved, tmp_path, capsys):
    for model_file in saved.values():
        safe, unsafe = compat._unsafe_checkpoint_globals(model_file)
        assert safe is not None and unsafe == []  # loaded with weights_only=True
    # A checkpoint written as stock RecBole writes it (pickle protocol 4) needs a full pickle: refused unless trusted.
    state = torch.load(saved["LightGCN"], weights_only=False)
    recbole_file = tmp_path / "recbole.pth"
    torch.save(state, recbole_file, pickle_protocol=4)
    with pytest.raises(SavedModelError, match="protocol 4.*--trust_checkpoint"):
        compat.load_checkpoint(recbole_file)
    assert run_recbole_llm.main([f"--recommend={recbole_file}", "--users=196"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(recbole_file) in err and "--trust_checkpoint" in err, err
    assert run_recbole_llm.main([f"--recommend={recbole_file}", "--users=196", "--topk=3", "--trust_checkpoint"]) == 0
    assert capsys.readouterr().out.startswith("user 196:")


def test_a_loaded_model_evaluates_in_a_fresh_process(saved):
    # RecBole's metrics read np.float, which only Config's __init__ defines; a Config unpickled from a
    # checkpoint skips it. A fresh process, because this one already built Configs.
    code = ("import sys\nfrom recbole.trainer import Trainer\nfrom recbole_llm.quick_start import load_data_and_model\n"
            "config, model, _, _, _, test = load_data_and_model(sys.argv[1])\n"
            "print(Trainer(config, model).evaluate(test, load_best_model=False, show_progress=False)['ndcg@10'])")
    # This checkout's package, whatever the working folder (under xdist a worker's own) or the install.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code, saved["LightGCN"]], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 0 < float(done.stdout.strip().splitlines()[-1]) <= 1


class _Payload:
    """Unpickled, it creates the file ``marker``: what a malicious checkpoint could do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["in the state dict", "as the whole file"])
def test_a_checkpoint_that_would_run_code_is_refused_without_the_trust_flag(saved, tmp_path, capsys, how):
    marker = tmp_path / "code-ran"
    state = torch.load(saved["LightGCN"], weights_only=False)
    evil = tmp_path / "evil.pth"
    torch.save({**state, "other_parameter": _Payload(marker)} if how == "in the state dict" else _Payload(marker), evil)
    code = run_recbole_llm.main([f"--recommend={evil}", "--users=196"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert str(evil) in err and "runs whatever code" in err and "--trust_checkpoint" in err and "Fix:" in err, err
    assert "io.open" in err or "builtins.open" in err, err  # what it would call is named
    assert not marker.exists(), "no code from the file ran"
    with pytest.raises(SavedModelError, match="trust_checkpoint=True"):
        load_data_and_model(str(evil))
    assert not marker.exists()


def test_the_trust_flag_belongs_to_recommend(capsys):
    assert run_recbole_llm.main(["--model=BPR", "--trust_checkpoint"]) == 2
    assert "--trust_checkpoint only applies to --recommend" in capsys.readouterr().err
