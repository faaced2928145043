"""Stage 1 of GLTA and GAL-Rec: a LightGCN trained on the interaction graph, then frozen; and the
GLLM head's scores over the frozen graph's item tokens, which both models rank all items by.

Both models keep the graph (``graph_model``: ``FastLightGCN``, the papers' LightGCN over IDs, or
``TextLightGCN``, over item text) as a submodule so that stage 1 trains through RecBole's pairwise
batches, and its final embeddings as buffers that every later stage reads. Stage 1's scores are the
graph model's own (``FastLightGCN.scores``: dot products, or cosine / ``softmax_tau`` under the softmax).

Additions beyond the papers, each a config key (``properties/glta-paper.yaml`` and
``galrec-paper.yaml`` turn them off):

- ``score_fusion``: the final scores combine stage 1's ranking with the LM's logits
  (``model/score_fusion.py``, which the models and the trainer ask).
- ``lm_holdout_ratio``: a second LightGCN (``holdout_graph``) is trained without a fraction of each
  user's training interactions; its embeddings feed the language model, and the language-model stage
  predicts exactly the held-out interactions, scored on top of that graph, as a stacked ensemble is
  trained on what its base model did not see. At inference the fused score uses the LightGCN of all
  training interactions (``graph``), as a stacked ensemble refits its base model on all the data.
- ``ordered_context``: under ``order: TO`` the held-out interactions are each user's most recent,
  and the models show a user's latest training items (``self.sequences``, ``latest``) and predict
  what follows, as leave-one-out evaluation asks.
- ``id_control``: the model with text removed everywhere, the control that measures what text and the
  language model add: stage 1 on IDs (``FastLightGCN`` with the same loss), and no text in any token
  or prompt (each model turns its own text switches off through ``reads_text``).
"""

import contextlib
import functools
from pathlib import Path

import recbole
import torch
import yaml
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_llm.data.holdout import holdout_mask
from recbole_llm.data.text_embedding import text_embeddings
from recbole_llm.errors import ConfigValueError
from recbole_llm.helpers import property_keys, with_entries
from recbole_llm.llm import LLM_KEYS
from recbole_llm.model.fastlightgcn import FastLightGCN
from recbole_llm.model.frozen_backbone import FrozenBackboneMixin
from recbole_llm.model.score_fusion import score_fusion
from recbole_llm.model.textlightgcn import TextLightGCN

# The keys that choose the held-out interactions: only the holdout graph's stage-1 cache depends on them.
HOLDOUT_KEYS = frozenset({"lm_holdout_ratio", "ordered_context"})
# The models built on this stage 1, by their property files' names.
GRAPH_LM_MODELS = ("GLTA", "GALRec")
# What ``graph_model`` may name: LightGCN over IDs (the papers' stage 1), or over item text.
GRAPH_MODELS = {model.__name__: model for model in (FastLightGCN, TextLightGCN)}
# The entries stage 1 reads under names of its own; the language-model stages read the plain ones.
STAGE1_NAMES = {"epochs": "graph_epochs", "learning_rate": "graph_learning_rate"}
# The entries stage 1 reads under names of its own only where those are set (``~``: the run's entry). A run
# that validates its language-model stage rarely (``eval_step``) need not early-stop its graph as rarely.
STAGE1_OPTIONAL_NAMES = {"eval_step": "graph_eval_step"}
# Stage 1 embeds item text with MiniLM, as TextLightGCN alone does, whatever ``text_encoder`` gives GAL-Rec's
# item tokens: with the backbone's states stage 1 would depend on the backbone's keys, which its cache ignores.
STAGE1_TEXT_ENCODER = "minilm"


def id_control(config):
    """``id_control`` as a bool: the model with text removed everywhere (see the module's docstring)."""
    value = config["id_control"]
    if value not in (None, True, False):
        raise ConfigValueError(f"id_control={value!r} is not a boolean. Fix: set it to True (the model without "
                               "any text, its id control) or False.")
    return bool(value)


