"""Low-level helpers every layer of the package may use: atomic file writes, the cache folder,
optional config entries, call timing.

This module sits below everything else (it imports only ``checkpoint``, which imports only
``errors``), so the registry (``utils.py``), the trainers and the data transforms can all use it without an import circle.
"""

import copy
import functools
import os
import tempfile
import time
from pathlib import Path

import torch
import yaml
from recbole.utils import set_color
from tqdm import tqdm

from recbole_llm.checkpoint import disk_failure, write_error
from recbole_llm.errors import CheckpointError

# Shipped inside the package (package data), so a wheel install finds them as an editable one does.
PROPERTIES_DIR = Path(__file__).resolve().parent / "properties"


def atomic_write(path, write, mode="wb"):
    """Write ``path`` through ``write(file)`` into a temporary file beside it, then rename it into place.

    A run killed mid-write leaves the previous file (or none), never a truncated one: ``os.replace``
    is atomic on one file system. Used for every checkpoint, cache and result file the plugin writes.
    A write the disk refuses (full, read-only) raises a ``CheckpointError`` naming ``path``.
    """
    path = Path(path)
    partial = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The temporary name adds about 18 characters to the file's: cut, so that any name the file system
        # takes (255 bytes) still has a temporary one it takes.
        with tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".partial",
                                         delete=False) as f:
            partial = f.name
            write(f)
        os.replace(partial, path)
    except BaseException as error:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)
        if disk_failure(error):
            raise write_error(path, error) from error
        raise


def atomic_write_text(path, text):
    """``text`` through ``atomic_write``, as UTF-8 (tables and README carry ± and †, whatever the locale)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_save(obj, path):
    """``torch.save`` through ``atomic_write``."""
    atomic_write(path, lambda f: torch.save(obj, f))


def with_entries(config, **entries):
    """A shallow copy of ``config`` with ``entries`` set (the original is left as it is)."""
    changed = copy.copy(config)
    changed.final_config_dict = {**config.final_config_dict, **entries}
    return changed


@functools.cache
def property_keys(model_name):
    """The keys ``properties/model/<model_name>.yaml`` sets (none when there is no such file)."""
    path = PROPERTIES_DIR / "model" / f"{model_name}.yaml"
    return frozenset(yaml.safe_load(path.read_text(encoding="utf-8")) or ()) if path.is_file() else frozenset()


def option(config, key, default):
    """``config[key]``, or ``default`` when absent or null; works for RecBole Config and dicts."""
    value = config[key] if key in config else None
    return default if value is None else value


def cache_root(llm_cache_dir=None):
    """Where the plugin caches converted backbones and computed texts and embeddings: the config's
    ``llm_cache_dir``, else ``$RECBOLE_LLM_CACHE``, else ``~/.cache/recbole_llm``."""
    return Path(llm_cache_dir or os.environ.get("RECBOLE_LLM_CACHE") or Path.home() / ".cache" / "recbole_llm")


def check_cache_root(llm_cache_dir=None):
    """Create ``cache_root`` and write a file in it, or raise a ``CheckpointError`` naming where its path came
    from: a model that reads text would otherwise convert its backbone first and fail at the first save."""
    root = cache_root(llm_cache_dir)
    source = ("llm_cache_dir" if llm_cache_dir else
              "$RECBOLE_LLM_CACHE" if os.environ.get("RECBOLE_LLM_CACHE") else "the default cache folder")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as error:
        blocker = next((p for p in [root, *root.parents] if p.is_file()), None)
        reason = f"{blocker} is a file, not a folder" if blocker else (error.strerror or str(error))
        raise CheckpointError(
            f"The cache folder {str(root)!r} ({source}) cannot be written: {reason}. The plugin keeps converted "
            "backbones, item texts and embeddings there. Fix: point --llm_cache_dir=DIR (or RECBOLE_LLM_CACHE) "
            "at a writable folder."
        ) from None


def time_calls(obj, method, seconds):
    """Append the duration of every call of ``obj.method`` to the list ``seconds``."""
    original = getattr(obj, method)

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    setattr(obj, method, timed)


def progress(total, description, show_progress, unit="it"):
    """A progress bar with a rate and an ETA, drawn as RecBole draws its epochs' (tqdm, 100 columns);
    nothing when ``show_progress`` is off. Advance it with ``.update(n)``; use it as a context manager."""
    return tqdm(total=total, desc=set_color(description, "pink"), unit=unit, ncols=100, disable=not show_progress)
