"""RecBole's Config, extended with the plugin's property files, model names and two fixes."""

import functools
import os
import warnings
from pathlib import Path

import torch
import yaml
from recbole.config import Config as RecBoleConfig

from recbole.utils import ModelType

from recbole_llm.config_rules import check_evaluation, check_values, known_keys, unknown_keys
from recbole_llm.data.item_text import check_item_text_fields
from recbole_llm.errors import ConfigValueError, UnknownKeyWarning
from recbole_llm.helpers import PROPERTIES_DIR, check_cache_root
from recbole_llm.utils import check_dataset_files, get_model


def _yaml_collection(value):
    """``[title, genre]`` as the list a property file would give: RecBole reads a command-line value with
    Python's ``eval``, which leaves a list of unquoted names as the string ``'[title, genre]'``."""
    if isinstance(value, str) and value[:1] + value[-1:] in ("[]", "{}"):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


_known_keys = functools.cache(known_keys)


def resolve_config_file(path):
    """``path`` itself, or for a ``properties/...`` path that is not there, the package's file of that
    name: the property files ship inside the package, so ``--config_files=properties/glta-paper.yaml``
    works from any folder, as the README writes it."""
    packaged = PROPERTIES_DIR.parent / path
    if not os.path.exists(path) and Path(path).parts[:1] == ("properties",) and packaged.is_file():
        return str(packaged)
    return path


def check_config_file(path):
    """A ``config_files`` entry must exist and parse as YAML; RecBole would raise a bare
    ``FileNotFoundError``, or a YAML error that does not name the file."""
    try:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f)
    except OSError as error:
        raise ConfigValueError(f"Config file {path!r} cannot be read ({error.strerror}). "
                               "Fix: pass --config_files with existing YAML files, separated by spaces.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigValueError(f"Config file {path!r} is not valid YAML{where}: {problem}. "
                               "Fix: correct that line (YAML wants 'key: value', one per line).") from None
    except UnicodeDecodeError as error:
        raise ConfigValueError(f"Config file {path!r} is not UTF-8 text (byte {error.start}). "
                               "Fix: save it as UTF-8.") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigValueError(f"Config file {path!r} holds a YAML {type(loaded).__name__}, not 'key: value' entries. "
                               "Fix: write one 'key: value' per line, e.g. 'epochs: 20' (no leading '- ').")


