"""A wheel of the package, installed without the source tree, finds its own property files: the
model defaults come from the installed package, run from an unrelated folder, and user files passed
as ``config_file_list`` (``--config_files``) still sit above them."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

RUN = textwrap.dedent("""
    import json, sys
    import recbole_llm
    from recbole_llm.config import Config
    from recbole_llm.quick_start import run_recbole_llm

    files = ["user.yaml"]
    config = Config("BPR", "ml-100k", config_file_list=files)
    result = run_recbole_llm("BPR", "ml-100k", config_file_list=files,
                             config_dict={"epochs": 1, "show_progress": False})
    print(json.dumps({"package": recbole_llm.__file__, "llm_path": config["llm_path"],
                      "gradient_accumulation_steps": config["gradient_accumulation_steps"],
                      "embedding_size": config["embedding_size"], "ndcg": result["test_result"]["ndcg@10"]}))
""")


def make_venv(venv):
    """A virtual environment that sees the packages of the interpreter running the tests (torch, RecBole, ...),
    whether that interpreter is the system's or itself a venv's, and none of its .pth hooks (an editable
    install of this package); returns its python.

    ``--system-site-packages`` alone links a venv to the base interpreter, so from inside a venv it would
    miss the parent venv's packages: those are added by a .pth file, which lists folders without running them.
    """
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--system-site-packages",
                    str(venv)], check=True)
    python = venv / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         check=True, capture_output=True, text=True).stdout.strip()
    # Every package folder on this interpreter's path: its own, a parent venv's, those its .pth files add.
    parents = [path for path in sys.path if Path(path).name in ("site-packages", "dist-packages") and Path(path).is_dir()]
    (Path(own) / "parent_site_packages.pth").write_text("".join(f"{path}\n" for path in parents))
    return python


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_reads_its_packaged_model_defaults(tmp_path):
    source, wheels, venv, work = (tmp_path / name for name in ("source", "wheels", "venv", "work"))
    # Built from a copy, so setuptools' build/ and egg-info stay out of the checkout.
    shutil.copytree(ROOT / "recbole_llm", source / "recbole_llm", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(source)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("recbole_llm-*.whl")
    python = make_venv(venv)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True)
    work.mkdir()
    (work / "user.yaml").write_text("embedding_size: 32\n")
    # Without PYTHONPATH, which may point at a source tree (a developer's checkout).
    clean = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([str(python), "-c", RUN], cwd=work, capture_output=True, text=True, timeout=300, env=clean)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    # The installed copy, not the source tree or an editable install of it.
    assert Path(found["package"]).resolve().is_relative_to(venv.resolve()), found["package"]
    # Keys only the plugin's properties/overall.yaml sets, read from the wheel's package data.
    assert found["llm_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert found["gradient_accumulation_steps"] == 1
    assert found["embedding_size"] == 32  # the user's file, above the defaults
    assert 0 < found["ndcg"] < 1
