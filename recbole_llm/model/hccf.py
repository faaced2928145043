"""HCCF: Hypergraph Contrastive Collaborative Filtering.

Reference:
    Lianghao Xia, Chao Huang, Yong Xu, Jiashu Zhao, Dawei Yin, Jimmy Xiangji Huang. "Hypergraph
    Contrastive Collaborative Filtering." in SIGIR 2022. Official code: github.com/akaxlh/HCCF
    (TensorFlow ``labcode_efficient.py``, the paper's; PyTorch ``torchVersion/Model.py``, the
    authors' later, "improved" version, whose structure this file follows).

Every layer l = 1..L sees two views of the layer l-1 embeddings E^(l-1):

- local view: Z^(l) = A_hat E^(l-1), one LightGCN product over the normalised user-item adjacency
  (``recbole_llm.model.graph``), with edge dropout while training;
- global view: learnable hypergraphs H_u = E_u^(0) W_u and H_i = E_i^(0) W_i with ``hyper_num``
  hyperedges each (W: a trainable (d, hyper_num) matrix), dropout on H while training, and
  Gamma^(l) = H LeakyReLU(H^T E^(l-1)): nodes to hyperedges and back; dense, but only (n, hyper_num).

E^(l) = Z^(l) + Gamma^(l); the final embeddings are the sum of E^(0..L). Loss: BPR on the final
embeddings + ``ssl_reg`` * the InfoNCE between the local and global views of the batch's unique
users and unique positive items, summed over layers (cosine similarity, temperature ``temp``,
in-batch negatives) + ``reg_weight`` * the squared L2 norm of every parameter.

Choices where the paper and the two official versions differ or are silent:

- Activation: the paper and the TF code apply LeakyReLU (slope ``leaky``) after every product;
  the PyTorch code applies none. Here it is applied to the hyperedge features H^T E only, so the
  local view stays LightGCN's linear product and the hypergraph keeps a non-linearity.
- The TF code's three extra hyperedge-to-hyperedge FC layers and residual E^(l-1) term are left out,
  as in the PyTorch code.
- The local view is detached in the InfoNCE (the PyTorch code does the same), so the contrastive
  loss trains the hypergraph towards the graph view and not the other way round.
- Edge dropout (``keep_rate``) drops an interaction in both directions at once (the official code
  drops the two directed entries independently) and scales the kept ones by 1 / keep_rate. A
  symmetric dropped adjacency is its own transpose, so ``SparseMM``'s cheap backward stays valid. Dropout on the
  adjacency and on H is redrawn for every layer and every batch, and off in evaluation.
- L2 regularisation covers all parameters, as the official ``calcRegLoss`` does (RecBole's graph
  models regularise only the batch's embeddings).
- RecBole's padding ids (user 0, item 0) have no edges but take part in the hypergraph like any node.
"""

import warnings

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.init import xavier_uniform_initialization
from recbole.model.loss import BPRLoss
from recbole.utils import InputType
from torch import nn

from recbole_llm.config_rules import check_value
from recbole_llm.errors import ConfigValueError
from recbole_llm.model.graph import SparseMM, build_norm_adj, split_users_items


