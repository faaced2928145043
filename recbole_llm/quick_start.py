"""config -> dataset -> split -> model -> trainer -> fit/evaluate, for plugin and stock models alike."""

import faulthandler
import gc
import os
import pickle
import time
from logging import getLogger
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from recbole.data import data_preparation
from recbole.utils import dict2str, init_logger, init_seed, set_color

from recbole_llm.checkpoint import check_writable
from recbole_llm.compat import load_checkpoint
from recbole_llm.config import Config
from recbole_llm.config_rules import check_port, check_values, warn_untrained
from recbole_llm.data.checks import check_split
from recbole_llm.errors import RecBoleLLMError, SavedModelError
from recbole_llm.helpers import time_calls
from recbole_llm.trainer.run_state import RunState
from recbole_llm.utils import check_dataset_files, create_dataset, get_model, get_trainer


def _fit_and_test(config, saved, verbose=True):
    """The pipeline every entry point shares; returns RecBole's result dict plus costs.

    Beside RecBole's scores the result holds what a comparison of models needs and RecBole's
    Trainer does not keep: the best epoch, seconds per training epoch and per validation, the
    test evaluation's seconds and the parameter counts. Multi-stage trainers add
    ``stage_seconds_per_epoch`` (stage name to list of seconds).
    """
    logger = getLogger()
    check_writable(config["checkpoint_dir"])  # before any training, not at its first save
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    check_split(config, train_data.dataset, valid_data.dataset, test_data.dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    warn_untrained(config, getattr(trainer, "epochs", None))  # tree models' trainers have no epoch loop
    if verbose:
        logger.info(dataset)
        logger.info(model)
    show_progress = verbose and config["show_progress"]
    train_seconds, valid_seconds = [], []
    time_calls(trainer, "_train_epoch", train_seconds)
    time_calls(trainer, "_valid_epoch", valid_seconds)
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress)
    if not config["single_spec"]:
        dist.barrier()  # rank 0 writes the best checkpoint that every rank loads for the test
    test_start = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=show_progress)
    test_seconds = time.perf_counter() - test_start
    plugin = isinstance(trainer, RunState)  # the plugin's trainers: resumable, and they report more
    # fold_in_valid (GLTA, GAL-Rec): the same model on the training history alone too, what it adds. Before
    # stage 1's test below, which per-user files take as the last of the run's evaluations.
    unfolded = None
    if plugin and trainer.folds_in(test_data):
        with trainer.unfolded():
            unfolded = {"test": trainer.evaluate(test_data, load_best_model=False), "graph_test": trainer.graph_test_result(test_data)}
        logger.info(set_color("test result without the validation items", "yellow") + f": {dict2str(unfolded['test'])}")
    # GLTA's and GAL-Rec's stage-1 LightGCN alone on the same test split: what the LM stages add.
    graph_test_result = trainer.graph_test_result(test_data) if plugin else None
    if plugin:
        trainer.discard_resume_state()
    # A resumed run whose training had finished may hold no validation result.
    logger.info(set_color("best valid ", "yellow") + f": {dict2str(best_valid_result) if best_valid_result else None}")
    if config["device"].type == "cuda":
        logger.info(f"peak GPU memory of rank {config['local_rank']}: {torch.cuda.max_memory_allocated(config['device']) / 2**20:.0f} MiB")
    logger.info(set_color("test result", "yellow") + f": {dict2str(test_result)}")
    if graph_test_result is not None:
        logger.info(set_color("stage-1 graph alone, test", "yellow") + f": {dict2str(graph_test_result)}")
    return {
        "model": config["model"],
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "saved_model_file": trainer.saved_model_file if saved else None,
        # RecBole's early stopping counts cur_step evaluations without improvement since the best one.
        "best_epoch": max(trainer.train_loss_dict, default=-1) - trainer.cur_step * trainer.eval_step,
        "train_seconds_per_epoch": train_seconds,
        "valid_seconds_per_epoch": valid_seconds,
        "test_seconds": test_seconds,
        "stage_seconds_per_epoch": trainer.stage_seconds_per_epoch if plugin else None,
        # Whether this run continued a killed one: GLTA's and GAL-Rec's stages and epochs, other models' epochs.
        "resumed": plugin and trainer.resumed,
        # GLTA's and GAL-Rec's stage 1: trained, graph_checkpoint, cache (graph_cache) or run checkpoint.
        "graph_source": trainer.graph_source if plugin else None,
        "graph_test_result": graph_test_result,
        # With fold_in_valid: the test and stage 1's test without the validation items (None otherwise).
        "unfolded_test_result": unfolded and unfolded["test"],
        "unfolded_graph_test_result": unfolded and unfolded["graph_test"],
        # The score fusion's scale and gate (GLTA, GAL-Rec): learned (residual) or chosen on validation (validated).
        "fusion": trainer.fusion_weights() if plugin else None,
        # Peak memory of this process's GPU (None on CPU): under DDP each rank reports its own.
        "peak_gpu_mb": torch.cuda.max_memory_allocated(config["device"]) / 2**20 if config["device"].type == "cuda" else None,
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


def run_recbole_llm(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, cmd_args=None, queue=None):
    """Train and test one model on one dataset in this process (or as one rank of a process group).

    Args:
        model (str or class): a plugin or stock RecBole model name (or class).
        dataset (str): dataset name.
        config_file_list (list of str): YAML property files, later ones winning.
        config_dict (dict): config entries, above the files.
        saved (bool): save the best checkpoint and reload it for the test evaluation.
        cmd_args (list of str): ``--key=value`` overrides, above everything else.
        queue: where rank 0 of a multi-process run puts the result.

    Returns:
        dict: ``model``, ``best_valid_score``, ``valid_score_bigger``, ``best_valid_result``,
        ``test_result``, ``saved_model_file``, ``best_epoch``, ``resumed`` and the costs (see ``_fit_and_test``).
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict, cmd_args=cmd_args)
    init_seed(config["seed"], config["reproducibility"])
    # RecBole's init_logger checks for ./log/<model> and then creates it: two runs started at once (parallel
    # test workers, two benchmark queues) race on that check. The checkpoint folder: check_writable.
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    init_logger(config)
    getLogger().info(config)
    result = _fit_and_test(config, saved)
    # The finished trainer and model sit in reference cycles (time_calls' wrappers hold the trainer's
    # bound methods), so they would outlive this call until some later garbage collection: memory
    # a tuning loop or a notebook never gets back and, under DDP, DDP wrappers that outlive the
    # process group and are torn down during interpreter exit, where a rank can abort (SIGABRT).
    gc.collect()
    if not config["single_spec"]:
        dist.barrier()  # no rank leaves the group while another is still in a collective
        dist.destroy_process_group()
    if config["local_rank"] == 0 and queue is not None:
        queue.put(result)
    return result


def _run_rank(rank, model, dataset, config_file_list, config_dict, saved, cmd_args, queue):
    # A rank killed by a signal (an abort inside a native library) would otherwise leave only
    # torch.multiprocessing's "terminated with signal" in the parent: print where it was.
    faulthandler.enable()
    try:
        run_recbole_llm(model, dataset, config_file_list, {**config_dict, "local_rank": rank}, saved, cmd_args, queue)
    except RecBoleLLMError as error:
        # A user error found inside a rank (e.g. by the model's constructor) goes back to the parent,
        # which raises it as it is, instead of torch.multiprocessing's traceback of the child.
        queue.put(error)
        raise SystemExit(2) from None


def run(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True, nproc=1, world_size=-1,
        ip="localhost", port="5678", group_offset=0, cmd_args=None):
    """Run one process, or ``nproc`` processes on this machine as part of a group of ``world_size``.

    The arguments mirror ``recbole.quick_start.run``. In a multi-process run the config is built once
    in the parent first, so a bad model name, dataset or config value is reported before any process
    starts; rank 0's result is returned.
    """
    check_values({"nproc": nproc, "world_size": world_size, "group_offset": group_offset})
    if nproc == 1 and world_size <= 0:
        return run_recbole_llm(model, dataset, config_file_list, config_dict, saved, cmd_args)
    check_port(port, hosts_rank_0=group_offset == 0)

    config = Config(model, dataset, config_file_list, config_dict, cmd_args)  # reports bad input before any process starts
    # RecBole's init_logger checks for ./log/<model> and then creates it; ranks started together race
    # on that check (FileExistsError in the loser), so the parent creates it once before they start.
    # The trainer's checkpoint directory has the same check-then-create.
    os.makedirs(os.path.join("log", config["model"]), exist_ok=True)
    check_writable(config["checkpoint_dir"])
    config_dict = {
        **(config_dict or {}),
        "world_size": nproc if world_size == -1 else world_size,
        "ip": ip,
        "port": port,
        "nproc": nproc,
        "offset": group_offset,
    }
    queue = mp.get_context("spawn").SimpleQueue()
    try:
        mp.spawn(_run_rank, args=(model, dataset, config_file_list, config_dict, saved, cmd_args, queue), nprocs=nproc, join=True)
    except mp.ProcessExitedException:
        while not queue.empty():
            reported = queue.get()
            if isinstance(reported, RecBoleLLMError):
                raise reported from None
        raise
    return None if queue.empty() else queue.get()


def load_data_and_model(model_file, dataset=None, data_path=None, trust_checkpoint=False):
    """Rebuild config, data and model from a checkpoint written by a plugin or stock model's trainer.

    RecBole's own ``load_data_and_model`` cannot read its checkpoints on torch >= 2.6 and knows no
    plugin model. The checkpoint is read with ``weights_only=True``; one that needs a full pickle
    (stock RecBole's, or one holding other objects) is refused unless ``trust_checkpoint``
    (``compat.load_checkpoint``). GLTA's and GAL-Rec's checkpoints hold no frozen backbone: the model
    rebuilds it from the checkpoint's ``llm_path``, as their trainers do.

    Args:
        model_file (str): the checkpoint.
        dataset (str): when given, the dataset the checkpoint must have been trained on.
        data_path (str): the folder holding the dataset's folder, when it is not where it was in training.
        trust_checkpoint (bool): load a checkpoint that needs a full pickle, which can run code.

    Returns:
        tuple: config, model (best weights, eval mode), dataset, train_data, valid_data, test_data.
    """
    if not Path(model_file).is_file():
        raise SavedModelError(
            f"Saved model {str(model_file)!r} does not exist. Fix: pass a .pth file a training run saved "
            "(the runner logs it: 'Saving current: <checkpoint_dir>/<Model>-<date>.pth')."
        )
    try:
        checkpoint = load_checkpoint(model_file, trust=trust_checkpoint)
        config = checkpoint["config"]
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError,
            AttributeError) as error:
        raise SavedModelError(
            f"{model_file} is not a RecBole checkpoint ({type(error).__name__}: {str(error)[:200]}). "
            "Fix: pass the best-model file a training run saved, not a resume or stage checkpoint."
        ) from error
    if dataset is not None and dataset != config["dataset"]:
        raise SavedModelError(
            f"{model_file} is a {config['model']} model of dataset '{config['dataset']}', not '{dataset}'. "
            f"Fix: pass --dataset={config['dataset']}, or a checkpoint trained on '{dataset}'."
        )
    if data_path is not None:
        config["data_path"] = os.path.join(data_path, config["dataset"])
    if config["device"].type == "cuda" and not torch.cuda.is_available():
        config["device"] = torch.device("cpu")
    check_dataset_files(config)
    # An unpickled Config skips __init__, which sets the numpy aliases (np.float, ...) RecBole's metrics read.
    config.compatibility_settings()
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise SavedModelError(
            f"{model_file} does not fit dataset '{config['dataset']}' as it is now at {config['data_path']} "
            f"({dataset.user_num - 1} users, {dataset.item_num - 1} items): {str(error).splitlines()[-1].strip()} "
            "Fix: recommend with the dataset files the model was trained on, or train it again."
        ) from error
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model.eval(), dataset, train_data, valid_data, test_data
