"""A plain run's console: no warnings of other libraries a user cannot act on, results as plain numbers."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys, warnings
from recbole_llm.cli import main
from recbole_llm.llm import load_backbone

load_backbone({{"llm_path": {llm!r}, "lora_r": 2}})  # peft reads transformers' deprecated is_gradient_checkpointing
code = main(["--model=LightGCN", "--dataset=ml-100k", "--epochs=1", "--show_progress=False"])
# The filters match other libraries' modules only: the same message from anywhere else still shows.
warnings.warn("A value is trying to be set on a copy of a DataFrame or Series through chained assignment", FutureWarning)
sys.exit(code)
"""


@pytest.mark.slow
def test_plain_run_prints_no_library_warnings_and_plain_numbers(tmp_path, tiny_llm_path):
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(llm=tiny_llm_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    console = done.stdout + done.stderr
    assert done.returncode == 0, console[-2000:]
    assert console.count("Warning") == 1 and "<string>" in console  # only the script's own warning
    results = [line for line in console.splitlines() if "best valid" in line or "test result" in line]
    assert len(results) == 2 and all("ndcg@10 : 0." in line for line in results)
    assert "np.float64" not in console


def test_text_embeddings_show_one_bar_and_one_closing_line(tiny_llm_path, capsys, caplog):
    import logging

    from recbole_llm.data.text_embedding import embed_texts

    texts = ["a red lamp", "", "jazz records", "a blue chair"]
    with caplog.at_level(logging.INFO, logger="recbole_llm"):
        embed_texts(texts, {"llm_path": tiny_llm_path, "show_progress": True}, batch_size=2)
    bar = capsys.readouterr().err
    assert "Text embeddings" in bar and "3/3" in bar and "text/s" in bar  # count, rate and ETA of tqdm
    closing = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Embedded")]
    # The seconds depend on the machine's load (a busy core reads "in 1 s"), so only their form is checked.
    assert len(closing) == 1 and re.fullmatch(r"Embedded 3 texts with backbone in \d+ s", closing[0]), closing
