"""Frozen text embeddings of items and users from the configured language model, cached on disk.

LightGCN+, HCCF+, RLMRec-Con, RLMRec-Gen and GAL-Rec read one vector per item (its description)
and, for the baselines, one per user (the descriptions of the user's training items, the closest
offline stand-in for RLMRec's generated profiles). They are computed once per (backbone, texts)
and never trained, so every later run, seed and model reads them from the cache.

- Item text: ``item_descriptions(dataset)`` (``item_text_fields`` / ``item_text_template``).
- User text: ``"The user interacted with: d1; d2; ..."`` over the first ``user_text_items`` of the
  user's training items in RecBole's internal order (training split only: the dataset a model
  receives is the training split, so valid/test items can never leak into a profile).
- Embedding: the mean of the backbone's last hidden states over the text's tokens (padding masked),
  ``text_max_tokens`` tokens at most, through ``load_backbone`` (so ``llm_path``, ``llm_num_layers``
  and ``llm_dtype`` apply; LoRA does not: the encoder is loaded without it).

The cache file ``<llm_cache_dir>/text_embedding/<dataset>-<digest>.pt`` is keyed by the backbone
options, the pooling and a digest of every text, and written atomically.
"""

import hashlib
import json
import logging
import time

import torch

from recbole_llm.data.item_text import item_descriptions
from recbole_llm.helpers import atomic_write, cache_root, option, progress
from recbole_llm.llm import load_backbone

logger = logging.getLogger(__name__)

BACKBONE_KEYS = ("llm_path", "llm_cache_dir", "llm_num_layers", "llm_dtype")


def user_profile_texts(dataset, descriptions, n_items):
    """One text per internal user id from the descriptions of its first ``n_items`` training items."""
    matrix = dataset.inter_matrix(form="csr")
    texts = [""] * dataset.user_num
    for user in range(1, dataset.user_num):
        items = matrix.indices[matrix.indptr[user]:matrix.indptr[user + 1]][:n_items]
        if len(items):
            texts[user] = "The user interacted with: " + "; ".join(descriptions[i] for i in items)
    return texts


@torch.no_grad()
def embed_texts(texts, config, batch_size=32):
    """Mean-pooled last hidden states of ``texts`` under the configured backbone: (len(texts), hidden)."""
    backbone_config = {key: config[key] for key in BACKBONE_KEYS if key in config}
    model, tokenizer = load_backbone(backbone_config)
    max_tokens = option(config, "text_max_tokens", 128)
    out = torch.zeros(len(texts), model.config.hidden_size)
    todo = [i for i, text in enumerate(texts) if text]
    # Sorting by length keeps padding, and so wasted compute, small.
    todo.sort(key=lambda i: len(texts[i]))
    began = time.perf_counter()
    with progress(len(todo), "Text embeddings", option(config, "show_progress", False), unit="text") as bar:
        for start in range(0, len(todo), batch_size):
            rows = todo[start:start + batch_size]
            inputs = tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True, truncation=True,
                               max_length=max_tokens)
            hidden = model(**inputs).last_hidden_state.float()
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out[rows] = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            bar.update(len(rows))
    logger.info("Embedded %d texts in %.0f s", len(todo), time.perf_counter() - began)
    return out


def text_embeddings(dataset, config=None, users=True):
    """(user embeddings or None, item embeddings), float32 CPU tensors indexed by internal ids.

    Row 0 (RecBole's padding id) and users or items without text are zeros. Computed once and
    then read from the cache (see the module docstring).
    """
    config = config if config is not None else dataset.config
    descriptions = item_descriptions(dataset)
    user_texts = user_profile_texts(dataset, descriptions, option(config, "user_text_items", 10)) if users else []
    key = [[k, option(config, k, None)] for k in BACKBONE_KEYS if k != "llm_cache_dir"]
    key += [["pool", "mean"], ["max_tokens", option(config, "text_max_tokens", 128)], descriptions, user_texts]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    path = cache_root(option(config, "llm_cache_dir", None)) / "text_embedding" / f"{config['dataset']}-{digest}.pt"
    if path.is_file():
        cached = torch.load(path, weights_only=True)
        return cached["user"] if users else None, cached["item"]

    logger.info("Embedding %d item and %d user texts with %s (cached in %s)", len(descriptions), len(user_texts),
                option(config, "llm_path", "the default backbone"), path)
    vectors = embed_texts(descriptions + user_texts, config)
    item, user = vectors[: len(descriptions)], vectors[len(descriptions):]
    atomic_write(path, lambda f: torch.save({"user": user, "item": item}, f))
    return (user if users else None), item
