"""One CSP run: set-up (data, model, checkpoint to resume), pre-training, fine-tuning, evaluation.

`Trainer(params)` takes the checked params of `arguments.default_params` and adds the derived keys. Pre-training
runs at the constant `--unsuper_lr`, fine-tuning at `--lr` · lr_decay^epoch, with one Adam optimiser. Every
epoch's randomness is seeded from (`--seed`, phase, epoch), so a run resumed from its checkpoints (written after an
epoch at most once a minute, at every evaluation and at the end of a phase; resume.py) continues exactly as the
uninterrupted run. Under torchrun each rank steps through its shard of the epoch (distributed.py); rank 0 alone
logs, evaluates and writes files (results.py).
"""
import logging
import math
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from . import baselines
from . import checkpoints
from . import datasets
from . import distributed
from . import evaluation
from . import feature_store
from . import losses
from . import models
from . import results
from . import resume
from . import sampling
from .arguments import error_line, is_baseline, resolve_device
from .checkpoints import CHECKPOINT_PHASE_KEY, DATA_KEY, FINETUNING, PRETRAINING, WORLD_SIZE_KEY
from .paths import remove_stale_temporaries
from .progress import PhaseProgress, keep_log, start_logging, stop_logging
from .run_lock import RunLock

logger = logging.getLogger(__name__)

PHASES = (PRETRAINING, FINETUNING)
PHASE_SEEDS = {PRETRAINING: 1, FINETUNING: 2}
CHECKPOINT_INTERVAL_S = 60.0


