"""Stage 1 of GLTA and GAL-Rec (the graph) and what their later stages share: the run folder,
stage batches, DDP, and a last stage trained through RecBole's ``fit``.

All checkpoints of a run live in ``<checkpoint_dir>/<model>-<dataset>-<digest>/`` (``run_state``).
Running the same command again resumes: a finished stage is loaded, not retrained; a stage
continues from its last completed epoch. Delete the folder to start over.

- Stage 1 (graph) trains ``model.graph`` with RecBole's own Trainer on RecBole's pairwise batches,
  early-stopped on the validation split, unless ``graph_checkpoint`` names a LightGCN checkpoint;
  its position is kept after every epoch (``Stage1Trainer``), so a run killed there continues it.
  With ``graph_cache`` (the default) its best embeddings are also kept in ``graph_cache_dir``
  (default ``<checkpoint_dir>/graph_cache``) under a digest of every entry stage 1 can depend on
  (all but the run-only keys and the model class's ``later_stage_keys()``), and a later run with the
  same digest (an ablation, another λ or head) loads them instead of training the same LightGCN
  again. Stage 1 is a function of the seed, the data and those entries alone (the graph is the
  first thing the model builds, and RecBole's shuffling and sampling are seeded; a stage 1 other
  than the papers' FastLightGCN with BPR, whose loss draws from torch's global random state, trains
  under random states seeded for it alone, which also makes GLTA's and GAL-Rec's one graph), so the loaded
  embeddings are the ones the run would have trained (tests/test_graph_cache.py checks it with one
  torch thread; with several, CPU reductions change order and two trainings of the same stage 1
  already differ by ~1e-7).
- ``fold_in_valid``: a split evaluated after the validation split (the test) is scored with the
  validation interactions folded in (``GraphLMRecommender.folded_in``): the models read each user's
  history up to the test item, as SASRec does, without training on it. ``unfolded()`` scores
  without them, for comparison. ``auto`` folds them in under ``order: TO`` alone, where a sequential
  model's test input holds them; under a random split no stock model reads them.
- The last stage (GLTA's user alignment, GAL-Rec's graph-aware learning) goes through RecBole's
  ``fit`` on batches of ids, so validation, early stopping and the best checkpoint
  (``<model>-best.pth``) are RecBole's; ``LATEST_FILE`` holds its position after its last finished epoch.

Only trainable weights and the graph embeddings are saved (the models' ``state_dict`` leaves the
frozen backbone out).
"""

import contextlib
import math
import pickle
import time
from pathlib import Path

import torch
from recbole.data.dataloader import TrainDataLoader
from recbole.data.interaction import Interaction, cat_interactions
import recbole.trainer.trainer as recbole_trainer
from recbole.trainer import Trainer

from recbole_llm.checkpoint import load_checkpoint, own_random_states
from recbole_llm.errors import ConfigValueError
from recbole_llm.helpers import atomic_save, time_calls
from recbole_llm.model.graph_stage import (HOLDOUT_KEYS, STAGE1_NAMES, STAGE1_OPTIONAL_NAMES, papers_stage1,
                                          stage1_config, unread_stage1_options)
from recbole_llm.model.score_fusion import FUSION_WEIGHTS
from recbole_llm.trainer.accumulation import accumulate
from recbole_llm.trainer.run_state import RunState, graph_digest


def fold_in_wanted(config):
    """``fold_in_valid`` as a boolean: True, False (or ~), or ``auto``, True under ``order: TO``."""
    value = config["fold_in_valid"]
    if value == "auto":
        return config["eval_args"]["order"] == "TO"
    if value not in (None, True, False):
        raise ConfigValueError(f"fold_in_valid={value!r} is not a boolean nor auto. Fix: set it to True, False or auto.")
    return bool(value)


