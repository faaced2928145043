"""RecBole 1.2.1 on today's stack (Python 3.11, numpy 2, SciPy 1.17, torch >= 2.6), fixed in one place.

Each fix targets the cause measured on this stack and is applied once, on import of
``recbole_llm``, so that stock RecBole models run through the plugin's runner unchanged.
The fixes that belong to packaging (pins) are listed here too, so this file is the one record:

- ``pandas<3``: pandas 3 silently breaks ``fillna(inplace=True)`` and ``Series.agg(len)`` in
  RecBole's dataset code (pinned in pyproject.toml).
- ``setuptools<81``: ``recbole.quick_start`` imports ``ray.tune`` and ray 2.6.3 imports
  ``pkg_resources``, which setuptools 81 removed (pinned in pyproject.toml).
- torch is pinned by the README's set-up, because ``recbole`` asks for ``torch>=1.10`` and an
  unpinned install pulls a multi-GB CUDA build onto a CPU machine.
- ray 2.6.3 has no wheel above Python 3.11, so the package requires Python 3.11.

Two further fixes live where they act: ``config.Config`` reads command-line overrides only from
the runner (RecBole's Config reads all of ``sys.argv``, pytest's flags included) and starts
torch.distributed with gloo on CPU (RecBole hard-codes NCCL); ``utils.create_dataset`` checks the
dataset's files before RecBole would try to download them.
"""

import functools
import importlib
import pickle
import types
import warnings
from collections import OrderedDict

import numpy as np
import scipy.sparse as sp
import torch

from recbole_llm.errors import SavedModelError
from recbole_llm.helpers import atomic_write

_applied = False


def _restore_numpy_aliases():
    # Config.compatibility_settings reads np.float_, np.complex_ and np.unicode_, and ray.tune (imported by
    # recbole.quick_start) reads np.bool8; numpy 2 removed all four.
    aliases = (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_), ("bool8", np.bool_))
    for alias, target in aliases:
        if alias not in np.__dict__:
            setattr(np, alias, target)


def _restore_dok_update():
    # LightGCN, NGCF, NCL, GCMC, SpectralCF, KGIN and MCCLK fill their adjacency with
    # dok_matrix._update(dict), removed in SciPy 1.17; it was a bulk dict update without checks.
    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = lambda self, data: self._dict.update(data)


def _save_with_torch_protocol(obj, f, pickle_protocol=None, **kwargs):
    # RecBole saves with pickle protocol 4, whose opcodes (FRAME, MEMOIZE, ...) torch's weights-only
    # unpickler does not read: such a file can only be loaded as a full pickle. torch's own default
    # (protocol 2) holds the same objects and loads with weights_only=True (see load_checkpoint).
    torch.save(obj, f, **kwargs)


class _TrustedCheckpointTorch(types.ModuleType):
    """The torch module as RecBole's trainer sees it: ``torch.load`` reads full pickles, ``torch.save``
    writes files that ``load_checkpoint`` can read with ``weights_only=True``.

    torch >= 2.6 loads with ``weights_only=True`` by default, which cannot read RecBole's
    checkpoints: they pickle the Config and numpy state beside the weights. RecBole's trainer only
    loads checkpoints that RecBole itself wrote in this run, so inside that module the old default
    is restored, and nowhere else.
    """

    def __init__(self):
        super().__init__("torch")
        self.load = functools.partial(torch.load, weights_only=False)
        self.save = _save_with_torch_protocol

    def __getattr__(self, name):
        return getattr(torch, name)


# What a RecBole checkpoint pickles beside tensors: its Config, RecBole's enums, numpy scalars and the
# YAML loader class the Config keeps (a reference to a class, not code that runs).
_CHECKPOINT_GLOBALS = (
    ("recbole.config.configurator", "Config"),
    ("recbole_llm.config", "Config"),
    ("recbole.utils.enum_type", "ModelType"),
    ("recbole.utils.enum_type", "InputType"),
    ("recbole.utils.enum_type", "EvaluatorType"),
    ("recbole.utils.enum_type", "FeatureType"),
    ("recbole.utils.enum_type", "FeatureSource"),
    ("yaml.loader", "FullLoader"),
)
# A checkpoint's Config also names its model class, which is allowed when it is one of these packages' models.
_MODEL_PACKAGES = ("recbole.model.", "recbole_llm.model.")


