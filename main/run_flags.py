"""How the flags recorded by a results file or checkpoint differ from a run's."""
from .arguments import NOT_RUN_FLAGS, PRETRAINING_FLAGS

NOT_RECORDED = "(not recorded)"


def flag_differences(wanted, recorded, ignore=()):
    """[(flag, ours, theirs)] where `recorded` differs from `wanted` in a flag that defines the run
    (all but NOT_RUN_FLAGS, `ignore` and, without a pre-training loss, PRETRAINING_FLAGS)."""
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
