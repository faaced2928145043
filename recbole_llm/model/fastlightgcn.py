"""FastLightGCN: RecBole's LightGCN on the plugin's shared graph stage (``recbole_llm.model.graph``).

Reference:
    Xiangnan He et al. "LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation." in SIGIR 2020.
"""

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.init import xavier_uniform_initialization
from recbole.model.loss import EmbLoss
from recbole.utils import InputType

from recbole_llm.errors import ConfigValueError
from recbole_llm.model.graph import SparseMM, build_norm_adj, lightgcn_propagate, split_users_items, user_mean_matrices
from recbole_llm.model.ranking_loss import ranking_loss


ID_USERS = ("id", "mean")


def id_users(config):
    """``id_tower_users``, the ID graph's users, checked: ``id`` (a user table) or ``mean`` (the mean of their
    items' rows). FastLightGCN's and TextLightGCN's ID tower read it."""
    value = config["id_tower_users"] or "id"
    if value not in ID_USERS:
        raise ConfigValueError(f"id_tower_users={value!r} is not supported. Fix: set id_tower_users to one of "
                               f"{', '.join(ID_USERS)}.")
    return value


class FastLightGCN(GeneralRecommender):
    """LightGCN with the same parameters, initialisation, loss and scores as RecBole's ``LightGCN``.

    Under the same seed and config it starts from the same weights and follows the same training
    up to float rounding; only the propagation differs: a CSR product with a symmetric backward
    (see ``graph.py``) instead of a COO product, and the adjacency is built vectorised.

    It is also the graph stage other plugin models reuse: ``forward()`` returns the final
    (user, item) embeddings of the whole graph.

    ``graph_loss: softmax`` trains it with InfoNCE over many negatives instead of BPR
    (``ranking_loss.py``); it then scores by cosine similarity over the temperature, as it trained
    (``scores``), so ``forward()`` returns unit-norm embeddings. With the default ``bpr`` it is
    RecBole's LightGCN.

    ``id_tower_users: mean`` (the ID graph's users; default ``id``) drops the user table: a user's
    layer 0 is the mean of their training items' rows, as TextLightGCN's ID tower does. It is the
    id control of a GLTA or GAL-Rec whose TextLightGCN has such users, so that the control differs
    from the model in the text alone.
    """

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        self.latent_dim = config["embedding_size"]
        self.output_size = self.latent_dim  # the width of forward()'s embeddings
        self.n_layers = config["n_layers"]
        self.reg_weight = config["reg_weight"]
        self.require_pow = config["require_pow"]

        # Same creation order as RecBole's LightGCN, so a seed gives the same initial weights.
        self.user_embedding = torch.nn.Embedding(num_embeddings=self.n_users, embedding_dim=self.latent_dim)
        self.item_embedding = torch.nn.Embedding(num_embeddings=self.n_items, embedding_dim=self.latent_dim)
        self.mf_loss = ranking_loss(config, self.n_items)
        self.reg_loss = EmbLoss()

        # Full-sort evaluation reuses one propagation for all users; calculate_loss clears it.
        self.restore_user_e = None
        self.restore_item_e = None

        self.norm_adj_matrix = build_norm_adj(dataset, device=self.device)

        self.apply(xavier_uniform_initialization)
        self.other_parameter_name = ["restore_user_e", "restore_item_e"]

        self.mean_users = self._mean_users(config)
        if self.mean_users:
            del self.user_embedding  # created above all the same, so the item table starts from the same draw
            self.user_mean, self.user_mean_t = user_mean_matrices(dataset, device=self.device)

    def _mean_users(self, config):
        """Whether the users are the mean of their items' rows (``id_tower_users: mean``). A subclass whose
        users are its own (TextLightGCN's text graph) says no."""
        value = id_users(config)
        if value == "mean" and type(self).get_ego_embeddings is not FastLightGCN.get_ego_embeddings:
            raise ConfigValueError(f"id_tower_users=mean makes FastLightGCN's users the mean of their items' rows, but "
                                   f"{type(self).__name__} builds its users' embeddings its own way. Fix: leave "
                                   f"id_tower_users at id for {type(self).__name__}.")
        return value == "mean"

    def get_ego_embeddings(self):
        """Layer-0 embeddings of all nodes, users then items: (n_users + n_items, embedding_size)."""
        items = self.item_embedding.weight
        users = SparseMM.apply(self.user_mean, self.user_mean_t, items) if self.mean_users else self.user_embedding.weight
        return torch.cat([users, items], dim=0)

    def forward(self):
        """Final embeddings of all users and all items, ((n_users, d), (n_items, d)), whose dot products score.

        Under the softmax loss they are the propagated embeddings scaled to unit norm (cosine scores).
        """
        all_embeddings = lightgcn_propagate(self.norm_adj_matrix, self.get_ego_embeddings(), self.n_layers)
        user_all, item_all = split_users_items(all_embeddings, self.n_users, self.n_items)
        if self.mf_loss.cosine:
            return F.normalize(user_all, dim=1), F.normalize(item_all, dim=1)
        return user_all, item_all

    def calculate_loss(self, interaction):
        self.restore_user_e, self.restore_item_e = None, None
        return self.ranking_reg_loss(interaction, *self.forward())

    def ranking_reg_loss(self, interaction, user_all_embeddings, item_all_embeddings):
        """The ranking loss (``graph_loss``) on the given final embeddings plus the L2 term.

        Models adding a loss to LightGCN's call it.
        """
        user = interaction[self.USER_ID]
        pos_item = interaction[self.ITEM_ID]
        neg_item = interaction[self.NEG_ITEM_ID]
        mf_loss = self.mf_loss(user_all_embeddings[user], pos_item, neg_item, item_all_embeddings)

        # L2 on the layer-0 embeddings of the batch, as in the paper and in RecBole.
        reg_loss = self.reg_loss(*self.layer0_rows(user, (pos_item, neg_item)), require_pow=self.require_pow)
        return mf_loss + self.reg_weight * reg_loss

    def layer0_rows(self, user, items):
        """The layer-0 embeddings the L2 term reads: the batch's users, then each tensor of item ids in ``items``."""
        if self.mean_users:
            users = SparseMM.apply(self.user_mean, self.user_mean_t, self.item_embedding.weight)[user]
        else:
            users = self.user_embedding(user)
        return [users] + [self.item_embedding(i) for i in items]

    def scores(self, user_e, item_e):
        """The ranking scores of final user embeddings ``user_e`` (B, d) over final item embeddings ``item_e``
        (n, d): dot products, divided by ``softmax_tau`` under the softmax (the logits it trains with)."""
        return self.mf_loss.logits(user_e @ item_e.T)

    def predict(self, interaction):
        user_all_embeddings, item_all_embeddings = self.forward()
        u_embeddings = user_all_embeddings[interaction[self.USER_ID]]
        i_embeddings = item_all_embeddings[interaction[self.ITEM_ID]]
        return self.mf_loss.logits(torch.mul(u_embeddings, i_embeddings).sum(dim=1))

    def full_sort_predict(self, interaction):
        if self.restore_user_e is None or self.restore_item_e is None:
            self.restore_user_e, self.restore_item_e = self.forward()
        u_embeddings = self.restore_user_e[interaction[self.USER_ID]]
        return self.scores(u_embeddings, self.restore_item_e).view(-1)