def stage1_config(config):
    """The config stage 1's graph is built and trained from: the run's, with ``graph_epochs`` and
    ``graph_learning_rate`` as ``epochs`` and ``learning_rate``, ``graph_eval_step`` (where set) as
    ``eval_step``, MiniLM as ``text_encoder``, and under ``id_control`` ``FastLightGCN`` as ``graph_model``
    (the same loss on IDs)."""
    entries = {name: config[own] for name, own in STAGE1_NAMES.items()}
    entries.update({name: config[own] for name, own in STAGE1_OPTIONAL_NAMES.items() if config[own] is not None})
    entries["text_encoder"] = STAGE1_TEXT_ENCODER
    if id_control(config):
        entries["graph_model"] = FastLightGCN.__name__
    return with_entries(config, **entries)


def graph_model_class(config):
    """The stage-1 graph class ``graph_model`` names (``~``: FastLightGCN)."""
    name = config["graph_model"] or FastLightGCN.__name__
    if name not in GRAPH_MODELS:
        raise ConfigValueError(f"graph_model={name!r} is not a stage-1 graph model. "
                               f"Fix: set graph_model to one of {', '.join(GRAPH_MODELS)}.")
    return GRAPH_MODELS[name]


@functools.cache
def stage1_options():
    """``graph_model`` and the keys the stage-1 graph models read beyond what RecBole's LightGCN reads (its
    property file and RecBole's overall one): the loss's and the text's, from their property files."""
    recbole_dir = Path(recbole.__file__).resolve().parent / "properties"
    lightgcn = set()
    for path in (recbole_dir / "overall.yaml", recbole_dir / "model" / "LightGCN.yaml"):
        lightgcn |= set(yaml.safe_load(path.read_text(encoding="utf-8")) or ())
    added = frozenset().union(*(property_keys(name) for name in GRAPH_MODELS)) - lightgcn
    return added | {"graph_model"}


def papers_stage1(stage1):
    """Whether the effective stage-1 config ``stage1`` trains the papers' stage 1: FastLightGCN with BPR.

    Any other stage 1 is trained under random states of its own, seeded from ``seed``
    (``GraphStageTrainer._train_graph``), and its cache is shared by GLTA and GAL-Rec."""
    ids = (stage1["graph_model"] or FastLightGCN.__name__) == FastLightGCN.__name__
    return ids and (stage1["graph_loss"] or "bpr") == "bpr"


def unread_stage1_options(stage1):
    """The ``stage1_options`` stage 1 does not read under the effective stage-1 config ``stage1``: all of them
    for the papers' stage 1 (FastLightGCN with BPR), none otherwise. They stay out of the stage-1 cache key,
    so runs made before those keys existed keep their cache."""
    return stage1_options() if papers_stage1(stage1) else frozenset()


def latest(sequence, n, end=None):
    """The up to ``n`` items of ``sequence`` before position ``end`` (default: its end), oldest first."""
    end = len(sequence) if end is None else end
    return sequence[max(end - n, 0):end]


