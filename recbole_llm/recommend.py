"""Top-k recommendations from a saved checkpoint, for plugin and stock models alike.

``recommend`` is what ``run_recbole_llm.py --recommend=<file> --users=<tokens> --topk=10`` prints:
each user's k best items by the model's own ``full_sort_predict`` (users scored in batches, so GLTA
and GAL-Rec run their batched LM forward), items the user interacted with in training left out, each
item shown by its token and its description (the dataset's ``item_text_fields``, or every column of
the ``.item`` file when none are set).
"""

import csv
from pathlib import Path

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.utils import ModelType
from tqdm import tqdm

from recbole_llm.config_rules import check_value
from recbole_llm.data.item_text import item_columns, item_descriptions
from recbole_llm.errors import UnknownUserError
from recbole_llm.quick_start import load_data_and_model
from recbole_llm.helpers import atomic_write

CSV_COLUMNS = ("user", "rank", "item", "score", "description")


def _descriptions(dataset):
    """Item descriptions by internal id: the configured text fields, else all of the ``.item`` file's columns."""
    config = dataset.config
    item_file = Path(config["data_path"]) / f"{config['dataset']}.item"
    if not item_file.is_file() or dataset.iid_field not in item_columns(config):
        return [""] * dataset.item_num
    return item_descriptions(dataset, all_columns=not config["item_text_fields"])


def _user_ids(dataset, users):
    """Internal ids of ``users`` (dataset tokens, or ``"all"``)."""
    token2id = dataset.field2token_id[dataset.uid_field]
    if users == "all":
        return list(range(1, dataset.user_num))
    unknown = [u for u in users if u not in token2id]
    if unknown:
        examples = ", ".join(list(token2id)[1:6])
        raise UnknownUserError(
            f"User {', '.join(unknown[:5])} is not in dataset '{dataset.dataset_name}' (users are named by the "
            f"{dataset.uid_field} column of its .inter file, e.g. {examples}). "
            f"Fix: pass --users=<tokens of that column, comma-separated>, or --users=all."
        )
    return [token2id[u] for u in users]


def _sequence_inputs(model, dataset, user_ids):
    """A sequential model's input for each user: their last training items, oldest first."""
    order = np.lexsort((dataset.inter_feat[dataset.time_field].numpy(),
                        dataset.inter_feat[dataset.uid_field].numpy())) if dataset.time_field in dataset.inter_feat else None
    uids = dataset.inter_feat[dataset.uid_field].numpy()
    iids = dataset.inter_feat[dataset.iid_field].numpy()
    if order is not None:
        uids, iids = uids[order], iids[order]
    length = model.max_seq_length
    seqs = torch.zeros(len(user_ids), length, dtype=torch.long)
    lens = torch.zeros(len(user_ids), dtype=torch.long)
    for row, user in enumerate(user_ids):
        items = iids[uids == user][-length:]
        seqs[row, :len(items)] = torch.as_tensor(items)
        lens[row] = max(len(items), 1)
    return {model.ITEM_SEQ: seqs, model.ITEM_SEQ_LEN: lens}


def score_users(model, dataset, user_ids, show_progress=False):
    """Full-ranking scores of ``user_ids`` (rows) over all items, through ``model.full_sort_predict`` in batches.

    A batch holds at least 64 users, more where RecBole's full-ranking evaluation would put more in
    one (``eval_batch_size`` score cells): an LM model's forward costs far more per call than the
    scores take memory. Items the user interacted with in ``dataset`` (the training split) and the
    padding item 0 score -inf.
    """
    config = dataset.config
    per_batch = max(config["eval_batch_size"] // dataset.item_num, 64)
    seen = dataset.inter_matrix(form="csr")
    rows = []
    batches = range(0, len(user_ids), per_batch)
    progress = tqdm(batches, desc="Scoring users", unit="batch", ncols=100, disable=not show_progress)
    with torch.no_grad():
        for start in progress:
            batch = user_ids[start:start + per_batch]
            fields = {model.USER_ID: torch.as_tensor(batch)}
            if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
                fields.update(_sequence_inputs(model, dataset, batch))
            scores = model.full_sort_predict(Interaction(fields).to(model.device)).view(len(batch), -1).float().cpu()
            for row, user in enumerate(batch):
                scores[row, seen.indices[seen.indptr[user]:seen.indptr[user + 1]]] = -torch.inf
            scores[:, 0] = -torch.inf
            rows.append(scores)
    return torch.cat(rows) if rows else torch.empty(0, dataset.item_num)


def recommend(model_file, users="all", topk=10, dataset=None, data_path=None, show_progress=None, trust_checkpoint=False):
    """Each user's top-``topk`` items from the checkpoint ``model_file``, training items excluded.

    Args:
        model_file (str): a checkpoint written by a plugin or stock model's trainer.
        users (list of str or "all"): user tokens as in the dataset's ``.inter`` file.
        topk (int): items per user.
        dataset (str): when given, the dataset the checkpoint must have been trained on.
        data_path (str): the folder holding the dataset's folder, when it moved since training.
        show_progress (bool): a progress bar over the scoring batches (default: the checkpoint's ``show_progress``).
        trust_checkpoint (bool): load a checkpoint that needs a full pickle, which can run code
            (``quick_start.load_data_and_model``).

    Returns:
        list of dict: one per user and rank, with the keys of ``CSV_COLUMNS``.
    """
    check_value("topk", topk)
    config, model, data, train_data, _, _ = load_data_and_model(
        model_file, dataset=dataset, data_path=data_path, trust_checkpoint=trust_checkpoint)
    train = train_data.dataset
    user_ids = _user_ids(data, users)
    show_progress = config["show_progress"] if show_progress is None else show_progress
    scores = score_users(model, train, user_ids, show_progress=show_progress)
    k = min(topk, train.item_num - 1)
    top_scores, top_items = scores.topk(k, dim=1)
    descriptions = _descriptions(train)
    user_tokens = data.field2id_token[data.uid_field]
    item_tokens = data.field2id_token[data.iid_field]
    recommendations = []
    for user, items, values in zip(user_ids, top_items.tolist(), top_scores.tolist()):
        for rank, (item, score) in enumerate(zip(items, values), start=1):
            if score == -np.inf:
                break  # the user has interacted with (almost) every item
            recommendations.append({"user": str(user_tokens[user]), "rank": rank, "item": str(item_tokens[item]),
                                    "score": score, "description": descriptions[item]})
    return recommendations


def format_recommendations(recommendations):
    """The lines ``--recommend`` prints: one header per user, then one line per item."""
    lines, user = [], None
    for rec in recommendations:
        if rec["user"] != user:
            user = rec["user"]
            lines.append(f"user {user}:")
        lines.append(f"  {rec['rank']:>3}. {rec['item']:<10} {rec['description']}  (score {rec['score']:.4f})")
    return lines


def write_csv(recommendations, path):
    """Write ``recommendations`` to ``path`` as CSV (columns ``CSV_COLUMNS``), atomically."""
    def write(f):
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(recommendations)

    atomic_write(path, write, mode="w")