class Config(RecBoleConfig):
    """RecBole's Config, plus the plugin's own defaults.

    Precedence stays RecBole's: command line > ``config_dict`` > ``config_file_list`` > plugin
    property files > RecBole's property files. The plugin's files are
    ``recbole_llm/properties/overall.yaml`` (keys every plugin model shares, e.g. ``llm_path``),
    ``recbole_llm/properties/model/<Model>.yaml`` (after those of its plugin base classes) and
    ``recbole_llm/properties/dataset/<dataset>.yaml``.

    Differences from RecBole's Config, all deliberate:

    - Command-line overrides come only from ``cmd_args`` (the runner passes its unparsed
      ``--key=value`` arguments). RecBole's Config reads all of ``sys.argv``, so any program that
      builds a Config (pytest, a notebook, a benchmark script) would have its own flags taken as
      config entries.
    - Multi-process training uses gloo when the device is the CPU; RecBole hard-codes NCCL.
    - Sequential models with ``loss_type: CE`` default to no negative sampling. RecBole 1.2.1's
      overall.yaml samples one negative for every model and then rejects every CE sequential model
      (SASRec, GRU4Rec, BERT4Rec, ...) unless the user turns sampling off by hand.
    - Every numeric key's type and range is checked here against one table
      (``config_rules.RULES``), and a key that neither RecBole nor the plugin reads gets a warning
      with the closest known keys; RecBole would ignore a typo such as ``--learing_rate``.
    - The dataset's files (and item text columns, for models that read them) are checked here, so a
      wrong ``data_path`` is reported before anything is logged or loaded.
    """

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None, cmd_args=None):
        self._cmd_args = list(cmd_args or [])
        config_file_list = [resolve_config_file(path) for path in config_file_list or []] or None
        for path in config_file_list or []:
            check_config_file(path)
        super().__init__(model, dataset, config_file_list, config_dict)
        for key, close in unknown_keys(self.external_config_dict, _known_keys()):
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            warnings.warn(f"{key} is not a key RecBole or recbole_llm reads, so it changes nothing.{hint}",
                          UnknownKeyWarning, stacklevel=2)
        check_dataset_files(self)
        if getattr(self.model_class, "uses_item_text", False):
            check_item_text_fields(self)
            check_cache_root(self["llm_cache_dir"])

    def _load_cmd_line(self):
        cmd_config_dict = {}
        for arg in self._cmd_args:
            name, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
            if not name or not sep:
                raise ConfigValueError(
                    f"Command-line argument '{arg}' is not of the form --key=value. "
                    "Fix: write config overrides as --key=value, e.g. --learning_rate=0.001."
                )
            if name in cmd_config_dict and cmd_config_dict[name] != value:
                raise ConfigValueError(
                    f"--{name} is given twice with different values ({cmd_config_dict[name]} and {value}). "
                    "Fix: keep one."
                )
            cmd_config_dict[name] = value
        converted = self._convert_config_dict(cmd_config_dict)
        # YAML's null spellings mean None on the command line too (RecBole would keep the string '~').
        return {key: None if value in ("~", "null", "None") else _yaml_collection(value) for key, value in converted.items()}

    def _get_model_and_dataset(self, model, dataset):
        if model is None and "model" not in self.external_config_dict:
            raise ConfigValueError("No model given. Fix: pass --model=<name>, e.g. --model=GLTA or --model=LightGCN.")
        if dataset is None and "dataset" not in self.external_config_dict:
            raise ConfigValueError("No dataset given. Fix: pass --dataset=<name>, e.g. --dataset=ml-100k.")
        model = self.external_config_dict["model"] if model is None else model
        dataset = self.external_config_dict["dataset"] if dataset is None else dataset
        model_class = get_model(model) if isinstance(model, str) else model
        return model_class.__name__, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        # A plugin model inherits its plugin base classes' property files (base first, its own last):
        # HCCF+'s file lists only what it adds to HCCF's.
        bases = [cls.__name__ for cls in reversed(model_class.__mro__[1:]) if cls.__module__.startswith("recbole_llm.")]
        for path in (
            PROPERTIES_DIR / "overall.yaml",
            *(PROPERTIES_DIR / "model" / f"{name}.yaml" for name in bases + [model]),
            PROPERTIES_DIR / "dataset" / f"{dataset}.yaml",
        ):
            if path.is_file():
                loaded = self._update_internal_config_dict(str(path)) or {}
                if path.parent.name == "dataset":
                    self.parameters["Dataset"] += [k for k in loaded if k not in self.parameters["Dataset"]]

    def _set_default_parameters(self):
        cfg = self.final_config_dict
        check_values(cfg)  # first thing once the entries are merged, before RecBole's own checks read them
        check_evaluation(cfg)
        if (
            cfg.get("loss_type") == "CE"
            and cfg["MODEL_TYPE"] == ModelType.SEQUENTIAL
            and "train_neg_sample_args" not in self.external_config_dict
        ):
            cfg["train_neg_sample_args"] = None
        super()._set_default_parameters()
        if self.dataset == "ml-100k" and "data_path" in self.external_config_dict:
            # RecBole always reads ml-100k from its own package, whatever data_path says.
            cfg["data_path"] = os.path.join(self.external_config_dict["data_path"], self.dataset)

    def _init_device(self):
        distributed = "local_rank" in self.final_config_dict
        use_cuda = torch.cuda.is_available() and str(self.final_config_dict["gpu_id"]).strip() not in ("", "-1")
        if not distributed or use_cuda:
            super()._init_device()
            return
        # RecBole's own branch would call init_process_group(backend="nccl"), which has no CPU path.
        cfg = self.final_config_dict
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        torch.distributed.init_process_group(
            backend="gloo",
            rank=cfg["local_rank"] + cfg["offset"],
            world_size=cfg["world_size"],
            init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
        )
        cfg["device"] = torch.device("cpu")
        cfg["single_spec"] = False
        if cfg["local_rank"] != 0:
            cfg["state"] = "error"
            cfg["show_progress"] = False
            cfg["verbose"] = False
