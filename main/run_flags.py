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

from .arguments import NOT_RUN_FLAGS, PRETRAINING_FLAGS

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
