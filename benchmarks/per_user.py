"""Each test user's NDCG@10, Precision@10 and Recall@10, from RecBole's own evaluator, for paired tests.

RecBole's ``Trainer.evaluate`` gathers each user's top-k hits in its ``Collector``'s ``DataStruct``
(``rec.topk``: the hit flags of the top-k items and the user's number of positives) and its
``Evaluator`` averages each metric's per-user values (``metric_info``) over the users. While
``capture()`` is open, every evaluation keeps that ``DataStruct``, the user ids of its rows (the
``Collector`` sees them in each batch's interaction, in row order), the dataset they come from and
its result. ``per_user_table`` then picks the evaluation whose result *is* the run's test result
and asks the same metric objects for their per-user values, before the mean RecBole takes: the
figures are RecBole's, not a second implementation, and their means are the record's metrics.

Files: ``<store folder>/per_user/<dataset>/<row>-<seed>.csv.gz`` (and ``...-<seed>-stage1.csv.gz``
for GLTA's and GAL-Rec's stage-1 LightGCN alone, the record's ``graph_test``) with the columns ``user`` (the
dataset's user token) and the metrics, rows in RecBole's test order, 5 decimals.
"""

import contextlib
import csv
import gzip
import io

from recbole.evaluator import Collector, Evaluator
from recbole.evaluator.register import metrics_dict
from recbole.trainer import Trainer

METRICS = ("ndcg@10", "precision@10", "recall@10")
DECIMALS = 5


@contextlib.contextmanager
def capture():
    """Record every evaluation RecBole's trainers run inside the block; yields the list it fills.

    Each entry: ``{"evaluator", "struct", "result", "dataset"}``. Patches RecBole's classes for
    the block only (``Trainer.evaluate`` to know the evaluated dataset, ``Collector`` to keep the
    user ids of each batch, ``Evaluator.evaluate`` to keep the struct and its result).
    """
    evaluations = []
    current = {"dataset": None}
    originals = (Trainer.evaluate, Collector.eval_batch_collect, Collector.get_data_struct, Evaluator.evaluate)

    def evaluate(self, eval_data, *args, **kwargs):
        current["dataset"] = eval_data._dataset
        return originals[0](self, eval_data, *args, **kwargs)

    def eval_batch_collect(self, scores, interaction, positive_u, positive_i):
        originals[1](self, scores, interaction, positive_u, positive_i)
        self.per_user_ids = getattr(self, "per_user_ids", []) + [interaction[self.config["USER_ID_FIELD"]].cpu()]

    def get_data_struct(self):
        struct = originals[2](self)
        ids, self.per_user_ids = getattr(self, "per_user_ids", []), []
        if ids:
            import torch

            struct.set("per_user.ids", torch.cat(ids))
        return struct

    def evaluator_evaluate(self, struct):
        result = originals[3](self, struct)
        evaluations.append({"evaluator": self, "struct": struct, "result": dict(result), "dataset": current["dataset"]})
        return result

    Trainer.evaluate, Collector.eval_batch_collect, Collector.get_data_struct, Evaluator.evaluate = (
        evaluate, eval_batch_collect, get_data_struct, evaluator_evaluate)
    try:
        yield evaluations
    finally:
        Trainer.evaluate, Collector.eval_batch_collect, Collector.get_data_struct, Evaluator.evaluate = originals


def per_user_table(evaluations, test_result, metrics=METRICS, last=False):
    """``(user tokens, {metric: per-user values})`` of the evaluation whose result equals ``test_result``.

    The first such evaluation is the test itself; GLTA's and GAL-Rec's stage-1 test comes after it
    (``last`` takes the last match: the stage-1 figures, should both results be the same).
    A metric the protocol does not list (amazon-beauty and yelp list only Hit and NDCG) comes from
    RecBole's class of that name on the same ``rec.topk``; one it lists is checked against its figure.
    """
    test_result = {k: float(v) for k, v in test_result.items()}
    ordered = reversed(evaluations) if last else evaluations
    match = next((e for e in ordered if {k: float(v) for k, v in e["result"].items()} == test_result), None)
    if match is None or "per_user.ids" not in match["struct"]:
        raise RuntimeError("No captured evaluation gave the test result; per-user figures need RecBole's "
                           "full-ranking Trainer.evaluate (run with benchmarks.per_user.capture() open)")
    struct, evaluator, dataset = match["struct"], match["evaluator"], match["dataset"]
    values = {}
    for name in metrics:
        metric_name, k = name.split("@")
        metric = evaluator.metric_class.get(metric_name) or metrics_dict[metric_name](evaluator.config)
        pos_index, pos_len = metric.used_info(struct)
        if pos_index.shape[1] < int(k):
            raise RuntimeError(f"The protocol ranks only the top {pos_index.shape[1]} items; {name} needs topk >= {k}")
        # Precision needs only the hit flags; NDCG and Recall also the number of positives.
        info = metric.metric_info(pos_index) if metric_name == "precision" else metric.metric_info(pos_index, pos_len)
        values[name] = info[:, int(k) - 1]
        # RecBole's figure is the mean of these, rounded to metric_decimal_place: they must agree.
        if name in test_result and abs(float(values[name].mean()) - test_result[name]) > 0.5 * 10 ** -metric.decimal_place + 1e-9:
            raise RuntimeError(f"Per-user {name} averages {values[name].mean()}, the test result is {test_result[name]}")
    users = dataset.id2token(dataset.uid_field, struct.get("per_user.ids").numpy())
    return list(users), values


def write_csv_gz(path, users, values):
    """The per-user table as gzip'd CSV (``user`` then the metrics), byte-identical for identical figures."""
    from recbole_llm.helpers import atomic_write

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["user", *values])
    for i, user in enumerate(users):
        writer.writerow([user, *(f"{float(v[i]):.{DECIMALS}f}" for v in values.values())])

    def write(f):
        with gzip.GzipFile(filename="", fileobj=f, mode="wb", mtime=0) as z:
            z.write(text.getvalue().encode("utf-8"))

    atomic_write(path, write)


def read_csv_gz(path):
    """``{user token: {metric: value}}`` of a per-user file."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return {row.pop("user"): {k: float(v) for k, v in row.items()} for row in csv.DictReader(f)}
