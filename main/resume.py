"""Resuming a run from its checkpoints: which one it loads, whether that one was made with the run's flags, and
what it brings (weights, optimiser state, completed epochs, rbf anchors, earlier evaluations).

A checkpoint stores `epoch` = the completed epochs of its phase and `params['checkpoint_phase']`. Checkpoints of
the original code (no phase) count as finished pre-training, or as `epoch − 1` completed fine-tuning epochs (the
original stored the last epoch + 2).
"""
import logging
import os
from pathlib import Path

import numpy as np

from . import checkpoints
from . import datasets
from . import run_flags
from .arguments import FINETUNING_FLAGS, RESUME_FLAGS, default_params
from .checkpoints import CHECKPOINT_PHASE_KEY, FINETUNING, PRETRAINING
from .results import read_results

logger = logging.getLogger(__name__)


def checkpoints_to_load(params, device):
    """(pre-training checkpoint, fine-tuned checkpoint) that the run's --load_* flags ask for, as (path, dict) or
    None each; the pre-training one is only read when there is no fine-tuned one. ValueError when one was made
    with other flags (`check_flags`)."""
    finetuned = _find(params, "load_super_model", params["model_file_name"], device)
    pretrained = None if finetuned else _find(params, "load_unsuper_model", params["unsuper_model_file_name"], device)
    return pretrained, finetuned


def _find(params, flag, path, device):
    if not params[flag] or path is None:
        return None
    existing = checkpoints.find_checkpoint(path)
    if existing is None:
        _log_no_checkpoint(params, flag, path)
        return None
    checkpoint = checkpoints.load_checkpoint(existing, device)
    check_flags(params, existing, checkpoint["params"], flag)
    return existing, checkpoint


def check_flags(params, path, recorded, flag):
    """ValueError naming the differing flags when the checkpoint at `path` (loaded for `--{flag} T`) was made with
    other flags that change results (`run_flags.flag_differences`); the epoch counts and phase switches may differ,
    a pre-trained checkpoint also in the fine-tuning flags. A flag the file does not record is newer than the file:
    it matches at its default. A checkpoint of the original code is compared with a warning only: its files record
    the flags of the run that wrote them, not always those it was trained with."""
    ignore = (RESUME_FLAGS + ("baseline_full_train",)  # a model's checkpoint: no baseline
              + (FINETUNING_FLAGS if flag == "load_unsuper_model" else ()))
    defaults = default_params()
    ours = {name: params[name] for name in defaults}
    original = CHECKPOINT_PHASE_KEY not in recorded
    ignore += tuple(name for name in ours if name not in recorded and (original or ours[name] == defaults[name]))
    differences = run_flags.flag_differences(ours, recorded, ignore)
    if differences and original:
        logger.warning("%s (a checkpoint of the original code) records other flags: %s", path,
                       run_flags.describe(differences))
    elif differences:
        raise ValueError(f"{path} was made with other flags ({run_flags.describe(differences)}); it is neither "
                         f"resumed nor evaluated under these: run with the flags it was made with, give this run "
                         f"another --model_dir, or --{flag} F to train anew (its files are then overwritten)")


def _log_no_checkpoint(params, flag, path):
    """What a missing checkpoint of `--{flag} T` means: nothing to resume when its phase runs, else a warning."""
    finetuned = flag == "load_super_model"
    what = "fine-tuned" if finetuned else "pre-trained"
    if params["do_super_train" if finetuned else "do_unsuper_train"]:
        logger.info("No %s checkpoint to resume from yet (%s): %s starts at epoch 0", what, path,
                    FINETUNING if finetuned else PRETRAINING)
    elif finetuned:
        logger.warning("--load_super_model T but %s does not exist and --do_super_train F: the evaluation "
                       "uses a model that was not fine-tuned", path)
    else:
        logger.warning("--load_unsuper_model T but %s does not exist and --do_unsuper_train F: fine-tuning "
                       "starts from an encoder that was not pre-trained", path)


def rbf_anchors(checkpoint, train, count, rng):
    """(ids, rows) of the rbf anchors: as positions in the original code's training arrays (stored as
    `params['rbf_anchor_pt_ids']`; see `datasets.Split.original_rows`) and as rows of `train`. Those of
    `checkpoint` ((path, dict) or None), else `count` rows drawn with `rng`."""
    stored = checkpoint[1]["params"].get("rbf_anchor_pt_ids") if checkpoint is not None else None
    if stored is not None:
        try:
            rows = train.from_original(stored)
        except ValueError as err:
            raise ValueError(f"{checkpoint[0]}: its rbf anchors do not fit this training set ({err}); it was "
                             f"trained on other data") from None
        if (rows < 0).any():
            raise ValueError(f"{checkpoint[0]}: its rbf anchor at training row {stored[np.argmax(rows < 0)]} "
                             f"(of the original code's rows) is a row this project drops for NaN or out-of-range "
                             f"coordinates, so the anchor's location is unknown; fix that row's coordinates")
        return [int(i) for i in stored], rows
    if not 1 <= count <= len(train):
        raise ValueError(f"--num_rbf_anchor_pts must be between 1 and the {len(train)} training samples, got {count}")
    rows = np.sort(rng.choice(len(train), count, replace=False))
    return train.to_original(rows).tolist(), rows


