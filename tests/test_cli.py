"""The command line an installed user runs: recbole-llm, python -m recbole_llm, run_recbole_llm.py."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_help_lists_flags_plugin_models_and_property_files():
    done = subprocess.run([sys.executable, "-m", "recbole_llm", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    for text in ("--model", "--dataset", "--config_files", "--nproc", "--recommend", "--users", "--topk", "--out",
                 "GLTA ", "GALRec (GAL-Rec)", "HCCFPlus (HCCF+)", "Graph-Language Token Alignment", "overall.yaml"):
        assert text in done.stdout, text


def test_pip_install_declares_the_recbole_llm_command():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"recbole-llm": "recbole_llm.cli:main"}
