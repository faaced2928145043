"""Seconds per training step of TextLightGCN against an earlier version of its code, same weights, side by side.

    python benchmarks/textlightgcn_step_cost.py --dataset amazon-beauty --data_path ../shared/datasets \
        --protocol recbole_llm/properties/benchmark/amazon-beauty.yaml -- id_tower=0.5 n_layers=3 reg_weight=1e-4
    python benchmarks/textlightgcn_step_cost.py --before softmax-ops --dataset ml-100k \
        --protocol recbole_llm/properties/benchmark/ml-100k.yaml -- id_tower=0.5 id_tower_users=mean n_layers=3

``--before per-user-mlp`` (the default):

``TextLightGCN`` takes the text MLP's first (linear) layer once over the items and averages it into
each user (``text_user_side: mean``), and reads the L2 term's batch rows from that one layer-0 pass.
``PerUserMLP`` below is the code it replaced: the MLP over every user's mean item text, and the MLP
again over the batch's users and items for the L2 term.

``--before softmax-ops``: ``SoftmaxLoss`` takes the sampled softmax in a few passes over the (batch x
negatives) logits (``SampledSoftmaxNLL``, ``collisions``) and ``lightgcn_propagate`` sums the layers as
they come; ``SoftmaxOps`` below is the code they replaced: one tensor operation per term (normalise
every item, divide the logits by tau, mask the collisions, concatenate, cross-entropy) and the
layers stacked, then averaged.

Either way the same function: both start from the same weights and draw the same negatives, and
their losses are printed side by side.

Both models step through the same batches with their own Adam; steps alternate between the two, so
a load change on a shared machine hits both alike. Reported: the median wall seconds per step and
their ratio, and the losses of the first and last steps. Pin it (``OMP_NUM_THREADS=1 taskset -c N``)
on an otherwise idle core.
"""

import argparse
import functools
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from unittest.mock import patch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402
from recbole.data import data_preparation  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from benchmarks.harness import environment  # noqa: E402
from recbole_llm.config import Config  # noqa: E402
from recbole_llm.model import textlightgcn  # noqa: E402
from recbole_llm.model.graph import SparseMM  # noqa: E402
from recbole_llm.model.textlightgcn import TextLightGCN  # noqa: E402
from recbole_llm.utils import create_dataset  # noqa: E402


class PerUserMLP(TextLightGCN):
    """TextLightGCN as it was before its first layer was shared: the MLP over each user's mean item text,
    and over the batch's rows again for the L2 term."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        if self.user_side == "mean":
            self.register_buffer("user_text", SparseMM.apply(self.user_mean, self.user_mean_t, self.item_text),
                                 persistent=False)

    def get_ego_embeddings(self):
        items = self.text_mlp(self.item_text)
        if self.text_item_id:
            items = items + self.item_embedding.weight
        users = self.user_embedding.weight if self.user_side == "id" else self.text_mlp(self.user_text)
        return torch.cat([users, items], dim=0)

    def layer0_rows(self, user, items, layer0=None):
        users = self.user_embedding(user) if self.user_side == "id" else self.text_mlp(self.user_text[user])
        rows = [users]
        for i in items:
            text = self.text_mlp(self.item_text[i])
            rows.append(text + self.item_embedding(i) if self.text_item_id else text)
        if self.id_tower:
            rows += [self.user_embedding(user)] + [self.item_embedding(i) for i in items]
        return rows


def softmax_ops_loss(loss, user_e, pos_item, neg_item, item_all_e):
    """``SoftmaxLoss``'s sampled softmax as it was: one tensor operation per term."""
    user_n = F.normalize(user_e, dim=1)
    items_n = F.normalize(item_all_e, dim=1)
    negatives = torch.randint(1, loss.n_items, (loss.n_negatives,), device=user_e.device)
    pos_logit = loss.logits((user_n * items_n[pos_item]).sum(dim=1, keepdim=True))
    neg_logits = loss.logits(user_n @ items_n[negatives].T)
    neg_logits = neg_logits.masked_fill(negatives.unsqueeze(0) == pos_item.unsqueeze(1), float("-inf"))
    return F.cross_entropy(torch.cat([pos_logit, neg_logits], dim=1), torch.zeros_like(pos_item))