class HCCF(GeneralRecommender):
    """HCCF with the official PyTorch code's defaults (``recbole_llm/properties/model/HCCF.yaml``)."""

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        self.embedding_size = config["embedding_size"]
        self.n_layers = config["n_layers"]
        self.hyper_num = config["hyper_num"]
        self.leaky = config["leaky"]
        self.keep_rate = config["keep_rate"]
        self.temp = config["temp"]
        self.ssl_reg = config["ssl_reg"]
        self.reg_weight = config["reg_weight"]
        self._check_config()

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.user_hyper = nn.Parameter(torch.empty(self.embedding_size, self.hyper_num))
        self.item_hyper = nn.Parameter(torch.empty(self.embedding_size, self.hyper_num))
        self.apply(xavier_uniform_initialization)
        nn.init.xavier_uniform_(self.user_hyper)
        nn.init.xavier_uniform_(self.item_hyper)
        self.mf_loss = BPRLoss()

        self.norm_adj_matrix = build_norm_adj(dataset, device=self.device)
        self.edge_of_entry, self.n_edges = self._edge_ids(self.norm_adj_matrix)

        # Full-sort evaluation reuses one propagation for all users; calculate_loss clears it.
        self.restore_user_e = None
        self.restore_item_e = None
        self.other_parameter_name = ["restore_user_e", "restore_item_e"]

    def _check_config(self):
        # The same rules as the plugin's Config (config_rules.RULES), for an HCCF built from RecBole's own.
        for key in ("keep_rate", "hyper_num", "temp", "leaky", "ssl_reg", "reg_weight"):
            check_value(key, getattr(self, key))
        if self.n_layers < 1:  # RULES allows 0 (matrix factorisation) for the LightGCN family; HCCF needs a layer
            raise ConfigValueError(f"n_layers={self.n_layers!r} is not usable by HCCF. Fix: set n_layers to at least 1.")

    @staticmethod
    def _edge_ids(adj):
        """(id 0..n_edges-1 of the undirected edge of every stored entry of the symmetric CSR ``adj``, n_edges).

        Entries are sorted by (row, col), so the mirror (col, row) of each is found by binary search.
        """
        n = adj.shape[0]
        crow, cols = adj.crow_indices().long(), adj.col_indices().long()
        rows = torch.repeat_interleave(torch.arange(n, device=cols.device), crow.diff())
        keys = rows * n + cols
        mirror = torch.searchsorted(keys, cols * n + rows)
        first = torch.minimum(torch.arange(len(keys), device=cols.device), mirror)
        edges, edge_of_entry = torch.unique(first, return_inverse=True)
        return edge_of_entry, len(edges)

    def _dropped_adj(self):
        """The adjacency with interactions dropped at rate 1 - keep_rate while training (symmetric)."""
        adj = self.norm_adj_matrix
        if not self.training or self.keep_rate == 1:
            return adj
        keep = torch.rand(self.n_edges, device=adj.device)[self.edge_of_entry] < self.keep_rate
        values = adj.values() * keep / self.keep_rate
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            # The structure is the checked one of build_norm_adj; only the values change.
            return torch.sparse_csr_tensor(adj.crow_indices(), adj.col_indices(), values, adj.shape, check_invariants=False)

    def _hyper_propagate(self, hyper, embeddings):
        """Nodes -> hyperedges -> nodes: H LeakyReLU(H^T E), with dropout on H while training."""
        if self.training and self.keep_rate < 1:
            # Same as F.dropout, whose Bernoulli draw is slower than this on CPU (results/probes.md).
            hyper = hyper * (torch.rand_like(hyper) < self.keep_rate) / self.keep_rate
        return hyper @ F.leaky_relu(hyper.T @ embeddings, negative_slope=self.leaky)

    def get_ego_embeddings(self):
        """Layer-0 embeddings: (users (n_users, d), items (n_items, d))."""
        return self.user_embedding.weight, self.item_embedding.weight

    def get_hypergraphs(self):
        """H_u = E_u^ID W_u and H_i = E_i^ID W_i, (n_users, hyper_num) and (n_items, hyper_num).

        From the ID embeddings, HCCF's layer 0; HCCF+ adds text to layer 0 but not to H (see hccfplus.py).
        """
        return self.user_embedding.weight @ self.user_hyper, self.item_embedding.weight @ self.item_hyper

    def forward(self):
        """Final user and item embeddings, and the per-layer local and global views of all nodes.

        Returns:
            tuple: users (n_users, d), items (n_items, d), local views [L x (n_nodes, d)],
            global views [L x (n_nodes, d)]; nodes are users then items.
        """
        user_ego, item_ego = self.get_ego_embeddings()
        user_hyper, item_hyper = self.get_hypergraphs()
        layers = [torch.cat([user_ego, item_ego])]
        local_views, global_views = [], []
        for _ in range(self.n_layers):
            dropped = self._dropped_adj()
            local_view = SparseMM.apply(dropped, dropped, layers[-1])
            users, items = split_users_items(layers[-1], self.n_users, self.n_items)
            global_view = torch.cat([self._hyper_propagate(user_hyper, users), self._hyper_propagate(item_hyper, items)])
            local_views.append(local_view)
            global_views.append(global_view)
            layers.append(local_view + global_view)
        user_all, item_all = split_users_items(torch.stack(layers).sum(dim=0), self.n_users, self.n_items)
        return user_all, item_all, local_views, global_views

    def _info_nce(self, local_view, global_view, nodes):
        """InfoNCE of each node's local view against its global view, the batch's other nodes as negatives."""
        local_view = F.normalize(local_view[nodes].detach(), dim=1)
        global_view = F.normalize(global_view[nodes], dim=1)
        logits = local_view @ global_view.T / self.temp
        return F.cross_entropy(logits, torch.arange(len(nodes), device=logits.device))

    def calculate_loss(self, interaction):
        self.restore_user_e, self.restore_item_e = None, None

        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]

        user_all, item_all, local_views, global_views = self.forward()
        u_embeddings = user_all[user]
        pos_scores = torch.mul(u_embeddings, item_all[pos_item]).sum(dim=1)
        neg_scores = torch.mul(u_embeddings, item_all[neg_item]).sum(dim=1)
        mf_loss = self.mf_loss(pos_scores, neg_scores)

        users, items = torch.unique(user), torch.unique(pos_item) + self.n_users
        ssl_loss = sum(
            self._info_nce(local_view, global_view, users) + self._info_nce(local_view, global_view, items)
            for local_view, global_view in zip(local_views, global_views)
        )
        reg_loss = sum(parameter.square().sum() for parameter in self.parameters())
        return mf_loss + self.ssl_reg * ssl_loss + self.reg_weight * reg_loss

    def predict(self, interaction):
        user_all, item_all, _, _ = self.forward()
        u_embeddings = user_all[interaction[self.USER_ID]]
        i_embeddings = item_all[interaction[self.ITEM_ID]]
        return torch.mul(u_embeddings, i_embeddings).sum(dim=1)

    def full_sort_predict(self, interaction):
        if self.restore_user_e is None or self.restore_item_e is None:
            self.restore_user_e, self.restore_item_e, _, _ = self.forward()
        u_embeddings = self.restore_user_e[interaction[self.USER_ID]]
        return u_embeddings @ self.restore_item_e.T