class GraphLMRecommender(FrozenBackboneMixin, GeneralRecommender):
    """The base of the graph + language-model recommenders (GLTA, GAL-Rec): stage 1's graph, the fused
    scores, and what ``GraphStageTrainer`` may call on them.

    Its property file (``properties/model/GraphLMRecommender.yaml``) is stage 1's one block of keys,
    which both models read: what stage 1 depends on is computed from it (``trainer/run_state.py``).

    A subclass builds, in its constructor, ``_build_graph``, ``_build_holdout_graph``, ``self.llm``
    and ``self.lora`` (``load_backbone``), ``self.gllm_head`` (``GLLMHead``), and implements
    ``item_tokens(items)`` and ``lm_logits(users)``. The trainers then call:

    - stage 1: ``graph``, ``holdout_graph``, ``holdout_dataset``, ``stage1_graphs()``, ``freeze_graph()``;
    - the language-model stages: ``lm_users``, ``init_head_from_item_tokens()``,
      ``fusion_parameters()``, and the subclass's own losses and parameter lists, which only its own
      trainer reads;
    - scoring: ``score_fusion`` (``model/score_fusion.py``), ``stage1_scores()``, ``lm_logits()``,
      ``scoring_from()``, ``scoring_stage1_alone()``, ``fusion_weights()``.
    """

    # Stage 1 trains on RecBole's pairwise (user, positive, negative) batches.
    input_type = InputType.PAIRWISE
    uses_item_text = True

    @classmethod
    def stage1_keys(cls):
        """The keys of stage 1's property block, which GLTA and GAL-Rec share."""
        return property_keys(GraphLMRecommender.__name__)

    @classmethod
    def later_stage_keys(cls):
        """The keys only the language-model stages read: the backbone's and those of the model's own
        property files. Runs that differ in nothing else share stage 1 (``graph_cache``); a key that no
        file names counts as one stage 1 may read, so a missing name costs a cache miss, never a wrong reuse."""
        return cls._later_keys(c.__name__ for c in cls.__mro__
                               if issubclass(c, GraphLMRecommender) and c is not GraphLMRecommender)

    @classmethod
    def any_later_stage_keys(cls):
        """The keys the language-model stages of GLTA or GAL-Rec read (``later_stage_keys`` of either, from
        their property files): none of them can change stage 1, whichever model trains it. A model left off
        ``GRAPH_LM_MODELS`` costs a cache miss, never a wrong reuse."""
        return cls._later_keys(GRAPH_LM_MODELS)

    @classmethod
    def _later_keys(cls, names):
        """The backbone's keys and those of the property files ``names``, less stage 1's block and the entries
        stage 1 reads where its own names are unset (``eval_step``, which GAL-Rec's file sets for its
        language-model stage)."""
        return frozenset(LLM_KEYS.union(*(property_keys(name) for name in names))
                         - cls.stage1_keys() - STAGE1_OPTIONAL_NAMES.keys())

    def item_tokens(self, items):
        """The soft tokens of ``items`` in the language model's input space (the item projector's output)."""
        raise NotImplementedError

    def lm_logits(self, users):
        """The language model's scores of every item for ``users`` [B, n_items], before the fusion."""
        raise NotImplementedError

    def reads_text(self, config, key):
        """The boolean text switch ``key`` of the model (e.g. ``use_item_text``), off under ``id_control``."""
        return bool(config[key]) and not self.id_control

    def _build_graph(self, config, dataset):
        """Create the stage-1 graph (``graph_model``) and the (zero until frozen) buffers; returns the size of
        its embeddings."""
        self.id_control = id_control(config)
        self.stage1_config = stage1_config(config)
        self.graph = graph_model_class(self.stage1_config)(self.stage1_config, dataset)
        d = self.graph.output_size  # embedding_size, or twice it for TextLightGCN's id_tower
        self.register_buffer("user_graph_embedding", torch.zeros(self.n_users, d))
        self.register_buffer("item_graph_embedding", torch.zeros(self.n_items, d))
        self.holdout_graph = self.lm_targets = self.lm_history = None
        self.stage1_alone = False
        self.fixed_scores = None
        self.score_fusion = score_fusion(config)
        return d

    def _build_holdout_graph(self, config, dataset):
        """The LightGCN of the training interactions that ``lm_holdout_ratio`` does not hold out, if it holds
        any out; returns the held-out mask over ``dataset.inter_feat``. ``self.ordered``: the protocol
        orders each user's interactions in time (``order: TO``) and ``ordered_context`` is on, so the most
        recent ones are held out, and the models show and predict items in time order."""
        if config["ordered_context"] not in (None, True, False):
            raise ConfigValueError(f"ordered_context={config['ordered_context']!r} is not a boolean. Fix: set it to True or False.")
        self.ordered = config["eval_args"]["order"] == "TO" and config["ordered_context"] in (None, True)
        # Each user's training items in time order (the split's order under TO).
        self.sequences = self._per_user_items(dataset) if self.ordered else None
        held = holdout_mask(dataset, config["lm_holdout_ratio"] or 0.0, config["seed"], self.ordered)
        # The users the language-model stage trains on: those with a target to predict.
        users = dataset.inter_feat[dataset.uid_field]
        self.lm_users = torch.nonzero(torch.bincount(users[held] if held.any() else users, minlength=self.n_users)).squeeze(1)
        if not held.any():
            return held
        self.holdout_dataset = dataset.copy(dataset.inter_feat[~held])
        self.holdout_graph = type(self.graph)(self.stage1_config, self.holdout_dataset)
        d = self.graph.output_size
        # The full graph's embeddings, for the fused score at inference (the LM reads the holdout graph's).
        self.register_buffer("user_score_embedding", torch.zeros(self.n_users, d))
        self.register_buffer("item_score_embedding", torch.zeros(self.n_items, d))
        self.lm_targets = self._per_user_items(dataset, held)
        self.lm_history = self._per_user_items(dataset, ~held)
        return held

    def _per_user_items(self, dataset, mask=None):
        """Item ids of the interactions where ``mask`` holds (all without one), one numpy array per user id."""
        inter = dataset.inter_feat if mask is None else dataset.inter_feat[mask]
        users, items = inter[dataset.uid_field].numpy(), inter[dataset.iid_field].numpy()
        order = users.argsort(kind="stable")
        bounds = torch.searchsorted(torch.from_numpy(users[order]), torch.arange(self.n_users + 1)).numpy()
        # Views of one sorted copy: sorting inside the loop made a full copy per user, which each view
        # then kept alive.
        items = items[order]
        return [items[bounds[u]:bounds[u + 1]] for u in range(self.n_users)]

    def _build_item_text(self, config, dataset):
        """``use_item_text`` (GAL-Rec's): the frozen text embedding of every item's description; returns its
        size (0 without).

        Items are then described to the language model by P_i(E_i) + P_t(text_i) (``item_token``), so
        an item with few interactions, whose graph embedding says little, still has a meaningful token.
        """
        self.use_item_text = self.reads_text(config, "use_item_text")
        if not self.use_item_text:
            return 0
        # Recomputed from the on-disk cache when a model is built, so no checkpoint carries it.
        self.register_buffer("item_text_embedding", text_embeddings(dataset, config, users=False)[1], persistent=False)
        return self.item_text_embedding.shape[1]

    def item_token(self, items, item_projector, text_projector):
        """P_i(E_i) + P_t(text_i) of ``items`` (P_t only with ``use_item_text``)."""
        items = items.to(self.device)
        tokens = item_projector(self.item_graph_embedding[items])
        if self.use_item_text:
            tokens = tokens + text_projector(self.item_text_embedding[items])
        return tokens

    def stage1_graphs(self):
        return [graph for graph in (self.graph, self.holdout_graph) if graph is not None]

    @torch.no_grad()
    def freeze_graph(self):
        """End of stage 1: keep LightGCN's final embeddings as fixed inputs of the projectors."""
        for graph in self.stage1_graphs():
            graph.eval()
            graph.requires_grad_(False)
        users, items = self.graph.forward()
        if self.holdout_graph is not None:
            self.user_score_embedding.copy_(users)
            self.item_score_embedding.copy_(items)
            users, items = self.holdout_graph.forward()
        self.user_graph_embedding.copy_(users)
        self.item_graph_embedding.copy_(items)

    # ----- fold_in_valid: scoring with interactions stage 1 did not train on -------------------------

    # What a subclass derives from the training history for inference (GAL-Rec's context, GLTA's
    # prompt history): ``folded_in`` rebuilds it with ``_refresh_inference`` and restores it.
    INFERENCE_STATE = ()

    def _refresh_inference(self, dataset):
        """Rebuild ``INFERENCE_STATE`` from ``self.sequences`` or ``dataset``'s interactions."""

    @contextlib.contextmanager
    def folded_in(self, dataset):
        """Within it, the model scores as if ``dataset``'s interactions were its training history (``fold_in_valid``:
        the training split and then the validation split, so each user's sequence stays in time order).

        Nothing is trained. Each stage-1 graph is rebuilt over those interactions with its trained
        parameters, so LightGCN's propagation (and TextLightGCN's users, the mean of their items'
        text) reaches them; the frozen embeddings the language model and the fused score read are
        taken from it (``freeze_graph``). With ``lm_holdout_ratio`` that includes the holdout graph,
        which then also reaches the training items it was trained without. The language model's
        inference state (``sequences``, ``INFERENCE_STATE``) is rebuilt from them: on ordered data
        each context ends at the user's latest item, as SASRec's test input does; on unordered data
        the seeded random contexts are drawn again from the larger history, so they change for every
        user. GLTA's generated user texts (``use_profile``, ``use_prediction``) stay those of the
        training history. On leaving, everything is as it was.
        """
        graphs = (self.graph, self.holdout_graph)
        buffers = {name: buffer.clone() for name, buffer in self.named_buffers(recurse=False)}
        saved = {name: getattr(self, name) for name in ("sequences", *self.INFERENCE_STATE)}
        try:
            with torch.random.fork_rng(devices=[]):  # building a graph draws its initial weights
                self.graph, self.holdout_graph = (None if g is None else self._graph_over(g, dataset) for g in graphs)
            self.freeze_graph()
            if self.sequences is not None:
                self.sequences = self._per_user_items(dataset)
            self._refresh_inference(dataset)
            yield
        finally:
            self.graph, self.holdout_graph = graphs
            with torch.no_grad():
                for name, buffer in self.named_buffers(recurse=False):
                    buffer.copy_(buffers[name])
            for name, value in saved.items():
                setattr(self, name, value)

    def _graph_over(self, graph, dataset):
        """A graph of ``graph``'s class and parameters whose propagation runs over ``dataset``'s interactions."""
        other = type(graph)(self.stage1_config, dataset).to(self.device)
        other.load_state_dict(graph.state_dict())
        return other

    def fusion_parameters(self):
        return list(self.score_fusion.parameters())

    def fusion_weights(self):
        """The fusion's weights for the run's record (None without any)."""
        return self.score_fusion.record()

    def stage1_scores(self, users, training=False):
        """Stage 1's scores of ``users`` over all items, as the graph model scores (``FastLightGCN.scores``): in
        training, of the graph the LM reads; otherwise of the LightGCN of all training interactions (the
        ranking the fused model starts from)."""
        if training or self.holdout_graph is None:
            return self.graph.scores(self.user_graph_embedding[users], self.item_graph_embedding)
        return self.graph.scores(self.user_score_embedding[users], self.item_score_embedding)

    @contextlib.contextmanager
    def scoring_from(self, scores):
        """Within it, ``full_sort_predict`` returns rows of ``scores`` [n_users, n_items] (computed once):
        the trainer evaluates candidate fusions on validation without running the LM again."""
        self.fixed_scores = scores
        try:
            yield
        finally:
            self.fixed_scores = None

    def full_sort_predict(self, interaction):
        """Every item's score for the interaction's users: the fused scores (``lm_logits`` through ``fused_logits``)."""
        users = interaction[self.USER_ID]
        if self.fixed_scores is not None:
            return self.fixed_scores[users.cpu()].to(self.device)
        if self.stage1_alone:
            return self.stage1_scores(users)
        return self.fused_logits(users, self.lm_logits(users) if self.score_fusion.needs_lm else None)

    @contextlib.contextmanager
    def scoring_stage1_alone(self):
        """Within it, ``full_sort_predict`` ranks by stage 1 alone (the LM is not run): its own test metrics."""
        self.stage1_alone = True
        try:
            yield
        finally:
            self.stage1_alone = False

    def fused_logits(self, users, lm_logits, training=False):
        """The final scores of ``users`` from the LM logits ([B, n_items] or [B, k, n_items]).

        In training, with held-out targets, the user's other training items (the prompt's history,
        which the graph already ranks on top) are masked, as RecBole's evaluator masks them.
        """
        def graph_scores():
            graph = self.stage1_scores(users, training)
            return graph.unsqueeze(1) if lm_logits is not None and lm_logits.dim() == 3 else graph

        fused = self.score_fusion.fuse(graph_scores, lm_logits, training)
        if training and self.lm_history is not None and self.score_fusion.masks_training_history:
            seen = torch.zeros(len(users), self.n_items, dtype=torch.bool, device=fused.device)
            for row, user in enumerate(users.tolist()):
                seen[row, torch.as_tensor(self.lm_history[user], dtype=torch.long)] = True
            fused = fused.masked_fill(seen.unsqueeze(1) if fused.dim() == 3 else seen, float("-inf"))
        return fused

    @torch.no_grad()
    def init_head_from_item_tokens(self):
        """``gllm_head: item_tokens``: start the head from the item tokens of the frozen graph."""
        self.gllm_head.init_from_item_tokens(self.item_tokens(torch.arange(self.n_items, device=self.device)))

    def logits(self, hidden):
        """Scores of every item from LLM hidden states through the GLLM head (``tied``: over all item tokens).

        The head and the projectors stay in float32 whatever ``llm_dtype`` the backbone runs in."""
        hidden = hidden.float()
        all_tokens = self.item_tokens(torch.arange(self.n_items, device=hidden.device)) if self.gllm_head.mode == "tied" else None
        return self.gllm_head(hidden, all_tokens)

    def predict(self, interaction):
        """The scores of the interaction's items: their columns of ``full_sort_predict``."""
        scores = self.full_sort_predict(interaction)
        return scores.gather(1, interaction[self.ITEM_ID].unsqueeze(1)).squeeze(1)
