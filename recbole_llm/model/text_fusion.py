"""Text-enhanced layer-0 node features, shared by LightGCN+ and HCCF+.

The spec's "+" baselines are graph models "whose node features are enriched with the LM's text
embeddings of item descriptions (and of users' item-description concatenations), frozen text
features projected and fused with the ID embeddings". ``TextFusion`` is that enrichment, written
once: a model passes its ID (ego) embeddings through it before propagation.

- Text vectors: ``text_embeddings(dataset, config)`` (items: their descriptions; users: the
  descriptions of their training items), frozen, held as non-persistent buffers, so they are read
  from the cache at construction and never written into a checkpoint.
- ``text_proj``: ``linear`` (one Linear h -> d) or ``mlp`` (Linear h -> (h+d)/2, LeakyReLU,
  Linear -> d, the shape of RLMRec's text MLP). One projection serves users and items: both texts
  come from the same encoder, and users and items share one space in a dot-product model.
- ``text_fusion``: ``add`` (ID + projected text) or ``concat`` (Linear(2d -> d) over
  [ID, projected text], shared by users and items).

Choices where the spec is silent:

- The text vectors are centred (mean over the rows that have text) and L2-normalised once. Mean
  hidden states of a decoder share one large common direction and a few outlier dimensions; raw,
  they would swamp the ID embeddings at initialisation. Unit-norm inputs are also what RecBole-style
  baselines with API text embeddings (RLMRec) receive. Rows without text (padding id 0) stay zero.
- Linear layers start from Xavier-uniform weights and zero biases, like RecBole's graph models,
  except that with ``add`` the projection's last layer starts at zero: the model begins as its
  ID-only base and the text enters as training finds it useful (see ``__init__``).
"""

import torch
import torch.nn.functional as F
from recbole.model.init import xavier_uniform_initialization
from torch import nn

from recbole_llm.data.text_embedding import text_embeddings
from recbole_llm.errors import ConfigValueError

TEXT_PROJECTIONS = ("linear", "mlp")
TEXT_FUSIONS = ("add", "concat")


def centred_unit_rows(vectors):
    """Centre the rows that have text, then scale every row to unit L2 norm; zero rows stay zero."""
    has_text = vectors.abs().sum(dim=1) > 0
    if not has_text.any():
        return vectors
    centred = torch.where(has_text.unsqueeze(1), vectors - vectors[has_text].mean(dim=0), vectors)
    return F.normalize(centred, dim=1)


class TextFusion(nn.Module):
    """Fuses frozen, projected text embeddings into the layer-0 user and item embeddings.

    Args:
        config: the run's Config; reads ``text_proj`` and ``text_fusion`` (and, through
            ``text_embeddings``, the backbone keys ``llm_path``, ``llm_num_layers``, ...).
        dataset: the training split's dataset, as a model receives it.
        embedding_size (int): d, the size of the ID embeddings.
    """

    def __init__(self, config, dataset, embedding_size):
        super().__init__()
        self.text_proj = config["text_proj"]
        self.text_fusion = config["text_fusion"]
        if self.text_proj not in TEXT_PROJECTIONS:
            raise ConfigValueError(
                f"text_proj={self.text_proj!r} is not supported. Fix: set text_proj to one of {', '.join(TEXT_PROJECTIONS)}."
            )
        if self.text_fusion not in TEXT_FUSIONS:
            raise ConfigValueError(
                f"text_fusion={self.text_fusion!r} is not supported. Fix: set text_fusion to one of {', '.join(TEXT_FUSIONS)}."
            )

        user_text, item_text = text_embeddings(dataset, config)
        self.register_buffer("user_text", centred_unit_rows(user_text), persistent=False)
        self.register_buffer("item_text", centred_unit_rows(item_text), persistent=False)

        text_size = item_text.shape[1]
        if self.text_proj == "linear":
            self.projection = nn.Linear(text_size, embedding_size)
        else:
            hidden = (text_size + embedding_size) // 2
            self.projection = nn.Sequential(
                nn.Linear(text_size, hidden), nn.LeakyReLU(), nn.Linear(hidden, embedding_size)
            )
        self.fuse = nn.Linear(2 * embedding_size, embedding_size) if self.text_fusion == "concat" else None
        self.apply(xavier_uniform_initialization)
        if self.fuse is None:
            # add: the model starts as its ID-only base and learns how much text to add. From a random
            # projection, HCCF+'s hypergraph (an un-normalised sum over all nodes) summed the shared
            # direction of the text features into huge scores and never trained
            # (benchmarks/notes/ml-100k.md, "Figures behind the code's choices").
            last = self.projection if self.text_proj == "linear" else self.projection[-1]
            nn.init.zeros_(last.weight)

    def _fused(self, ego, text):
        projected = self.projection(text)
        if self.fuse is None:
            return ego + projected
        return self.fuse(torch.cat([ego, projected], dim=1))

    def forward(self, user_ego, item_ego):
        """(user_ego', item_ego'): the ID embeddings of all users and all items fused with their text."""
        return self._fused(user_ego, self.user_text), self._fused(item_ego, self.item_text)
