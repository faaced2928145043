"""TextLightGCN: LightGCN whose nodes start from frozen language-model embeddings of item text.

Reference:
    Leheng Sheng et al. "Language Representations Can be What Recommenders Need: Findings and
    Potentials." in ICLR 2025 (AlphaRec, code LehengTHU/AlphaRec), on Xiangnan He et al.
    "LightGCN." in SIGIR 2020.
"""

import torch
from recbole.model.init import xavier_uniform_initialization
from torch import nn

from recbole_llm.data.text_embedding import text_embeddings
from recbole_llm.errors import ConfigValueError
from recbole_llm.model.fastlightgcn import FastLightGCN
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
        # The ID tables FastLightGCN made stay only where they are used.
        if not self.text_item_id:
            del self.item_embedding
        if self.user_side != "id":
            del self.user_embedding

        item_text = centred_unit_rows(text_embeddings(dataset, config, users=False)[1])
        self.register_buffer("item_text", item_text, persistent=False)
        if self.user_side == "mean":
            self.register_buffer("user_text", self._mean_of_items(dataset, item_text), persistent=False)

        text_size = item_text.shape[1]
        hidden = max(text_size // 2, self.latent_dim)
        self.text_mlp = nn.Sequential(nn.Linear(text_size, hidden), nn.LeakyReLU(), nn.Linear(hidden, self.latent_dim))
        self.text_mlp.apply(xavier_uniform_initialization)

    @staticmethod
    def _mean_of_items(dataset, item_text):
        """Each user's mean over the text vectors of their training items; zeros for a user without any."""
        matrix = dataset.inter_matrix(form="csr").astype("float32")
        matrix.data[:] = 1.0  # a repeated interaction counts once, as in the graph
        counts = torch.from_numpy(matrix.sum(axis=1).A1).clamp(min=1).unsqueeze(1)
        rows = torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr).long(), torch.from_numpy(matrix.indices).long(),
            torch.from_numpy(matrix.data), size=matrix.shape, check_invariants=True,
        )
        return torch.sparse.mm(rows, item_text) / counts

    def _user_layer0(self, users=None):
        if self.user_side == "id":
            return self.user_embedding.weight if users is None else self.user_embedding(users)
        return self.text_mlp(self.user_text if users is None else self.user_text[users])

    def _item_layer0(self, items=None):
        text = self.text_mlp(self.item_text if items is None else self.item_text[items])
        if not self.text_item_id:
            return text
        return text + (self.item_embedding.weight if items is None else self.item_embedding(items))

    def get_ego_embeddings(self):
        """Layer-0 embeddings of all nodes, users then items: (n_users + n_items, embedding_size)."""
        return torch.cat([self._user_layer0(), self._item_layer0()], dim=0)

    def layer0_rows(self, user, items):
        return [self._user_layer0(user)] + [self._item_layer0(i) for i in items]