class Trainer:
    """A context manager that holds --model_dir (`run_lock.RunLock`) and the log handlers until closed.

    `console`: the log lines also go to stderr; `progress`: progress bars on a terminal stderr, progress lines when
    it is redirected (default: as `console`)."""

    def __init__(self, params, console=True, progress=None):
        self.params = params
        self.device = distributed.setup(resolve_device(params["device"]))
        wanted = (console if progress is None else progress) and distributed.is_main()
        self.progress = wanted and sys.stderr.isatty()
        self.progress_lines = wanted and not sys.stderr.isatty()
        self.phase_progress = None
        torch.manual_seed(params["seed"])
        self.rng = np.random.default_rng(params["seed"])
        self.generator = torch.Generator(device=self.device)

        params["unsuper_model_file_name"], params["model_file_name"] = checkpoints.model_file_names(params)
        log_file, self.results_file, self.ranks_file = results.output_file_names(params["model_file_name"])
        params["log_file_name"] = log_file
        params["op_dir"] = f"image/ims_{params['dataset']}_{params['spa_enc_type']}/"
        self._logging = self._lock = None
        try:
            with distributed.together(error_line):  # a run that stops in set-up leaves the log as it was
                self._lock = RunLock(params["model_dir"]).acquire() if distributed.is_main() else None
                removed = remove_stale_temporaries(params["model_dir"]) if distributed.is_main() else []
                self._logging = start_logging(log_file, console, distributed.is_main())
                for path in removed:
                    logger.info("Removed %s, a temporary file left by a run that was killed while writing", path)
                self._setup()
            keep_log(self._logging)
            self.step = self.build_step() if self.model is not None else None
        except BaseException:
            self.close()
            raise

    def close(self):
        if self._logging is not None:
            stop_logging(self._logging)
            self._logging = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------------------------------------------------
    # set-up

    def _setup(self):
        params = self.params
        pretrain = params["unsuper_loss"] != "none" and params["do_unsuper_train"] and not is_baseline(params)
        data = datasets.load_dataset(params, "val", True, True, load_cnn_features_train=pretrain)
        final = datasets.load_dataset(params, params["eval_split"], True, False, load_cnn_predictions=True)
        params.update(datasets.flags_from_data(params, data))  # the loaders read neither flag
        self.data = data
        params["num_classes"] = data.num_classes
        users, user_ids = np.unique(data.train.users, return_inverse=True)
        params["num_users"] = len(users)
        if "user" in params["train_loss"] and len(users) == 1:
            raise ValueError(f"--train_loss {params['train_loss']} needs several users, but every training "
                             f"sample has the same user; use --train_loss full_loss")

        to = self._to_device
        self.train_locs = to(self._coords(data.train))
        self.train_classes = to(data.train.classes)
        self.train_users = to(user_ids.reshape(-1))
        self.train_feats = feature_store.training_features(data.train.feats, self.device, params["feature_storage"])
        dated = self._dated(data.val)
        self.val_locs, self.val_classes = to(self._coords(data.val)[dated]), to(data.val.classes[dated])
        self.val_split_ids = data.val.split_ids[dated]
        self.eval_locs, self.eval_classes = to(self._coords(final.val)), to(final.val.classes)
        self.eval_preds, self.eval_split_ids = to(final.val.preds), final.val.split_ids
        self.eval_split_name = params["eval_split"]

        *rows, index_file = sampling.training_rows(params, data.train, self._dated(data.train),
                                                   is_baseline(params) and params["baseline_full_train"])
        if index_file is not None:
            params["train_sample_idx_file"] = index_file
        self.phase_rows = {phase: None if value is None else to(value) for phase, value in zip(PHASES, rows)}
        self.data_record = resume.data_record(params, data)

        self.model = self.optimizer = None
        self.epochs_done = dict.fromkeys(PHASES, 0)
        self.epochs_run = dict.fromkeys(PHASES, 0)
        self.loaded_from = dict.fromkeys(PHASES)
        self.loaded_finetuned = False
        self.evaluations = []
        self.final_ranks = self.locenc_ranks = None
        if not is_baseline(params):
            self._build_model()
        if self.loaded_finetuned:
            self.evaluations = resume.earlier_evaluations(self.results_file, self.epochs_done[FINETUNING])
        self._log_status()

    def _to_device(self, array):
        """A numpy array or memory map as a tensor on the device (float64 as float32), no copy on the CPU."""
        array = np.asarray(array)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        return torch.from_numpy(array).to(self.device)

    def _dated(self, split):
        """Mask of the rows of `split` that the model can take: with a date where it takes dates."""
        if self.params["spa_enc_type"] == "geo_net" and self.params["use_date_feats"]:
            return ~np.isnan(split.dates)
        return np.ones(len(split), bool)

    def _coords(self, split):
        """Model input of `split`: (N, 2) (lon, lat) degrees [+ date as a fraction of the year]."""
        if self.params["spa_enc_type"] == "geo_net" and self.params["use_date_feats"]:
            return np.column_stack([split.locs, split.dates]).astype(np.float32)
        return split.locs

    def _build_model(self):
        params = self.params
        params["num_loc_feats"] = params["num_feats"] = models.input_width(params)
        pretrained, finetuned = resume.checkpoints_to_load(params, self.device, self.data_record)
        loaded, phase = (finetuned, FINETUNING) if finetuned else (pretrained, PRETRAINING)
        anchors = None
        params["rbf_anchor_pt_ids"] = None
        if params["spa_enc_type"] == "rbf":
            params["rbf_anchor_pt_ids"], rows = resume.rbf_anchors(loaded, self.data.train,
                                                                   params["num_rbf_anchor_pts"], self.rng)
            anchors = torch.from_numpy(self.data.train.locs[rows])
        cnn_feat_dim = None
        if params["unsuper_loss"] != "none":
            cnn_feat_dim = (self.train_feats.shape[1] if self.train_feats is not None
                            else resume.image_feature_width(loaded, params, self.data.data_dir))
            params["cnn_feat_dim"] = cnn_feat_dim
        self.model = models.build_model(params, params["num_classes"], params["num_users"], cnn_feat_dim,
                                        anchors).to(self.device)
        impl = {"fused": True} if self.device.type == "cuda" else {"foreach": True}
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=params["lr"],
                                          weight_decay=params["weight_decay"], **impl)
        if loaded is not None:
            self.epochs_done.update(resume.load(loaded, phase, self.model, self.optimizer, params))
            self.loaded_from[phase] = loaded[0]
            self.loaded_finetuned = phase == FINETUNING

    def build_step(self):
        """`step(loss_fn, *args)` = loss_fn(model, *args): inside DDP under torchrun, compiled with --compile T."""
        step = distributed.parallel(self.model)
        return torch.compile(step) if self.params["compile"] else step

    def _log_status(self):
        params = self.params
        logger.info("\nnum_classes\t%d", params["num_classes"])
        logger.info("num train    \t%d", len(self.data.train))
        logger.info("num val      \t%d", len(self.data.val))
        logger.info("train loss   \t%s", params["train_loss"])
        logger.info("model name   \t%s", params["model_file_name"])
        logger.info("num users    \t%d", params["num_users"])
        if params["meta_type"]:
            logger.info("meta data    \t%s", params["meta_type"])
        if distributed.world_size() > 1:
            logger.info("processes    \t%d (torchrun), global batch %d", distributed.world_size(),
                        distributed.world_size() * params["batch_size"])

    # ------------------------------------------------------------------------------------------------------------
    # training

    def run_train(self):
        """Pre-train and fine-tune as the flags ask (a baseline has nothing to train)."""
        if self.model is None:
            return
        if self.params["do_unsuper_train"]:
            self.run_unsuper_train()
        if self.params["do_super_train"]:
            self.run_super_train()

    def run_unsuper_train(self):
        """Pre-training epochs epochs_done … num_epochs_unsuper − 1."""
        params = self.params
        total = params["num_epochs_unsuper"]
        if params["unsuper_loss"] == "none" or total == 0:
            return
        if self.loaded_finetuned:
            logger.info("Pre-training skipped: the fine-tuned model was loaded")
            return
        start = self.epochs_done[PRETRAINING]
        if start >= total:
            logger.info("Pre-training already done: %d of %d epochs", start, total)
            return
        self._log_resume(PRETRAINING, start, total)
        self._set_lr(params["unsuper_lr"])
        self.phase_progress = PhaseProgress(PRETRAINING, start, total, self.progress_lines)
        last_save = time.monotonic()
        for epoch in tqdm(range(start, total), desc=PRETRAINING, initial=start, total=total,
                          disable=not self.progress):
            logger.info("\nUnsupervised Training Epoch\t%d", epoch)
            self.run_epoch(PRETRAINING, epoch)
            self.epochs_done[PRETRAINING] = epoch + 1
            self.epochs_run[PRETRAINING] += 1
            with distributed.together(error_line):  # what rank 0 alone does: a failure stops every rank
                if params["do_epoch_save"] and epoch % params["unsuper_save_frequency"] == 0 and epoch != 0:
                    self._save(checkpoints.epoch_file_name(params["unsuper_model_file_name"], epoch), PRETRAINING)
                if epoch + 1 == total or time.monotonic() - last_save >= CHECKPOINT_INTERVAL_S:
                    self._save(params["unsuper_model_file_name"], PRETRAINING)
                    last_save = time.monotonic()

    def run_super_train(self):
        """Fine-tuning epochs epochs_done … num_epochs − 1; the val loss after each, the evaluations after every
        epoch e > 0 with e % eval_frequency == 0."""
        params = self.params
        total = params["num_epochs"]
        start = self.epochs_done[FINETUNING]
        if start >= total:
            if total:
                logger.info("Fine-tuning already done: %d of %d epochs", start, total)
            return
        self._log_resume(FINETUNING, start, total)
        self.phase_progress = PhaseProgress(FINETUNING, start, total, self.progress_lines)
        last_save = time.monotonic()
        for epoch in tqdm(range(start, total), desc=FINETUNING, initial=start, total=total,
                          disable=not self.progress):
            logger.info("\nEpoch\t%d", epoch)
            self._set_lr(params["lr"] * params["lr_decay"] ** epoch)
            self.run_epoch(FINETUNING, epoch)
            self.epochs_done[FINETUNING] = epoch + 1
            self.epochs_run[FINETUNING] += 1
            evaluate = epoch % params["eval_frequency"] == 0 and epoch != 0
            with distributed.together(error_line):
                self._log_val_loss()
                if evaluate:
                    self.run_eval_spa_enc_only(f"LocEnc (Epoch {epoch})", load_model=False, epoch=epoch)
                    self.run_eval_final(f"(Epoch {epoch})", epoch=epoch)
                if evaluate or epoch + 1 == total or time.monotonic() - last_save >= CHECKPOINT_INTERVAL_S:
                    self._save(params["model_file_name"], FINETUNING)
                    last_save = time.monotonic()

    @distributed.main_only
    def _log_val_loss(self):
        logger.info("Test loss   : %.4f", losses.val_loss(self.model, self.val_locs, self.val_classes))

    def _log_resume(self, phase, start, total):
        if start > 0:
            logger.info("Resuming %s at epoch %d of %d from %s", phase, start, total, self.loaded_from[phase])

    def _set_lr(self, lr):
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _seed_epoch(self, phase, epoch):
        seed = int(np.random.SeedSequence([self.params["seed"], PHASE_SEEDS[phase], epoch]).generate_state(1)[0])
        torch.manual_seed(distributed.rank_seed(seed))
        self.generator.manual_seed(seed)

    def epoch_indices(self, phase):
        """Training rows of one epoch of `phase` in batch order (int64 tensor on the device): a permutation, or
        with --balanced_train_loader T at most --max_num_exs_per_class rows per class, shuffled; when pre-training
        streams its features, those rows in `feature_store.block_order`."""
        rows = self.phase_rows[phase]
        classes = self.train_classes if rows is None else self.train_classes[rows]
        if self.params["balanced_train_loader"]:
            order = sampling.balanced_epoch_indices(classes, self.params["max_num_exs_per_class"], self.generator)
        else:
            order = torch.randperm(len(classes), generator=self.generator, device=self.device)
        order = order if rows is None else rows[order]
        if phase == PRETRAINING:  # streamed features: the same rows, in blocks of their file
            order = feature_store.epoch_order(self.train_feats, order, self.generator, self.params["batch_size"],
                                              distributed.world_size())
        return order

    def _pretraining_loss(self, rows, feats):
        return self.step(losses.unsuper_loss, self.train_locs[rows], feats, self.params)

    def _finetuning_loss(self, rows, _):
        return self.step(losses.embedding_loss, self.train_locs[rows], self.train_classes[rows],
                         self.train_users[rows], self.params)

    def run_epoch(self, phase, epoch, indices=None):
        """Optimisation steps over `indices` (default: `epoch_indices(phase)`); returns the running sample-weighted
        mean loss (over the ranks), logged every --log_frequency batches and at the last as `[samples done/samples]`.
        A non-finite loss is a ValueError at the next log point, before anything of the epoch is written."""
        self._seed_epoch(phase, epoch)
        if indices is None:
            indices = self.epoch_indices(phase)
        params = self.params
        if phase == PRETRAINING:
            if self.train_feats is None:
                raise ValueError("pre-training needs the training image features; they were not loaded")
            loss_of, line = self._pretraining_loss, f"Unsupervised {params['unsuper_loss']} Loss  : %.4f"
        else:
            loss_of, line = self._finetuning_loss, "Loss  : %.4f"
        batch_size = params["batch_size"]
        world = distributed.world_size()
        global_batch = batch_size * world
        if (phase == PRETRAINING and params["unsuper_loss"].startswith("imgcontloss")
                and len(indices) > 1 and len(indices) % global_batch == 1):
            indices = indices[:-1]  # the NCE in-batch term needs two samples
        if len(indices) < world:
            raise ValueError(f"{phase} epoch {epoch}: {len(indices)} training row(s) for {world} torchrun processes, "
                             f"which need at least one each; start at most {len(indices)} (torchrun "
                             f"--nproc_per_node), or train on more rows (e.g. a larger --train_sample_ratio)")
        indices = distributed.shard(indices, batch_size)
        num_batches = -(-len(indices) // batch_size)
        batch_losses = torch.empty(num_batches, device=self.device)
        batch_sizes = torch.full((num_batches,), float(batch_size), device=self.device)
        batch_sizes[-1] = len(indices) - batch_size * (num_batches - 1)
        progress = self.phase_progress if self.phase_progress and self.phase_progress.phase == phase else None
        seen, mean = 0, float("nan")
        self.model.train()
        features = feature_store.batches(self.train_feats if phase == PRETRAINING else None, indices, batch_size)
        for batch, feats in zip(tqdm(range(num_batches), desc=f"{phase} epoch {epoch}", leave=False,
                                     disable=not self.progress), features):
            rows = indices[batch * batch_size:(batch + 1) * batch_size]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=params["bf16"]):
                loss = loss_of(rows, feats)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            batch_losses[batch] = loss.detach()
            seen += len(rows)
            if progress:
                progress.update(epoch, seen, len(indices), batch, num_batches)
            if (batch % params["log_frequency"] == 0 and batch != 0) or batch == num_batches - 1:
                done = batch_losses[:batch + 1]
                non_finite = (~torch.isfinite(done)).float()
                first_bad = torch.where(non_finite.any(), non_finite.argmax(), -1)
                total = (done * batch_sizes[:batch + 1]).sum()
                mean, bad = torch.stack([distributed.mean_over_ranks(total / seen),
                                         first_bad.to(total.dtype)]).tolist()
                if bad >= 0:
                    bad = int(bad)
                    raise ValueError(self._non_finite_message(phase, epoch, bad,
                                                              indices[bad * batch_size:(bad + 1) * batch_size]))
                if not math.isfinite(mean):  # under torchrun: another process's loss (its error names it)
                    raise ValueError(f"{phase} epoch {epoch}: the loss of another process is not finite")
                logger.info(f"[%d/%d]\t{line}", seen * world, len(indices) * world, mean)
        return mean

    def _non_finite_message(self, phase, epoch, batch, rows):
        params = self.params
        inputs = [("locations", self.train_locs)] + ([("image features", self.train_feats)]
                                                     if phase == PRETRAINING else [])
        bad_inputs = [(what, rows[~torch.isfinite(values[rows].reshape(len(rows), -1)).all(dim=1)])
                      for what, values in inputs]
        bad_inputs = [(what, bad) for what, bad in bad_inputs if len(bad)]
        if bad_inputs:
            cause = "; ".join(f"non-finite training {what} in rows {bad[:5].tolist()}" for what, bad in bad_inputs)
        else:
            lr = "unsuper_lr" if phase == PRETRAINING else "lr"
            cause = (f"the inputs are finite, so the optimisation diverged: lower --{lr} (now {params[lr]})"
                     + (", or raise the temperatures --unsuper_temp_inbatch / --unsuper_temp_negloc / "
                        "--unsuper_temp_simcse" if phase == PRETRAINING else ""))
        return (f"{phase} epoch {epoch}, batch {batch}: the loss is not finite (NaN or infinite); the run stops "
                f"without writing a checkpoint or results of this epoch. Likely cause: {cause}")

    def _check_model_finite(self, what):
        bad = models.non_finite_weights(self.model)
        if bad:
            raise ValueError(f"the model has NaN or infinite weights ({', '.join(bad[:3])}); {what} is not "
                             f"written. Lower the learning rate (--lr / --unsuper_lr) or check the checkpoint "
                             f"{self.params['model_file_name']}")

    @distributed.main_only
    def _save(self, path, phase):
        self._check_model_finite(f"the checkpoint {path}")
        logger.info("Saving output model to %s", path)
        params = {**self.params, CHECKPOINT_PHASE_KEY: phase}
        records = {DATA_KEY: self.data_record["files"], WORLD_SIZE_KEY: distributed.world_size()}
        checkpoints.save_checkpoint(path, self.model, self.optimizer, self.epochs_done[phase], params,
                                    self.data_record["class_names"], records)

    # ------------------------------------------------------------------------------------------------------------
    # evaluation

    def _fewshot_flag(self, flag):
        if self.params["cnn_pred_type"] == "fewshot":
            return flag + f" fewshot-ratio{self.params['train_sample_ratio']:.3f} "
        return flag

    @distributed.main_only
    def run_eval_final(self, flag="", epoch=None):
        """Rank the evaluation split (invalid entries kept) by the image alone, then by image × prior (the location
        encoder or the --spa_enc_type baseline); returns {method: result}."""
        flag = self._fewshot_flag(flag)
        if self.model is not None:
            self._check_model_finite(f"the results file {self.results_file}")
        fitted = []
        if is_baseline(self.params) and self.params["spa_enc_type"] != "no_prior":
            fitted.append(self._fit_baseline())
        found, ranks = evaluation.run_final_evaluation(
            self.eval_preds, self.eval_classes, self.eval_split_ids, self.eval_locs, model=self.model,
            baselines=fitted, flag=flag)
        for result in found.values():
            self._record(result, epoch, f"{self.eval_split_name} (all entries)")
        if epoch is None:
            self.final_ranks = (self.eval_locs, self.eval_classes, self.eval_split_ids, ranks)
            results.write_ranks(self.ranks_file, self.final_ranks, self.locenc_ranks)
        return found

    def _fit_baseline(self):
        params, train = self.params, self.data.train
        rows = self.phase_rows[FINETUNING]
        rows = slice(None) if rows is None else rows.cpu().numpy()
        locs, classes = train.locs[rows], train.classes[rows]
        hyper_params = baselines.get_cross_val_hyper_params(params["dataset"], params["meta_type"])
        for note in baselines.clamp_to_data(params["spa_enc_type"], hyper_params, locs, classes):
            logger.warning("%s", note)
        return baselines.make_baseline(params["spa_enc_type"], locs, classes, params["num_classes"], hyper_params)

    @distributed.main_only
    def run_eval_spa_enc_only(self, flag="LocEnc ", load_model=True, epoch=None):
        """Rank the val split (invalid entries removed) by the location encoder alone, with `load_model` after
        reloading the fine-tuned checkpoint that this run wrote or loaded; returns the result (None: a baseline)."""
        if self.model is None:
            return None
        if load_model and (self.loaded_finetuned or self.epochs_run[FINETUNING]):
            resume.reload_finetuned(self.model, self.params, self.device)
        elif load_model:
            logger.info("Evaluating the model in memory: this run did not write or load %s",
                        self.params["model_file_name"])
        self._check_model_finite(f"the results file {self.results_file}")
        result, ranks = evaluation.evaluate_location_only(self.model, self.val_locs, self.val_classes,
                                                          self.val_split_ids, flag)
        self._record(result, epoch, "val (entries without location or user removed)")
        if epoch is None:
            self.locenc_ranks = (self.val_locs, self.val_classes, self.val_split_ids, ranks)
            results.write_ranks(self.ranks_file, self.final_ranks, self.locenc_ranks)
        return result

    def _record(self, result, epoch, eval_set):
        self.evaluations.append({**result, "epoch": epoch, "eval_set": eval_set})
        results.write_results(self.results)

    @property
    def results(self):
        """The results document (`results.results_document`), as written so far."""
        phases = {phase: {"epochs_done": self.epochs_done[phase], "epochs_run": self.epochs_run[phase]}
                  for phase in PHASES}
        return results.results_document(self.params, self.device, phases, self.evaluations,
                                        {"data": self.data_record, WORLD_SIZE_KEY: distributed.world_size()})
