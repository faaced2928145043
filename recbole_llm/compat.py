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
import os
import types

import numpy as np
import scipy.sparse as sp
import torch

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


class _TrustedCheckpointTorch(types.ModuleType):
    """The torch module as RecBole's trainer sees it, with ``torch.load`` reading full pickles.

    torch >= 2.6 loads with ``weights_only=True`` by default, which cannot read RecBole's
    checkpoints: they pickle the Config and numpy state beside the weights. RecBole's trainer only
    loads checkpoints that RecBole itself wrote, so inside that module the old default is restored,
    and nowhere else.
    """

    def __init__(self):
        super().__init__("torch")
        self.load = functools.partial(torch.load, weights_only=False)

    def __getattr__(self, name):
        return getattr(torch, name)


def _cpu_aware_ddp(module, device_ids=None, **kwargs):
    # RecBole's trainer wraps every model as DDP(model, device_ids=[local_rank]); DDP rejects device_ids
    # for a CPU module, so multi-process training on CPU (gloo) failed before its first step.
    on_cuda = next(module.parameters()).is_cuda
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids if on_cuda else None, **kwargs)


def _atomic(save_checkpoint):
    # RecBole writes the best checkpoint in place: a run killed mid-write leaves a truncated file
    # where the last good one was. Write beside it, then rename over it.
    # Under DDP only rank 0 writes (RecBole's rule, checked here too): every rank has the same file
    # name, so a rank that saw rank 0's partial file on the shared disk and renamed it as well raced
    # rank 0's rename (FileNotFoundError in some runs of the two-process test; results/probes.md).
    @functools.wraps(save_checkpoint)
    def save(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        target = kwargs.pop("saved_model_file", self.saved_model_file)
        partial = f"{target}.partial"
        save_checkpoint(self, epoch, verbose=False, saved_model_file=partial, **kwargs)
        os.replace(partial, target)
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


def apply():
    """Apply every runtime fix once; safe to call again."""
    global _applied
    if _applied:
        return
    _restore_numpy_aliases()
    _restore_dok_update()
    _import_sequential_models_without_anomaly_mode()
    _patch_recbole_trainer()
    _applied = True