def _unsafe_checkpoint_globals(path):
    """``(globals path may use under weights_only=True, names it needs beyond them)``; the first is None
    where the file needs others, the second is None where they cannot be listed (pickle protocol 4)."""
    from recbole.model.abstract_recommender import AbstractRecommender

    safe = [getattr(importlib.import_module(module), name) for module, name in _CHECKPOINT_GLOBALS]
    numpy_core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    safe += [np.dtype, numpy_core.multiarray.scalar]
    safe += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    known = {f"{obj.__module__}.{obj.__qualname__}" for obj in safe}
    try:
        needed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except pickle.UnpicklingError:
        return None, None  # pickle protocol 4 (RecBole's own trainer): the weights-only unpickler cannot read it
    unsafe = []
    for name in sorted(set(needed) - known):
        module, _, attr = name.rpartition(".")
        model_class = None
        if module.startswith(_MODEL_PACKAGES):
            model_class = getattr(importlib.import_module(module), attr, None)
        if isinstance(model_class, type) and issubclass(model_class, AbstractRecommender):
            safe.append(model_class)
        else:
            unsafe.append(name)
    return (None if unsafe else safe), unsafe


def load_checkpoint(path, map_location="cpu", trust=False):
    """A RecBole checkpoint (config, weights, optimizer state), loaded with ``weights_only=True``
    unless ``trust`` says the file may run code.

    A checkpoint is a pickle: loading one someone else made can run code. Checkpoints written through
    the plugin (plugin or stock model) hold only tensors, the Config, RecBole's enums, numpy scalars
    and the model's class, and load with torch's weights-only unpickler. Those written by stock
    RecBole (pickle protocol 4) or holding other objects cannot: they are refused with a
    ``SavedModelError`` unless ``trust`` (the runner's ``--trust_checkpoint``) loads them as full
    pickles, as transformers' ``trust_remote_code`` lets a user run a model's own code.
    """
    safe, unsafe = _unsafe_checkpoint_globals(path)
    if safe is not None:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location=map_location, weights_only=True)
    if not trust:
        what = (f"it calls {', '.join(unsafe[:3])}" if unsafe else
                "it is pickled with protocol 4, as stock RecBole writes checkpoints")
        raise SavedModelError(
            f"{path} cannot be loaded with torch.load(weights_only=True): {what}, beyond the tensors, RecBole "
            "config and model class a checkpoint needs. Loading it as a full pickle runs whatever code the "
            "file carries. Fix: pass --trust_checkpoint (trust_checkpoint=True from Python) only if you trust "
            "whoever made the file (e.g. your own stock RecBole run); checkpoints the plugin's runner writes "
            "need no flag."
        )
    return torch.load(path, map_location=map_location, weights_only=False)


def _cpu_aware_ddp(module, device_ids=None, **kwargs):
    # RecBole's trainer wraps every model as DDP(model, device_ids=[local_rank]); DDP rejects device_ids
    # for a CPU module, so multi-process training on CPU (gloo) failed before its first step.
    on_cuda = next(module.parameters()).is_cuda
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids if on_cuda else None, **kwargs)


