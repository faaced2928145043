"""TextLightGCN: LightGCN whose nodes start from frozen language-model embeddings of item text.

Reference:
    Leheng Sheng et al. "Language Representations Can be What Recommenders Need: Findings and
    Potentials." in ICLR 2025 (AlphaRec, code LehengTHU/AlphaRec), on Xiangnan He et al.
    "LightGCN." in SIGIR 2020.
"""

import math

import torch
import torch.nn.functional as F
from recbole.model.init import xavier_uniform_initialization
from torch import nn

from recbole_llm.data.text_embedding import text_embeddings
from recbole_llm.errors import ConfigValueError
from recbole_llm.model.fastlightgcn import FastLightGCN, id_users
from recbole_llm.model.graph import SparseMM, lightgcn_propagate, split_users_items, user_mean_matrices
from recbole_llm.model.text_fusion import centred_unit_rows

USER_SIDES = ("mean", "id")


class TextLightGCN(FastLightGCN):
    """AlphaRec's recipe on the plugin's LightGCN: text in, graph propagation, a softmax loss.

    - Items: an MLP over the frozen text embedding of each item's description
      (``text_embeddings``), plus an ID embedding when ``text_item_id`` is set.
    - Users: ``text_user_side: mean`` passes the mean of the text embeddings of the user's training
      items through the same MLP (AlphaRec's user), ``id`` gives each user an ID embedding.
    - Propagation, scores and loss are ``FastLightGCN``'s: LightGCN on the CSR kernel, and
      ``graph_loss`` (``softmax`` by default here: InfoNCE over many negatives, cosine scores).

    With ``text_item_id: True`` and ``text_user_side: id`` the text is one addend beside ordinary
    LightGCN tables; with the defaults the model has no ID parameters at all, so an item's
    embedding comes only from its text and the graph.

    ``id_tower: w`` (0 < w < 1) adds a second LightGCN over ID tables beside the text one, trained by
    its own loss, and scores by ``(1 - w) * text cosine + w * ID cosine`` (over ``softmax_tau``). Kept
    apart, each graph learns what it ranks best: on amazon-beauty the text graph ranks the items
    with few training interactions twice as well as the ID graph, the ID graph the popular ones
    (``benchmarks/probes/target_popularity.py``), while one model with text plus an ID per item
    (``text_item_id``) loses most of the text's gain on the rare items. ``forward()`` returns the
    two graphs' unit embeddings side by side, scaled by sqrt(1 - w) and sqrt(w), so their dot
    products are the mixed score and the models that read a stage-1 graph read both
    (``output_size`` is then twice ``embedding_size``).

    ``id_tower_users: mean`` makes the ID graph's users the mean of their training items' ID rows,
    as the text graph's are the mean of their items' text, instead of a user ID table (``id``). A
    user is then what they interacted with, in both graphs: scored over a longer history
    (GLTA's and GAL-Rec's ``fold_in_valid``), a user's layer 0 reaches the new items at once,
    where an ID row trained without them reaches them only through propagation.

    Choices where AlphaRec is silent or does not apply:

    - The MLP is Linear(h, h/2), LeakyReLU, Linear(h/2, d), AlphaRec's shape, Xavier-initialised as
      RecBole's graph models are.
    - The text vectors are centred and scaled to unit norm first (``centred_unit_rows``, as
      LightGCN+ does): a decoder's mean-pooled states share one large common direction.
    - The L2 term (``reg_weight``) is on the batch's layer-0 embeddings, whatever makes them
      (MLP outputs or ID rows), as LightGCN puts it on its ID rows.
    - A user's items are their training interactions, the split the model is given, so no
      validation or test item reaches a user's embedding.
    """

    uses_item_text = True

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.user_side = config["text_user_side"]
        if self.user_side not in USER_SIDES:
            raise ConfigValueError(
                f"text_user_side={self.user_side!r} is not supported. Fix: set text_user_side to one of {', '.join(USER_SIDES)}."
            )
        self.text_item_id = bool(config["text_item_id"])
        self.id_tower = self._id_tower_weight(config)
        self.id_tower_users = id_users(config)
        # The ID tables FastLightGCN made stay only where they are used.
        if not (self.text_item_id or self.id_tower):
            del self.item_embedding
        if not (self.user_side == "id" or (self.id_tower and self.id_tower_users == "id")):
            del self.user_embedding
        self.output_size = self.latent_dim * (2 if self.id_tower else 1)

        item_text = centred_unit_rows(text_embeddings(dataset, config, users=False)[1])
        self.register_buffer("item_text", item_text, persistent=False)
        if self.user_side == "mean":
            # Like norm_adj_matrix, constant sparse tensors kept on the model's device.
            self.user_mean, self.user_mean_t = user_mean_matrices(dataset, device=self.device)

        text_size = item_text.shape[1]
        hidden = max(text_size // 2, self.latent_dim)
        self.text_mlp = nn.Sequential(nn.Linear(text_size, hidden), nn.LeakyReLU(), nn.Linear(hidden, self.latent_dim))
        self.text_mlp.apply(xavier_uniform_initialization)

    def _mean_users(self, config):
        """The text graph's users are ``text_user_side``'s; ``id_tower_users`` is its ID tower's (``all_layer0``)."""
        return False

    def _id_tower_weight(self, config):
        """``id_tower`` (its range checked with the config, ``config_rules.py``) as a float, refused where the ID
        graph would not be a separate one or not cosine-scored."""
        value = config["id_tower"] or 0.0
        if value and (self.text_item_id or self.user_side == "id"):
            raise ConfigValueError("id_tower is an ID graph beside the text one, but the text graph already has ID "
                                   "tables (text_item_id: True or text_user_side: id). Fix: set text_item_id "
                                   "False and text_user_side mean, or id_tower 0.")
        if value and not self.mf_loss.cosine:
            raise ConfigValueError("id_tower mixes the two graphs' cosine scores, which graph_loss bpr does not "
                                   "train. Fix: set graph_loss softmax, or id_tower 0.")
        return float(value)

    def get_ego_embeddings(self):
        """Layer-0 embeddings of all nodes, users then items: (n_users + n_items, embedding_size).

        The MLP's first layer is linear, so a user's first-layer output (``text_user_side: mean``) is the
        mean of their items': the items' product is taken once and averaged (``user_mean``), rather than
        multiplying every user's mean text by the first layer's weights as well. Same function, fewer
        products where users outnumber items (figures: results/textlightgcn-step-cost.md).
        """
        first, activation, second = self.text_mlp
        item_x = F.linear(self.item_text, first.weight)  # (n_items, hidden), the bias added after averaging
        items = second(activation(item_x + first.bias))
        if self.text_item_id:
            items = items + self.item_embedding.weight
        if self.user_side == "id":
            users = self.user_embedding.weight
        else:
            users = second(activation(SparseMM.apply(self.user_mean, self.user_mean_t, item_x) + first.bias))
        return torch.cat([users, items], dim=0)

    def all_layer0(self):
        """``get_ego_embeddings``, with ``id_tower`` the ID graph's rows beside them: (n_nodes, output_size)."""
        ego = self.get_ego_embeddings()
        if self.id_tower:
            items = self.item_embedding.weight
            if self.id_tower_users == "mean":
                users = SparseMM.apply(self.user_mean, self.user_mean_t, items)
            else:
                users = self.user_embedding.weight
            ego = torch.cat([ego, torch.cat([users, items])], dim=1)
        return ego

    def towers(self, layer0=None):
        """The text graph's and (with ``id_tower``) the ID graph's final (user, item) embeddings, unit norm
        under a cosine ``graph_loss`` (FastLightGCN's ``forward``).

        One propagation serves both: LightGCN is linear in each embedding column. ``layer0``: the
        ``all_layer0`` rows to propagate, when the caller has them."""
        layer0 = self.all_layer0() if layer0 is None else layer0
        users, items = split_users_items(lightgcn_propagate(self.norm_adj_matrix, layer0, self.n_layers),
                                         self.n_users, self.n_items)
        d = self.latent_dim
        blocks = [(users[:, k:k + d], items[:, k:k + d]) for k in range(0, users.shape[1], d)]
        if not self.mf_loss.cosine:
            return blocks
        return [(F.normalize(u, dim=1), F.normalize(i, dim=1)) for u, i in blocks]

    def forward(self):
        if not self.id_tower:
            return super().forward()
        (text_users, text_items), (id_users, id_items) = self.towers()
        a, b = math.sqrt(1 - self.id_tower), math.sqrt(self.id_tower)
        return torch.cat([a * text_users, b * id_users], dim=1), torch.cat([a * text_items, b * id_items], dim=1)

    def layer0_rows(self, user, items, layer0=None):
        """The layer-0 rows the L2 term reads, each graph's apart: the batch's users, then each tensor of item
        ids in ``items``, for the text graph, then (with ``id_tower``) for the ID graph. ``layer0``: the
        ``all_layer0`` rows, when the caller has them."""
        layer0 = self.all_layer0() if layer0 is None else layer0
        batch = [layer0[user]] + [layer0[self.n_users + i] for i in items]
        d = self.latent_dim
        return [rows[:, k:k + d] for k in range(0, layer0.shape[1], d) for rows in batch]

    def calculate_loss(self, interaction):
        """Each graph by its own ranking loss, as if trained alone (the mix is only how they score together),
        plus the L2 term, all from one layer-0 pass."""
        self.restore_user_e, self.restore_item_e = None, None
        user, pos_item, neg_item = interaction[self.USER_ID], interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        layer0 = self.all_layer0()
        loss = sum(self.mf_loss(users[user], pos_item, neg_item, items) for users, items in self.towers(layer0))
        reg_loss = self.reg_loss(*self.layer0_rows(user, (pos_item, neg_item), layer0), require_pow=self.require_pow)
        return loss + self.reg_weight * reg_loss
