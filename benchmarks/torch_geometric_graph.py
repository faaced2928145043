"""The package's CSR graph kernel against torch-geometric's, side by side on one dataset's training graph.

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/torch_geometric_graph.py --dataset ml-100k
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/torch_geometric_graph.py --dataset ml-1m --data_path ../shared/datasets

Two jobs torch-geometric could do for the package, each timed both ways on the same graph, the
repeats alternating so that a load change hits both alike; medians of ``--repeats``:

- building the symmetric-normalised adjacency: ``graph.build_norm_adj`` (vectorised SciPy, torch
  CSR) against ``torch_geometric.utils.to_undirected`` + ``gcn_norm`` (edge list, COO values);
- one LightGCN propagation, forward and backward (``--n_layers`` layers, d = ``--dim``):
  ``graph.lightgcn_propagate`` (CSR, symmetric backward) against torch-geometric's ``LGConv``
  layers averaged the same way (its message passing, with the gcn_norm weights precomputed).

Also prints the largest difference between the two adjacencies' values and propagations.
"""

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch_geometric  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from torch_geometric.nn import LGConv  # noqa: E402
from torch_geometric.nn.conv.gcn_conv import gcn_norm  # noqa: E402
from torch_geometric.utils import to_undirected  # noqa: E402

from recbole_llm.config import Config  # noqa: E402
from recbole_llm.model.graph import build_norm_adj, lightgcn_propagate  # noqa: E402


def pyg_norm_adj(dataset):
    inter = dataset.inter_matrix(form="coo")
    n_nodes = dataset.user_num + dataset.item_num
    edges = torch.stack([torch.from_numpy(inter.row).long(), torch.from_numpy(inter.col).long() + dataset.user_num])
    edges = to_undirected(edges, num_nodes=n_nodes)  # sorted, duplicates merged
    return gcn_norm(edges, None, n_nodes, add_self_loops=False)


def pyg_propagate(conv, edges, weights, ego, n_layers):
    layers = [ego]
    for _ in range(n_layers):
        layers.append(conv(layers[-1], edges, weights))
    return torch.mean(torch.stack(layers, dim=1), dim=1)


def timed(fn):
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_path", default=None)
    parser.add_argument("--n_layers", type=int, default=3)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    entries = {"data_path": args.data_path} if args.data_path else {}
    config = Config("FastLightGCN", args.dataset, config_dict={**entries, "state": "WARNING"})
    train = data_preparation(config, create_dataset(config))[0].dataset
    n_nodes = train.user_num + train.item_num

    adj = build_norm_adj(train)
    edges, weights = pyg_norm_adj(train)
    conv = LGConv(normalize=False)
    ego = torch.randn(n_nodes, args.dim, generator=torch.Generator().manual_seed(0), requires_grad=True)

    def ours_step():
        lightgcn_propagate(adj, ego, args.n_layers).sum().backward()

    def pyg_step():
        pyg_propagate(conv, edges, weights, ego, args.n_layers).sum().backward()

    times = {"build: ours": [], "build: pyg": [], "propagate f+b: ours": [], "propagate f+b: pyg": []}
    for _ in range(args.repeats):
        times["build: ours"].append(timed(lambda: build_norm_adj(train)))
        times["build: pyg"].append(timed(lambda: pyg_norm_adj(train)))
        times["propagate f+b: ours"].append(timed(ours_step))
        times["propagate f+b: pyg"].append(timed(pyg_step))

    dense_ours = adj.to_dense()
    dense_pyg = torch.sparse_coo_tensor(edges, weights, (n_nodes, n_nodes)).to_dense()
    with torch.no_grad():
        diff = (lightgcn_propagate(adj, ego, args.n_layers) - pyg_propagate(conv, edges, weights, ego, args.n_layers))
    print(f"{args.dataset}: {n_nodes} nodes, {adj.values().numel()} non-zeros, d={args.dim}, "
          f"{args.n_layers} layers, medians of {args.repeats}")
    for name, seconds in times.items():
        print(f"  {name:22s} {median(seconds) * 1000:9.1f} ms")
    print(f"  max |adjacency difference| {(dense_ours - dense_pyg).abs().max().item():.2e}, "
          f"max |propagation difference| {diff.abs().max().item():.2e}")
    print(f"command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} python {shlex.join(sys.argv)}")
    print(f"torch {torch.__version__}, torch_geometric {torch_geometric.__version__}, threads "
          f"{torch.get_num_threads()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
