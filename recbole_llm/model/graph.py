"""The user-item graph stage shared by every plugin model that propagates over the interaction graph.

GLTA and GAL-Rec (graph pretraining), LightGCN+, RLMRec and HCCF's local view all need LightGCN
propagation, and it dominates their cost on the CPU, so it is written once here:

- ``build_norm_adj(dataset)``: the symmetric-normalised adjacency D^-1/2 A D^-1/2 over users then
  items, A = [[0, R], [R^T, 0]] from the training interactions, as a torch CSR tensor.
- ``lightgcn_propagate(adj, ego_embeddings, n_layers)``: the mean of the layer 0..L embeddings,
  as RecBole's LightGCN computes it.
- ``split_users_items(all_embeddings, n_users, n_items)``: the user and item rows of the result.

Why CSR and a custom backward (figures: benchmarks/notes/ml-1m.md, "Graph kernel: COO against
CSR"): a product with a CSR tensor is several times faster than with RecBole's COO tensor.
Autograd through ``torch.sparse.mm`` on CSR, though, transposes the matrix on every backward
(several times its forward). The normalised adjacency is symmetric, so the gradient with respect
to the dense input, A^T @ grad = A @ grad, is one more CSR product with the same matrix:
``SparseMM(A, A)``. Indices are int32, which MKL's sparse kernel reads as they are; int64 ones
are converted on every product. Splitting the 64 columns into cache-sized blocks and fusing all
layers into one autograd function were measured too and gave no consistent gain.
"""

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch.autograd.function import once_differentiable


def build_norm_adj(dataset, device=None):
    """D^-1/2 A D^-1/2 for the training interactions of ``dataset``, as a float32 torch CSR tensor.

    Node ids are users ``0..n_users-1`` then items ``n_users..n_users+n_items-1``, RecBole's ids
    (the padding id 0 included). Repeated (user, item) pairs count once and the degree gets 1e-7,
    so the values equal RecBole's ``LightGCN.get_norm_adj_mat``. Built with vectorised SciPy: no
    dict-of-keys matrix, no dense |V| x |V| matrix.

    Args:
        dataset: a RecBole dataset (the training split's, as a model receives it).
        device: where to put the tensor (a model passes ``self.device``); CSR works on CUDA too.

    Returns:
        torch.Tensor: sparse CSR, shape (n_users + n_items, n_users + n_items), symmetric.
    """
    inter = dataset.inter_matrix(form="coo")
    n_users, n_items = dataset.user_num, dataset.item_num
    n_nodes = n_users + n_items
    rows = np.concatenate([inter.row, inter.col + n_users])
    cols = np.concatenate([inter.col + n_users, inter.row])
    adj = sp.csr_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(n_nodes, n_nodes))
    adj.sum_duplicates()
    adj.sort_indices()
    degree = np.diff(adj.indptr) + 1e-7  # distinct neighbours, as RecBole counts (A > 0)
    d_inv_sqrt = np.power(degree, -0.5)
    node_of_entry = np.repeat(np.arange(n_nodes), np.diff(adj.indptr))
    values = d_inv_sqrt[node_of_entry] * d_inv_sqrt[adj.indices]
    return csr_tensor(sp.csr_matrix((values, adj.indices, adj.indptr), shape=(n_nodes, n_nodes)), device)


class SparseMM(torch.autograd.Function):
    """``matrix @ dense`` for a constant sparse ``matrix`` whose transpose ``matrix_t`` is kept beside it.

    The backward is ``matrix_t @ grad``: one more CSR product, where autograd through ``torch.sparse.mm``
    would transpose ``matrix`` on every backward. For the symmetric adjacency ``matrix_t`` is ``matrix``
    itself. No gradient flows to the matrices' values.
    """

    @staticmethod
    def forward(ctx, matrix, matrix_t, dense):
        ctx.matrix_t = matrix_t
        # Sparse kernels have no bf16/fp16 path on CPU: under autocast (enable_amp) the product stays in fp32.
        with torch.autocast(device_type=dense.device.type, enabled=False):
            return torch.sparse.mm(matrix, dense.to(matrix.dtype))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        with torch.autocast(device_type=grad_output.device.type, enabled=False):
            return None, None, torch.sparse.mm(ctx.matrix_t, grad_output.to(ctx.matrix_t.dtype))


def csr_tensor(matrix, device=None):
    """A SciPy CSR matrix as a float32 torch CSR tensor with int32 indices where they fit (MKL reads them as
    they are), its invariants checked once."""
    index_dtype = torch.int32 if max(*matrix.shape, matrix.nnz) < np.iinfo(np.int32).max else torch.int64
    with warnings.catch_warnings():
        # torch flags all of CSR as beta; the two operations used here (``torch.sparse.mm`` and ``.to``) are stable.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr).to(index_dtype),
            torch.from_numpy(matrix.indices).to(index_dtype),
            torch.from_numpy(matrix.data.astype(np.float32)),
            size=matrix.shape,
            device=device,
            check_invariants=True,  # a few ms once; a malformed CSR would crash the kernel instead
        )


def user_mean_matrices(dataset, device=None):
    """M (n_users, n_items), whose row u averages the items u trained on (each distinct item once; a user
    without any gets a row of zeros), and its transpose, as torch CSR tensors for ``SparseMM``."""
    matrix = dataset.inter_matrix(form="csr").astype(np.float64)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # a repeated interaction counts once, as in the graph
    counts = np.maximum(np.diff(matrix.indptr), 1)
    matrix = sp.csr_matrix(sp.diags(1.0 / counts) @ matrix)
    matrix.sort_indices()
    transpose = matrix.T.tocsr()
    transpose.sort_indices()
    return csr_tensor(matrix, device), csr_tensor(transpose, device)


def lightgcn_propagate(adj, ego_embeddings, n_layers):
    """LightGCN propagation: the mean of ``ego_embeddings`` and its ``n_layers`` products with ``adj``.

    Args:
        adj (torch.Tensor): the symmetric normalised adjacency from ``build_norm_adj``.
        ego_embeddings (torch.Tensor): layer-0 embeddings of all nodes, users then items, (n_nodes, d).
        n_layers (int): number of propagation layers L.

    Returns:
        torch.Tensor: (n_nodes, d), the mean over layers 0..L, as RecBole's (which stacks them first).
    """
    layer, total = ego_embeddings, ego_embeddings
    for _ in range(n_layers):
        layer = SparseMM.apply(adj, adj, layer)
        total = total + layer  # summed as they come: no stack of all layers, forward or backward
    return total / (n_layers + 1)


def split_users_items(all_embeddings, n_users, n_items):
    """The (user rows, item rows) of node embeddings ordered users then items."""
    return torch.split(all_embeddings, [n_users, n_items])
