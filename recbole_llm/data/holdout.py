"""The language-model stage's own targets: a fraction of each user's training interactions held out of stage 1.

A stacked model is trained on what its base model did not see: targets that stage 1's LightGCN
memorised teach the language model to trust the graph and nothing else. ``holdout_mask`` picks,
per user, the interactions stage 1 leaves out; the language-model stage predicts exactly those.
"""

import numpy as np
import torch


def holdout_mask(dataset, ratio, seed, ordered):
    """A bool tensor over ``dataset.inter_feat``: True where an interaction is held out of stage 1.

    Each user with at least two training interactions gives ``round(ratio * n)`` of them (at least
    one, never all): uniformly at random, or with ``ordered`` (an ``order: TO`` protocol, where the
    training interactions are in time order) the most recent ones, since those are what a
    leave-one-out evaluation asks for next. ``ratio`` 0 holds nothing out.
    """
    users = dataset.inter_feat[dataset.uid_field].numpy()
    held = np.zeros(len(users), dtype=bool)
    if ratio <= 0:
        return torch.from_numpy(held)
    rng = np.random.default_rng(seed)
    rows = np.argsort(users, kind="stable")  # each user's rows, in the split's order
    starts = np.flatnonzero(np.r_[True, users[rows][1:] != users[rows][:-1]])
    for start, end in zip(starts, np.r_[starts[1:], len(rows)]):
        n = end - start
        if n < 2:
            continue
        k = min(max(int(round(ratio * n)), 1), n - 1)
        own = rows[start:end]
        held[own[-k:] if ordered else rng.choice(own, k, replace=False)] = True
    return torch.from_numpy(held)