def image_feature_width(checkpoint, params, data_dir):
    """Width of the training image features when they are not loaded: from `checkpoint` ((path, dict) or None)
    or from the feature file's header."""
    if checkpoint is not None:
        state = checkpoint[1]["state_dict"]
        if "img_dec.weight" in state:
            return state["img_dec.weight"].shape[1]
        if "loc_dec.weight" in state:
            return state["loc_dec.weight"].shape[0]
    if params["dataset"] == "custom":
        path = Path(params["features"] or "(no --features given)")
    else:
        path = data_dir / datasets.feature_file(params["dataset"], "train", params["inat2018_resolution"],
                                                params["cnn_model"])
    if not path.is_file():
        raise FileNotFoundError(f"--unsuper_loss {params['unsuper_loss']}: the model's image head needs the "
                                f"width of the training image features, but {path} does not exist")
    return np.load(path, mmap_mode="r").shape[1]


def load(checkpoint, phase, model, optimizer, params):
    """Load the weights and optimiser state of `checkpoint` = (path, dict), a checkpoint of `phase`; returns the
    completed epochs it stands for, {phase: count} (a fine-tuned one: pre-training done too). ValueError when it
    holds more epochs than the run's flag asks for."""
    path, ckpt = checkpoint
    _load_weights(model, path, ckpt["state_dict"], params["spa_enc_type"])
    if ckpt["optimizer"] is not None:
        load_optimizer(optimizer, ckpt["optimizer"], path)
    ours = ckpt["params"].get(CHECKPOINT_PHASE_KEY) == phase
    flag = "num_epochs_unsuper" if phase == PRETRAINING else "num_epochs"
    if ours and ckpt["epoch"] > params[flag]:
        raise ValueError(f"{path} holds {ckpt['epoch']} completed {phase} epochs, more than --{flag} "
                         f"{params[flag]}; its results would be those of {ckpt['epoch']} epochs: run with "
                         f"--{flag} {ckpt['epoch']} (or more), or give this run another --model_dir")
    if phase == PRETRAINING:
        return {PRETRAINING: ckpt["epoch"] if ours else params["num_epochs_unsuper"]}
    return {PRETRAINING: params["num_epochs_unsuper"], FINETUNING: ckpt["epoch"] if ours else max(ckpt["epoch"] - 1, 0)}


def load_optimizer(optimizer, state, path):
    """Adam state of a checkpoint, keeping this run's implementation flags (fused / foreach)."""
    groups = optimizer.param_groups
    saved = state["param_groups"]
    sizes = [len(group["params"]) for group in saved]
    if sizes != [len(group["params"]) for group in groups]:
        raise ValueError(f"{path}: the optimiser state holds {sizes} parameters, the model has "
                         f"{[len(group['params']) for group in groups]}; it was written for another model")
    keep = ("fused", "foreach", "capturable", "differentiable")
    optimizer.load_state_dict({"state": state["state"],
                               "param_groups": [{**old, **{key: new[key] for key in keep if key in new}}
                                                for old, new in zip(saved, groups)]})


def earlier_evaluations(results_file, epochs_done):
    """The evaluations in `results_file` of fine-tuning epochs before `epochs_done` (a resumed run keeps them, so
    that its results file ends up as an uninterrupted run's)."""
    results = read_results(results_file)
    return [] if results is None else [entry for entry in results["evaluations"]
                                       if entry["epoch"] is not None and entry["epoch"] < epochs_done]


def reload_finetuned(model, params, device):
    """Load the fine-tuned checkpoint's weights into `model` (before the final location-only evaluation, as the
    original); a warning and the model in memory when the file is gone."""
    path = checkpoints.find_checkpoint(params["model_file_name"])
    if path is None:
        logger.warning("Cannot load model since it not exist - %s (removed during the run?); evaluating "
                       "the model in memory", params["model_file_name"])
    else:
        _load_weights(model, path, checkpoints.load_checkpoint(path, device)["state_dict"], params["spa_enc_type"])


def _load_weights(model, path, state_dict, spa_enc_type):
    logger.info("\n%s", spa_enc_type)
    logger.info(" Model :\t%s", os.path.basename(path))
    checkpoints.load_state(model, state_dict, source=path)
