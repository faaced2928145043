"""Checkpoint files: the random states a run draws from, reading a file back, writable folders.

A low-level module (it imports nothing from ``recbole_llm`` but ``errors``), so the resume mixin,
the stage trainers and the caches all use the same three things:

- ``random_states`` / ``restore_random_states``: everything an epoch draws from (torch's, CUDA's,
  numpy's and Python's global states and any ``torch.Generator`` of the run), saved in every
  checkpoint a run resumes from, so that a killed and resumed run ends where an uninterrupted one
  ends (tests/test_resume.py).
- ``load_checkpoint``: ``torch.load`` whose failure (a truncated or foreign file) names the file
  and what to do about it, instead of torch's ``PytorchStreamReader`` message.
- ``check_writable`` and ``write_error``: a folder that cannot take a checkpoint is reported
  before any training, and a failed write (a full disk) names the file it was writing.
"""

import contextlib
import errno
import pickle
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from recbole.utils import init_seed

from recbole_llm.errors import CheckpointError


def random_states(**generators):
    """The global random states and those of ``generators`` (name to ``torch.Generator``; None is skipped),
    as tensors, numbers and strings, which ``torch.load(weights_only=True)`` reads back."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "python": random.getstate(),
        "generators": {name: generator.get_state() for name, generator in generators.items() if generator is not None},
    }


def restore_random_states(states, **generators):
    """Set the states ``random_states`` returned; ``generators`` by the names they were saved under."""
    # torch.load's map_location may have moved the byte tensors to a GPU; generators take CPU ones.
    torch.set_rng_state(states["torch"].cpu())
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])
    name, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    random.setstate(states["python"])
    for name, generator in generators.items():
        if generator is not None and name in states["generators"]:
            generator.set_state(states["generators"][name].cpu())


@contextlib.contextmanager
def own_random_states(seed, reproducibility=True):
    """Run the block under global random states seeded from ``seed`` alone (RecBole's ``init_seed``), and
    give the caller's states back after it, as if the block had drawn nothing."""
    saved = random_states()
    init_seed(seed, reproducibility)
    try:
        yield
    finally:
        restore_random_states(saved)


def load_checkpoint(path, fix, map_location="cpu", weights_only=False):
    """``torch.load(path)``, or a ``CheckpointError`` naming the file and ``fix`` when it cannot be read.

    Without ``weights_only`` only for files a RecBole or plugin trainer wrote: they pickle the Config
    beside the weights. The plugin's training positions are read ``weights_only`` (``run_state``).
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    # torch's weights-only unpickler fails on damaged bytes with IndexError or TypeError too.
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, AttributeError, ValueError, IndexError,
            TypeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"The checkpoint {str(path)!r} cannot be read ({reason}): it is truncated (a full disk, an "
            f"interrupted copy) or not a checkpoint. Fix: {fix}"
        ) from None


def check_writable(directory, key="checkpoint_dir"):
    """Create ``directory`` and write a file in it, or raise a ``CheckpointError`` before any training."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise CheckpointError(
            f"{key}={str(directory)!r} cannot hold checkpoints ({error.strerror or error}): training would "
            f"stop at its first save. Fix: pass --{key}=DIR with a writable DIR, or make that folder writable."
        ) from None


def disk_failure(error):
    """Whether ``error``, raised while writing a file, comes from the disk (full, read-only, gone): an
    OSError, or torch's RuntimeError around one (``torch.save`` reports a short write as "unexpected pos")."""
    if isinstance(error, OSError):
        return True
    return isinstance(error, RuntimeError) and (
        isinstance(error.__context__, OSError) or any(s in str(error) for s in ("unexpected pos", "failed writing")))


def write_error(path, error):
    """The ``CheckpointError`` for a write of ``path`` that failed with ``error`` (an OSError, or
    torch's RuntimeError around one); the previous file at ``path``, if any, is intact."""
    path = Path(path)
    full = any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in (error, error.__context__))
    full = full or "No space left" in str(error)
    # torch.save into a path reports a short write only as "unexpected pos N vs M", without the errno.
    short = isinstance(error, RuntimeError) and not full
    if isinstance(error, (NotADirectoryError, FileExistsError)):
        blocker = next((p for p in path.parents if p.is_file()), path.parent)
        return CheckpointError(f"Writing {str(path)!r} failed: {str(blocker)!r} is a file, not a folder. "
                               "Fix: choose a path under a folder, or move that file away.")
    if isinstance(error, PermissionError) or getattr(error, "errno", None) == errno.EROFS:
        return CheckpointError(f"Writing {str(path)!r} failed: {error.strerror}. "
                               "Fix: choose a folder you can write to, or make that one writable.")
    if full or short:
        reason = "the disk is full" if full or _nearly_full(path) else "the disk took fewer bytes than written (full, or over a quota)"
    else:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return CheckpointError(
        f"Writing {str(path)!r} failed: {reason}. The previous version of that file, if any, is unchanged. "
        f"Fix: free space there (or write to another disk) and run the same command again."
    )


def _nearly_full(path, margin=64 * 2**20):
    """Whether the file system of ``path``'s folder has less than ``margin`` bytes free."""
    try:
        return shutil.disk_usage(next(p for p in path.parents if p.exists())).free < margin
    except (OSError, StopIteration):
        return False