def stacked_propagate(adj, ego_embeddings, n_layers):
    """``lightgcn_propagate`` as it was: every layer kept, stacked, then averaged."""
    layers = [ego_embeddings]
    for _ in range(n_layers):
        layers.append(SparseMM.apply(adj, adj, layers[-1]))
    return torch.mean(torch.stack(layers, dim=1), dim=1)


class SoftmaxOps(TextLightGCN):
    """TextLightGCN with the sampled softmax and the layer mean as they were (``softmax_ops_loss``, a stack)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.mf_loss.forward = functools.partial(softmax_ops_loss, self.mf_loss)

    def towers(self, layer0=None):
        with patch.object(textlightgcn, "lightgcn_propagate", stacked_propagate):
            return super().towers(layer0)


BEFORE = {"per-user-mlp": PerUserMLP, "softmax-ops": SoftmaxOps}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None, help="folder holding <dataset>/ (ml-100k needs none)")
    parser.add_argument("--protocol", default=None, help="a benchmark property file (split, metrics)")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per model, after two untimed ones")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--before", choices=sorted(BEFORE), default="per-user-mlp", help="the earlier code timed against")
    parser.add_argument("overrides", nargs="*", help="key=value config entries (YAML values)")
    args = parser.parse_args(argv)

    scratch = tempfile.TemporaryDirectory()
    config_dict = {"seed": args.seed, "state": "WARNING", "show_progress": False,
                   "checkpoint_dir": os.path.join(scratch.name, "saved")}
    config_dict.update({k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)})
    if args.data_path:
        config_dict["data_path"] = os.path.abspath(args.data_path)
    config = Config("TextLightGCN", args.dataset, config_file_list=[args.protocol] if args.protocol else None,
                    config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    batches = [batch for _, batch in zip(range(args.steps + 2), train_data)]

    classes = {f"{BEFORE[args.before].__name__} (before)": BEFORE[args.before], "TextLightGCN": TextLightGCN}
    models, optimizers = {}, {}
    for name, cls in classes.items():
        init_seed(config["seed"], config["reproducibility"])  # the same initial weights
        models[name] = cls(config, train_data._dataset)
        optimizers[name] = torch.optim.Adam(models[name].parameters(), lr=config["learning_rate"])
    times = {name: [] for name in classes}
    losses = {name: [] for name in classes}
    for step, batch in enumerate(batches):
        for name, model in models.items():
            torch.manual_seed(args.seed + step)  # the same softmax negatives for both
            start = time.perf_counter()
            optimizers[name].zero_grad()
            loss = model.calculate_loss(batch)
            loss.backward()
            optimizers[name].step()
            if step >= 2:
                times[name].append(time.perf_counter() - start)
            losses[name].append(loss.item())
    scratch.cleanup()

    device, versions = environment()
    print("command: python benchmarks/textlightgcn_step_cost.py " + shlex.join(sys.argv[1:] if argv is None else argv))
    print(f"dataset: {args.dataset} ({train_data._dataset.user_num} users, {train_data._dataset.item_num} items, "
          f"{len(train_data)} batches of {config['train_batch_size']} an epoch), split {config['eval_args']['split']}, "
          f"n_layers {config['n_layers']}, id_tower {config['id_tower']}, seed {config['seed']}")
    print(f"device: {device}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print()
    print(f"| model | s/step (median of {args.steps}) | epoch s (x {len(train_data)} steps) | loss, step 1 | "
          f"loss, step {len(batches)} |")
    print("|---|---|---|---|---|")
    for name in classes:
        step_s = median(times[name])
        print(f"| {name} | {step_s:.3f} | {step_s * len(train_data):.0f} | {losses[name][0]:.5f} | {losses[name][-1]:.5f} |")
    before, after = (median(times[name]) for name in classes)
    print(f"\nspeed-up per step (wall, median): {before / after:.2f}x")


if __name__ == "__main__":
    main()