def _atomic(save_checkpoint):
    # RecBole writes the best checkpoint in place: a run killed mid-write leaves a truncated file
    # where the last good one was. Write it through atomic_write (beside it, then renamed over it).
    # Under DDP only rank 0 writes (RecBole's rule, checked here too): every rank has the same file
    # name, so a rank that saw rank 0's partial file on the shared disk and renamed it as well raced
    # rank 0's rename (FileNotFoundError in some runs of the two-process test; results/probes.md).
    @functools.wraps(save_checkpoint)
    def save(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        target = kwargs.pop("saved_model_file", self.saved_model_file)
        atomic_write(target, lambda f: save_checkpoint(self, epoch, verbose=False, saved_model_file=f, **kwargs))
        if verbose:
            self.logger.info(f"Saving current: {target}")

    save.atomic = True
    return save


def _import_sequential_models_without_anomaly_mode():
    # recbole/model/sequential_recommender/sine.py runs torch.autograd.set_detect_anomaly(True) at
    # import, and the package imports every sequential model, so building SASRec, GRU4Rec, BERT4Rec, ...
    # (or anything after them in the same process) trains in autograd's debugging mode: each backward
    # checks every gradient for NaN and each forward op records its Python stack, which slows a SASRec
    # step markedly (benchmarks/notes/amazon-beauty.md, "SASRec"). Importing the
    # package here, once, and restoring the mode keeps the user's own setting and stops RecBole from
    # changing it later.
    enabled, check_nan = torch.is_anomaly_enabled(), torch.is_anomaly_check_nan_enabled()
    import recbole.model.sequential_recommender  # noqa: F401

    torch.autograd.set_detect_anomaly(enabled, check_nan)


def _patch_recbole_trainer():
    import recbole.trainer.trainer as recbole_trainer

    if not isinstance(recbole_trainer.torch, _TrustedCheckpointTorch):
        recbole_trainer.torch = _TrustedCheckpointTorch()
    recbole_trainer.DistributedDataParallel = _cpu_aware_ddp
    if not getattr(recbole_trainer.Trainer._save_checkpoint, "atomic", False):
        recbole_trainer.Trainer._save_checkpoint = _atomic(recbole_trainer.Trainer._save_checkpoint)


# Warnings of other libraries about their own dependencies' APIs, printed before any result of a plain
# run, that a user of the plugin cannot act on. Each is matched by its message and by the module it
# is attributed to, so the same warning raised by any other code (the plugin's included) still shows.
LIBRARY_WARNINGS = (
    # RecBole's reader fills missing values with feat[field].fillna(..., inplace=True); pandas 2.2+ warns
    # that this chained assignment stops working in pandas 3, which pyproject.toml excludes.
    (FutureWarning, r"A value is trying to be set on a copy of a DataFrame or Series through chained assignment",
     r"recbole\.data\.dataset\."),
    # RecBole's trainer builds torch.cuda.amp.GradScaler, deprecated in torch 2.4 for torch.amp.GradScaler.
    (FutureWarning, r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", r"recbole\.trainer\."),
    # LightGCN, NGCF, ... build their adjacency with torch.sparse.FloatTensor, deprecated for sparse_coo_tensor.
    (UserWarning, r"torch\.sparse\.SparseTensor\(indices, values, shape", r"recbole\.model\."),
    # peft reads model.is_gradient_checkpointing, which transformers 5 deprecated (peft 0.21 and older).
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated", r"transformers\.modeling_utils"),
)


def _filter_library_warnings():
    for category, message, module in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def _plain_float_results():
    # RecBole's evaluator returns numpy scalars, which numpy 2 prints as np.float64(0.2431): the runner's
    # "best valid" and "test result" lines, and every result dict a caller keeps, read as Python floats.
    from recbole.evaluator import Evaluator

    if getattr(Evaluator.evaluate, "plain_floats", False):
        return
    evaluate = Evaluator.evaluate

    @functools.wraps(evaluate)
    def plain(self, dataobject):
        return OrderedDict((metric, float(value)) for metric, value in evaluate(self, dataobject).items())

    plain.plain_floats = True
    Evaluator.evaluate = plain


def apply():
    """Apply every runtime fix once; safe to call again."""
    global _applied
    if _applied:
        return
    _restore_numpy_aliases()
    _restore_dok_update()
    _import_sequential_models_without_anomaly_mode()
    _patch_recbole_trainer()
    _filter_library_warnings()
    _plain_float_results()
    _applied = True