def graph_cache_digest(config, model_class, holdout=False):
    """The stage-1 cache key of a run: its LightGCN of all training interactions (independent of
    ``lm_holdout_ratio`` and of ``ordered_context``, which choose the held-out interactions), or with
    ``holdout`` the LightGCN without the held-out interactions.

    It is the digest of the config stage 1 is built from (``stage1_config``: ``id_control`` already
    turned into the graph model it trains), less the keys only later stages read, the plain names of
    the entries stage 1 reads under its own, the optional own names (their value is in the plain entry,
    so ``graph_eval_step=1`` shares the cache of ``eval_step=1``), and the stage-1 options the papers'
    stage 1 does not read. A stage 1 other than the papers' is trained under random states of its own,
    the same in GLTA and GAL-Rec, so ``model`` and the keys of either model's later stages are left out
    too: the two models share its file."""
    stage1 = stage1_config(config)
    papers = papers_stage1(stage1)
    later = model_class.later_stage_keys() if papers else model_class.any_later_stage_keys() | {"model"}
    ignored = later - (HOLDOUT_KEYS if holdout else set())
    ignored |= STAGE1_NAMES.keys() | STAGE1_OPTIONAL_NAMES.values() | unread_stage1_options(stage1)
    return graph_digest(stage1, ignored)


def graph_cache_file(config, model_class, holdout=False):
    """The shared stage-1 file of a run's graph settings, or None when ``graph_cache`` is off.

    The LightGCN of all training interactions does not depend on ``lm_holdout_ratio``; the holdout
    graph does (and its file says so in its name). The papers' stage 1 is named after the model that
    trained it (``GLTA-...``, ``GALRec-...``), any other after no model (``stage1-...``): GLTA and GAL-Rec share it.
    """
    if not config["graph_cache"]:
        return None
    root = Path(config["graph_cache_dir"] or Path(config["checkpoint_dir"]) / "graph_cache")
    digest = graph_cache_digest(config, model_class, holdout)
    owner = config["model"] if papers_stage1(stage1_config(config)) else "stage1"
    return root / f"{owner}-{config['dataset']}-{'holdout-' if holdout else ''}{digest}.pth"


