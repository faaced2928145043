"""Plugin-first lookups in the RecBole-GNN manner: try recbole_llm, fall back to RecBole."""

import difflib
import importlib
import importlib.util
import os
from pathlib import Path

import recbole
from recbole.data import create_dataset as create_recbole_dataset
from recbole.utils import get_model as get_recbole_model
from recbole.utils import get_trainer as get_recbole_trainer

from recbole_llm.data.checks import check_atomic_file
from recbole_llm.errors import DatasetFormatError, DatasetNotFoundError, UnknownModelError

# CLI spellings from the papers for the class names that Python allows.
MODEL_ALIASES = {
    "GAL-Rec": "GALRec",
    "LightGCN+": "LightGCNPlus",
    "HCCF+": "HCCFPlus",
    "RLMRec-Con": "RLMRecCon",
    "RLMRec-Gen": "RLMRecGen",
}

_PLUGIN_MODEL_DIR = Path(__file__).resolve().parent / "model"
_RECBOLE_MODEL_YAMLS = Path(recbole.__file__).resolve().parent / "properties" / "model"


def plugin_model_names():
    """Class names of the plugin's models: one module ``recbole_llm/model/<name>.py`` each."""
    names = []
    for path in sorted(_PLUGIN_MODEL_DIR.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module = importlib.import_module(f"recbole_llm.model.{path.stem}")
        names += [n for n, obj in vars(module).items() if isinstance(obj, type) and n.lower() == path.stem]
    return names


def get_model(model_name):
    """The model class for a name: plugin model first, then RecBole's.

    Raises:
        UnknownModelError: the name is neither; the message lists the closest known names.
    """
    class_name = MODEL_ALIASES.get(model_name, model_name)
    # A name such as "LightGCN." is no module name: the module lookups below would raise on it.
    named = class_name.isidentifier()
    module_path = f"recbole_llm.model.{class_name.lower()}"
    if named and importlib.util.find_spec(module_path) is not None:
        module = importlib.import_module(module_path)
        if hasattr(module, class_name):
            return getattr(module, class_name)
    stock = sorted(p.stem for p in _RECBOLE_MODEL_YAMLS.glob("*.yaml"))
    try:
        if named:
            return get_recbole_model(class_name)
    except (ValueError, AttributeError):
        pass  # AttributeError: RecBole finds the module of "bpr" (lower case) but no class of that name
    except ImportError as error:
        # RecBole's lookup ends in exlib_recommender, whose package imports lightgbm and xgboost.
        if class_name.lower() in {name.lower() for name in stock}:
            raise UnknownModelError(
                f"Model '{model_name}' needs the package '{error.name}', which is not installed. "
                f"Fix: pip install {error.name}."
            ) from None
    plugin = plugin_model_names()
    plugin += [alias for alias, name in MODEL_ALIASES.items() if name in plugin]
    # Names are case-sensitive, as RecBole's are: "bpr" is answered with "Did you mean BPR?", not resolved.
    by_case = {name.lower(): name for name in plugin + stock}
    close = [by_case[name] for name in difflib.get_close_matches(model_name.lower(), by_case, n=3, cutoff=0.5)]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"Unknown model '{model_name}'.{hint} Plugin models: {', '.join(plugin) or 'none'}. "
        f"Stock RecBole models include {', '.join(stock[:12])}, ... "
        f"(names are case-sensitive). Fix: pass --model=<one of these>."
    )


def get_trainer(model_type, model_name):
    """The trainer class: ``recbole_llm.trainer.<Model>Trainer`` if the plugin has one, else RecBole's,
    made resumable after a kill where it runs RecBole's epoch loop (``recbole_llm.trainer.resume``)."""
    trainer_module = importlib.import_module("recbole_llm.trainer")
    trainer = getattr(trainer_module, f"{model_name}Trainer", None)
    return trainer if trainer is not None else trainer_module.resumable(get_recbole_trainer(model_type, model_name))


def check_dataset_files(config):
    """Fail early, with the fix, when the dataset's .inter file is not where RecBole will look.

    RecBole would otherwise start a download from its URL list, which fails offline with a
    traceback from deep inside its downloader. Each atomic file found is then checked as RecBole
    will read it (``data.checks``).
    """
    dataset_path = Path(config["data_path"])
    name = config["dataset"]
    parts = config["benchmark_filename"] or [None]
    files = [dataset_path / (f"{name}.{part}.inter" if part else f"{name}.inter") for part in parts]
    missing = [f for f in files if not f.is_file()]
    if missing:
        data_root = dataset_path.parent
        raise DatasetNotFoundError(
            f"Dataset '{name}' not found: RecBole looked for {missing[0].resolve()} "
            f"(data_path '{os.path.relpath(data_root)}' + dataset name) and would try to download it, "
            f"which needs network access. Fix: pass --data_path=DIR where DIR/{name}/{name}.inter exists "
            f"(the shared benchmark sets: --data_path=../shared/datasets), or "
            + ("drop --data_path to read the ml-100k that ships with RecBole." if name == "ml-100k" else
               "use --dataset=ml-100k, which ships with RecBole.")
        )
    for path, suffix in [(f, "inter") for f in files] + [(dataset_path / f"{name}.{s}", s) for s in ("item", "user")]:
        if path.is_file():
            check_atomic_file(path, config, suffix)


def create_dataset(config):
    """RecBole's dataset of ``config``, refused with the fix when too few users are left to split."""
    dataset = create_recbole_dataset(config)
    users = dataset.user_num - 1  # id 0 is RecBole's padding
    if users < 2:
        # RecBole would fail later, in its negative sampler or its split, with a message about neither.
        raise DatasetFormatError(
            f"Dataset '{config['dataset']}' has {users} user(s) with interactions after RecBole's filtering; a "
            f"recommender needs at least 2 (and a split needs several interactions each). Fix: use a dataset with "
            f"more users, or relax user_inter_num_interval / item_inter_num_interval / val_interval."
        )
    return dataset
