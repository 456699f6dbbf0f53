"""Which flags define a run (shared by the table command and the trainer's reload check)."""
from csp import run_flags
from csp.arguments import FINETUNING_FLAGS, NOT_RUN_FLAGS, PRETRAINING_FLAGS, default_params


def test_only_machine_log_resume_and_compatibility_flags_leave_a_run_the_same():
    assert set(NOT_RUN_FLAGS) < set(default_params())
    assert set(FINETUNING_FLAGS) < set(default_params()) - set(NOT_RUN_FLAGS)
    ours = default_params(["--device", "cpu", "--eval_frequency", "7", "--seed", "1"])
    assert run_flags.flag_differences(ours, {**default_params(), "num_classes": 5}) == [("seed", 1, 0)]
    assert run_flags.flag_differences(ours, {**default_params(), "seed": 1}, FINETUNING_FLAGS) == []
    unsuper = {**default_params(), "num_epochs_unsuper": 2, "simcse_weight": 1.0}    # no pre-training: no matter
    assert run_flags.flag_differences(default_params(), unsuper) == []
    csp = default_params(["--unsuper_loss", "contsoftmax"])
    assert run_flags.flag_differences(csp, {**csp, "num_epochs_unsuper": 2}) == [("num_epochs_unsuper", 30, 2)]
    assert set(PRETRAINING_FLAGS) < set(default_params()) - set(NOT_RUN_FLAGS)