class StageBatches:
    """Shuffled batches of user or item ids, shaped like the RecBole dataloaders the train loop reads.

    ``group`` keeps batches a multiple of it (stage 2's m items per prompt), dropping the remainder
    of each epoch's shuffle. ``limit`` (``users_per_epoch``) keeps the first batches of each epoch's
    shuffle that hold that many ids, rounded up to a whole batch: a fresh random subset each epoch
    (None: every id). Each rank of a
    multi-process run takes its own share of every batch.
    """

    shuffle = False  # RecBole's loop would otherwise reach for a DistributedSampler

    def __init__(self, field, ids, batch_size, dataset, seed, group=1, rank=0, world_size=1, limit=None):
        self.field, self.ids, self.dataset = field, ids, dataset
        self.batch_size = batch_size * group
        self.group, self.seed, self.rank, self.world_size, self.limit = group, seed, rank, world_size, limit
        self.epoch = 0

    def __len__(self):
        full = math.ceil(len(self.ids) // self.group * self.group / self.batch_size)
        return full if self.limit is None else min(full, math.ceil(self.limit / self.batch_size))

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        order = self.ids[torch.randperm(len(self.ids), generator=generator)]
        order = order[: len(order) // self.group * self.group]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = order[start:start + self.batch_size].view(-1, self.group)[self.rank::self.world_size].reshape(-1)
            if len(batch):
                yield Interaction({self.field: batch})


class Stage1Trainer(RunState, Trainer):
    """RecBole's Trainer for one stage-1 graph, its position kept in the run's folder after every epoch
    (``stage1_<stage>_latest.pth``, removed once ``GRAPH_FILE`` keeps the whole of stage 1), so a run killed
    in stage 1 continues that graph where it stopped."""

    def __init__(self, config, graph, run_dir, stage):
        self._folder = run_dir
        super().__init__(config, graph)
        self.LATEST_FILE = f"stage1_{stage}_latest.pth"
        self.fit_stage = stage

    def _run_dir(self, config):
        return self._folder


class GraphStageTrainer(RunState, Trainer):
    """Stage 1 (graph), then the subclass's stages; its last one runs through ``fit_last_stage``.

    A subclass names its ``STAGES`` (``"graph"`` first, the last stage last) and ``LATEST_FILE`` (the
    last stage's position), and implements ``fit`` as: ``prepare_graph``, its own stages, then
    ``fit_last_stage``. Every stage keeps its position in ``run_state``'s one layout.
    """

    STAGES = ("graph",)
    GRAPH_FILE = "stage1_graph.pth"

    def __init__(self, config, model):
        super().__init__(config, model)
        self.saved_model_file = str(self.run_dir / f"{config['model']}-best.pth")
        self.stage_seconds_per_epoch = {stage: [] for stage in self.STAGES}
        self.stage_loss_per_epoch = {stage: [] for stage in self.STAGES}
        # graph_source (from RunState) becomes: trained, graph_checkpoint, cache or run checkpoint
        self.rank = 0 if config["single_spec"] else config["local_rank"]
        self.world_size = 1 if config["single_spec"] else config["world_size"]
        self.fit_stage = self.STAGES[-1]
        self._splits = None  # (train, valid) loaders of fit, which fold_in_valid reads
        self._folded = None  # their interactions, training then validation
        self._fold_in = fold_in_wanted(config)
        self._warned_unfolded = False

    def _batches(self, field, ids, batch_size, dataset, group=1, limit=None):
        return StageBatches(field, ids, batch_size, dataset, self.config["seed"], group, self.rank, self.world_size, limit)

    def _build_optimizer(self, **kwargs):
        return accumulate(super()._build_optimizer(**kwargs), self.config)

    def _rewrap_ddp(self):
        """Wrap the model in DDP again: DDP fixes the set of parameters it reduces when it wraps, and
        stage 1 has since frozen the graph (left registered, DDP would wait for their gradients)."""
        if self.world_size > 1:
            self.distributed_model = recbole_trainer.DistributedDataParallel(self.model, device_ids=[self.config["local_rank"]])

    def _barrier(self):
        """Under DDP, wait until rank 0 has written what every rank reads next."""
        if self.world_size > 1:
            torch.distributed.barrier()

    def prepare_graph(self, train_data, valid_data, verbose, show_progress):
        """The run folder and stage 1 (trained, loaded or resumed), with DDP wrapped around what stays trainable."""
        self._splits, self._folded = (train_data, valid_data), None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._graph_stage(train_data, valid_data, verbose, show_progress)
        self._rewrap_ddp()

    # ----- stage 1 ------------------------------------------------------------------------------

    def _graph_stage(self, train_data, valid_data, verbose, show_progress):
        done = self.run_dir / self.GRAPH_FILE
        if done.is_file():
            self.restore_position(done, "the same command then trains stage 1 again.")
            # The checkpoint holds the frozen graph embeddings; the graph's weights stay out of training,
            # as freeze_graph leaves them (or DDP would reduce their gradients and counts would include them).
            for graph in self.model.stage1_graphs():
                graph.requires_grad_(False)
            self.logger.info(f"Stage 1 (graph) done earlier: loaded {done}")
            self.graph_source = "run checkpoint"
            return
        graph = self.model.graph
        cached = graph_cache_file(self.config, type(self.model))
        if self.config["graph_checkpoint"]:
            self._load_graph_checkpoint(self.config["graph_checkpoint"])
            self.graph_source = "graph_checkpoint"
        elif cached is not None and cached.is_file():
            self._load_graph_checkpoint(cached, from_cache=True)
            self.logger.info("Stage 1 (graph): trained by an earlier run with the same graph settings, seed and data "
                             "(graph_cache; set graph_cache=False to train it again)")
            self.graph_source = "cache"
        else:
            self._train_graph(graph, train_data, valid_data, verbose, show_progress, cached)
            self.graph_source = "trained"
        if self.model.holdout_graph is not None:
            self._holdout_graph_stage(train_data, valid_data, verbose, show_progress)
        self.model.freeze_graph()
        self.save_position(done, "graph", None, done=True)
        if self._is_writer():
            # Each graph's own position served only until stage 1 as a whole was kept.
            for stage_position in self.run_dir.glob("stage1_*_latest.pth"):
                stage_position.unlink()

    def _train_graph(self, graph, train_data, valid_data, verbose, show_progress, cached, stage="graph"):
        """Train one stage-1 LightGCN with RecBole's Trainer, early-stopped on validation; keep its best.

        ``stage`` names it in the per-stage costs: ``graph``, or ``holdout_graph`` for the second one.
        """
        config = stage1_config(self.config)
        graph_trainer = Stage1Trainer(config, graph, self.run_dir, stage)
        graph_trainer.saved_model_file = str(self.run_dir / f"stage1_{stage}_best.pth")
        time_calls(graph_trainer, "_train_epoch", self.stage_seconds_per_epoch.setdefault(stage, []))
        self.logger.info(f"Stage 1 ({stage}): {type(graph).__name__} with {config['graph_loss'] or 'bpr'} "
                         "on the training interactions")
        # The papers' stage 1 draws from the run's random states, as the committed results were trained;
        # any other from states seeded for it alone, so it is the same graph whatever model trains it.
        own_states = (contextlib.nullcontext() if papers_stage1(config)
                      else own_random_states(config["seed"], config["reproducibility"]))
        with own_states:
            graph_trainer.fit_from(train_data, valid_data, verbose=verbose, saved=True, show_progress=show_progress,
                                   fix="the same command then trains this stage-1 graph again from its first epoch.")
        self.resumed = self.resumed or graph_trainer.resumed
        self.stage_loss_per_epoch[stage] = list(graph_trainer.train_loss_dict.values())
        self._barrier()  # only rank 0 writes the best graph checkpoint
        best = torch.load(graph_trainer.saved_model_file, map_location=self.device, weights_only=False)
        graph.load_state_dict(best["state_dict"])
        # With the best epoch's cached final embeddings too, as RecBole's evaluate reloads them (else
        # graph.full_sort_predict would score with the last validation epoch's).
        graph.load_other_parameter(best.get("other_parameter"))
        if cached is not None and self._is_writer():
            # The graph's parameters: a FastLightGCN's two embedding tables, a TextLightGCN's MLP (and ID tables).
            weights = {name: p.detach().cpu() for name, p in graph.named_parameters()}
            atomic_save({"state_dict": weights, "best_epoch": best["epoch"]}, cached)  # best_epoch: for inspection

    def _holdout_graph_stage(self, train_data, valid_data, verbose, show_progress):
        """``lm_holdout_ratio``: the LightGCN of the training interactions that are not held out."""
        model = self.model
        cached = graph_cache_file(self.config, type(self.model), holdout=True)
        if cached is not None and cached.is_file():
            self._load_graph_checkpoint(cached, from_cache=True, graph=model.holdout_graph)
            return
        loader = TrainDataLoader(self.config, model.holdout_dataset, train_data._sampler, shuffle=True)
        self.logger.info(f"Stage 1 (graph): a second LightGCN without the {self.config['lm_holdout_ratio']} of each "
                         "user's training interactions that the language-model stage predicts")
        self._train_graph(model.holdout_graph, loader, valid_data, verbose, show_progress, cached, "holdout_graph")

    def fusion_weights(self):
        return self.model.fusion_weights()

    # ----- evaluation ---------------------------------------------------------------------------

    def folds_in(self, eval_data):
        """Whether ``evaluate`` scores ``eval_data`` with the validation interactions folded in: with
        ``fold_in_valid``, for a split other than fit's training and validation splits (the test)."""
        return bool(self._fold_in and self._splits is not None and self._splits[1] is not None and eval_data
                    and all(eval_data is not split for split in self._splits))

    def _folded_dataset(self):
        """The training split's dataset with the validation split's interactions after its own (built once)."""
        if self._folded is None:
            train, valid = (split.dataset for split in self._splits)
            self._folded = train.copy(cat_interactions([train.inter_feat, valid.inter_feat]))
        return self._folded

    @contextlib.contextmanager
    def unfolded(self):
        """Within it, ``evaluate`` scores every split on the training history alone (``fold_in_valid`` off)."""
        fold_in, self._fold_in = self._fold_in, False
        try:
            yield
        finally:
            self._fold_in = fold_in

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        """RecBole's ``evaluate``; where ``folds_in(eval_data)``, within ``model.folded_in``. The best checkpoint
        is then loaded first, as RecBole loads it, so that the fold-in reads its parameters."""
        if not self.folds_in(eval_data):
            if self._fold_in and self._splits is None and not self._warned_unfolded:
                self._warned_unfolded = True
                self.logger.warning("fold_in_valid is set, but this trainer has not run fit, so it does not know the "
                                    "validation split: the test is scored on the training history alone. Run fit "
                                    "(the runner does) to fold the validation interactions in.")
            return super().evaluate(eval_data, load_best_model, model_file, show_progress)
        if load_best_model:
            path = model_file or self.saved_model_file
            checkpoint = load_checkpoint(path, "delete the run's folder and train again.", map_location=self.device)
            self.model.load_state_dict(checkpoint["state_dict"])
            self.model.load_other_parameter(checkpoint.get("other_parameter"))
            self.logger.info(f"Loading model structure and parameters from {path}")
        with self.model.folded_in(self._folded_dataset()):
            return super().evaluate(eval_data, False, model_file, show_progress)

    def graph_test_result(self, test_data):
        """Test metrics of stage 1's LightGCN alone (the ranking the fused model starts from)."""
        # Through this trainer's evaluate (DDP-aware), the model ranking by stage 1 without its LM forward.
        with self.model.scoring_stage1_alone():
            return self.evaluate(test_data, load_best_model=False)

    def _load_graph_checkpoint(self, path, from_cache=False, graph=None):
        """Stage 1's parameters from ``path``: a ``graph_checkpoint`` or, ``from_cache``, a stage-1 cache file."""
        graph = graph or self.model.graph
        kind = type(graph).__name__
        if from_cache:
            what = f"The stage-1 cache file {str(path)!r}"
            fix = ("Fix: delete that file (the next run trains stage 1 and stores it again), or set graph_cache=False "
                   "to train stage 1 without the cache.")
        else:
            what = f"graph_checkpoint={str(path)!r}"
            saved_by = "RecBole's LightGCN or FastLightGCN" if kind == "FastLightGCN" else kind
            fix = f"Fix: point it at a .pth file saved by {saved_by} on this dataset (graph_model: {kind}), or unset it."
        expected = {name: p.shape for name, p in graph.named_parameters()}
        try:
            # The cache is the plugin's own file, read weights_only like its training positions.
            state = torch.load(path, map_location=self.device, weights_only=from_cache)["state_dict"]
            weights = {name: state[name] for name in expected}
        # torch's weights-only unpickler fails on damaged bytes with IndexError or TypeError too.
        except (OSError, KeyError, RuntimeError, pickle.UnpicklingError, EOFError, IndexError, TypeError) as error:
            raise ConfigValueError(
                f"{what} is not a {kind} checkpoint ({type(error).__name__}: {error}). {fix}"
            ) from error
        found = {name: tuple(w.shape) for name, w in weights.items() if w.shape != expected[name]}
        if found:
            needed = {name: tuple(expected[name]) for name in found}
            raise ConfigValueError(
                f"{what} holds parameters of shapes {found}; this dataset and embedding_size need {needed}. {fix}"
            )
        with torch.no_grad():
            for name, p in graph.named_parameters():
                p.copy_(weights[name])
        self.logger.info(f"Stage 1 (graph): {kind} parameters from {path}")

    # ----- the last stage -----------------------------------------------------------------------

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        began = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        if train_data is self._fit_data:
            self.stage_seconds_per_epoch[self.STAGES[-1]].append(time.perf_counter() - began)
            self.stage_loss_per_epoch[self.STAGES[-1]].append(loss)
        return loss

    def _before_fit(self, train_data, valid_data, saved, show_progress):
        train_data.epoch = self.start_epoch  # the batches of the next epoch are those an unbroken run draws
        if self.model.score_fusion.validates_stage1_first and self.start_epoch == 0 and self.epochs > 0 \
                and valid_data is not None:
            self._validate_start(valid_data, saved, show_progress)

    def _validate_start(self, valid_data, saved, show_progress):
        """Validate before the last stage's first epoch: with the fusion's gate at 0 this is stage 1's ranking,
        which so becomes the best checkpoint unless a language-model epoch beats it on validation. It is
        scored by stage 1 alone: the fused scores are then 1 x stage 1's + 0 x the LM's, the same numbers, and
        the LM's forward over every validation user would cost as much as a validation epoch."""
        with self.model.scoring_stage1_alone():
            valid_score, valid_result = self._valid_epoch(valid_data, show_progress=show_progress)
        self.best_valid_score, self.best_valid_result = valid_score, valid_result
        self.logger.info(f"{self.STAGES[-1]} before its first epoch (stage 1's ranking): valid {dict(valid_result)}")
        if saved:
            self._save_checkpoint(-1, verbose=False)

    def fit_last_stage(self, batches, valid_data, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """The last stage on ``batches`` through RecBole's fit, resumed from ``LATEST_FILE`` when a run left one;
        expects ``self.optimizer`` and ``self.epochs`` set for it. Returns fit's best valid score and result."""
        self.eval_step = min(self.config["eval_step"], self.epochs)
        result = self.fit_from(batches, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                               callback_fn=callback_fn,
                               fix="the same command then trains this stage again (earlier stages are kept).")
        if self.model.score_fusion.chosen_on_validation and valid_data is not None:
            result = self.choose_fusion_weight(valid_data, saved)
        return result

    @torch.no_grad()
    def choose_fusion_weight(self, valid_data, saved):
        """``score_fusion: validated``: fuse the LM stage's best checkpoint (without ``saved``: the model as the
        stage left it) with stage 1 at the weight that ranks best on validation, and save it as the best
        checkpoint. Returns that validation score and result.

        Stage 1's and the LM's scores of every user are computed once; each weight in ``FUSION_WEIGHTS``
        is then evaluated on them through RecBole's evaluator. Both are divided by their standard
        deviation over all users and items, so one grid fits every dataset. ``w = 0`` is stage 1 itself,
        which so stays the result unless the LM improves on it. Deterministic given the checkpoint, so a
        run resumed after this step picks the same weight again.
        """
        model, epoch = self.model, self.start_epoch
        self._barrier()  # rank 0's last save of the best checkpoint is on disk before any rank reads it
        if saved and Path(self.saved_model_file).is_file():
            best = load_checkpoint(self.saved_model_file, "delete it and run the same command: the last stage is "
                                   "trained again from its last finished epoch.", map_location=self.device)
            model.load_state_dict(best["state_dict"])
            epoch = best["epoch"]
        model.eval()
        users_per_batch = max(1, self.config["eval_batch_size"] // model.n_items)
        graph, lm = [], []
        for start in range(0, model.n_users, users_per_batch):
            users = torch.arange(start, min(start + users_per_batch, model.n_users), device=self.device)
            graph.append(model.stage1_scores(users).float().cpu())
            lm.append(model.lm_logits(users).float().cpu())
        graph, lm = torch.cat(graph), torch.cat(lm)
        graph_std, lm_std = float(graph[1:, 1:].std()), float(lm[1:, 1:].std())
        lm_std = lm_std if lm_std > 0 else 1.0  # an LM that scores every item alike adds nothing at any weight
        graph /= graph_std  # in place: on a large catalogue each matrix is a gigabyte
        lm /= lm_std
        best = None
        for weight in FUSION_WEIGHTS:
            with model.scoring_from(graph + weight * lm if weight else graph):
                score, result = self._valid_epoch(valid_data, show_progress=False)
            self.logger.info(f"score_fusion validated: weight {weight}: valid {self.valid_metric} {score:.4f}")
            if best is None or (score > best[1] if self.valid_metric_bigger else score < best[1]):
                best = (weight, score, result)
        weight, self.best_valid_score, self.best_valid_result = best
        model.score_fusion.choose(graph_std, lm_std, weight)
        self.logger.info(f"score_fusion validated: chose weight {weight} (0 is stage 1 alone)")
        if saved and self._is_writer():
            self._save_checkpoint(epoch, verbose=False)
        return self.best_valid_score, self.best_valid_result


