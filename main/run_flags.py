"""Which flags define what a run computes, and how a recorded run's flags differ from this run's.

A results file (`params`) and a checkpoint (`params`) record the flags of the run that wrote them. The table
command uses a recorded run only when its flags equal the table's, and the trainer resumes or evaluates a checkpoint
only when they equal the run's (`flag_differences`), all but:
* `NOT_RUN_FLAGS` — where a run happens (and where its features are kept, whether its step is compiled), how
  often it logs, evaluates along the way or saves snapshots, whether it resumes, and the flags kept for
  compatibility only (see arguments.py);
* `FINETUNING_FLAGS` — for a pre-trained checkpoint, which serves runs that differ only in fine-tuning;
* `PRETRAINING_FLAGS` — for a run without a pre-training loss.
"""

NOT_RUN_FLAGS = ("device", "model_dir", "log_frequency", "eval_frequency", "unsuper_save_frequency", "do_epoch_save",
                 "load_unsuper_model", "load_super_model", "unsuper_dataset", "unsuper_meta_type",
                 "unsuper_eval_frequency", "load_val_op", "load_cnn_predictions", "load_cnn_features",
                 "load_cnn_features_train", "load_img", "feature_storage", "compile")
# flags that only fine-tuning and the evaluations read: a pre-trained checkpoint serves runs that differ in them
FINETUNING_FLAGS = ("num_epochs", "lr", "lr_decay", "train_sample_ratio", "train_sample_method", "cnn_pred_type",
                    "eval_split", "train_loss", "do_super_train")
# flags that only pre-training reads: they do not change a run with --unsuper_loss none
PRETRAINING_FLAGS = ("num_epochs_unsuper", "unsuper_lr", "unsuper_temp_inbatch", "unsuper_temp_negloc",
                     "unsuper_temp_simcse", "simcse_weight", "num_neg_rand_loc", "do_unsuper_train")
# flags under which a checkpoint may be resumed or evaluated with other values: the epoch counts (a run continues to
# more epochs; the checkpoint records those done) and which phases run
RESUME_FLAGS = ("num_epochs", "num_epochs_unsuper", "do_unsuper_train", "do_super_train")
NOT_RECORDED = "(not recorded)"


def flag_differences(wanted, recorded, ignore=()):
    """[(flag, ours, theirs)] where a run's recorded params differ from `wanted` (`arguments.default_params` of our
    flags) in a flag that defines the run: all but `NOT_RUN_FLAGS`, `ignore` and, when `wanted` has no pre-training
    loss, `PRETRAINING_FLAGS`. A flag missing from `recorded` differs (its value there is `NOT_RECORDED`)."""
    ignore = set(NOT_RUN_FLAGS) | set(ignore) | (set(PRETRAINING_FLAGS) if wanted["unsuper_loss"] == "none" else set())
    return [(flag, wanted[flag], recorded.get(flag, NOT_RECORDED)) for flag in sorted(wanted)
            if flag not in ignore and recorded.get(flag, NOT_RECORDED) != wanted[flag]]


def describe(differences):
    """'--flag ours here, theirs in the file; …' for the output of `flag_differences`."""
    return "; ".join(f"--{flag} {_flag_value(ours)} here, {_flag_value(theirs)} in the file"
                     for flag, ours, theirs in differences)


def _flag_value(value):
    if isinstance(value, bool):
        return "T" if value else "F"
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)
