"""Mistakes a newcomer makes get one paragraph naming the problem and the fix, not a traceback."""

import pytest

import run_recbole_llm
from recbole_llm.config import Config
from recbole_llm.errors import DatasetNotFoundError, UnknownModelError
from recbole_llm.utils import get_model


def run_cli(capsys, *argv):
    code = run_recbole_llm.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


def test_unknown_model_suggests_close_names(capsys):
    code, err = run_cli(capsys, "--model=LightGNC", "--dataset=ml-100k")
    assert code == 2
    assert err.startswith("error: Unknown model 'LightGNC'.") and "LightGCN" in err and "Fix:" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_unknown_model_from_python_raises_the_same_error():
    with pytest.raises(UnknownModelError, match="NoSuchModel"):
        get_model("NoSuchModel")


def test_missing_dataset_says_where_it_looked_and_how_to_fix(capsys, tmp_path):
    code, err = run_cli(capsys, "--model=BPR", "--dataset=ml-10m", f"--data_path={tmp_path}")
    assert code == 2
    assert str(tmp_path / "ml-10m" / "ml-10m.inter") in err
    assert "--data_path" in err and "Traceback" not in err


def test_missing_dataset_raises_before_download():
    with pytest.raises(DatasetNotFoundError, match="network"):
        Config("BPR", "no-such-dataset", config_dict={"data_path": "/nonexistent"})


def test_stock_model_with_missing_package_names_the_package():
    with pytest.raises(UnknownModelError, match="pip install lightgbm"):
        get_model("lightgbm")


def test_bad_override_syntax(capsys):
    code, err = run_cli(capsys, "--model=BPR", "--dataset=ml-100k", "--epochs")
    assert code == 2 and "--key=value" in err
