import argparse
import importlib

import pytest

from csp.arguments import (BOOL_FLAGS, default_params, describe_error, make_args_parser, parse_flags, resolve_device,
                           run_command)
from csp.paths import MAIN_DIR


def test_every_original_flag_is_parsed_with_its_default():
    parser = make_args_parser()
    params = vars(parser.parse_args([]))
    # the 63 flags of the original parser, plus those this project added, marked "(new)"
    assert len([a for a in parser._actions if a.dest != "help" and not a.help.startswith("(new)")]) == 63
    assert params["spa_enc_type"] == "gridcell" and params["min_radius"] == 1e-6 and params["max_radius"] == 1.0
    assert params["unsuper_temp_inbatch"] == 1 and params["map_range"] == [-180, 180, -90, 90]
    assert all(params[name] in ("T", "F") for name in BOOL_FLAGS)


def test_update_params_turns_t_f_into_booleans_and_clears_meta_type():
    params = default_params(["--use_layn", "F", "--do_unsuper_train", "T"])
    assert params["use_layn"] is False and params["do_unsuper_train"] is True
    assert params["meta_type"] == ""
    assert default_params(["--dataset", "birdsnap"])["meta_type"] == "ebird_meta"


def test_bad_t_f_value_names_the_flag():
    with pytest.raises(ValueError, match="--use_layn must be T or F, got 'true'"):
        default_params(["--use_layn", "true"])


@pytest.mark.parametrize("argv, message", [
    (["--lrr", "1"], r"^--lrr 1: not a flag of train_unsuper.py \(python main/train_unsuper.py --help lists them\)$"),
    (["--lr", "abc"], "^argument --lr: invalid float value: 'abc'"),
    (["--dataset", "custom"], "^--dataset custom needs --data_table"),
    (["--unsuper_loss", "imgcontloss", "--batch_size", "1"], "^--unsuper_loss imgcontloss needs batches of at least 2"),
    (["--unsuper_loss", "contsoftmax", "--num_neg_rand_loc", "0"], "^--num_neg_rand_loc must be >= 1 for --unsuper"),
    (["--device", "mps"], "^--device mps: this project runs on the CPU or a CUDA GPU only"),
    (["--frequency_num", "100000000", "--spa_enc_type", "sphere"], "the location encoder has .* weights"),
])
def test_flags_are_parsed_converted_and_checked_in_one_call(argv, message):
    """Every flag error comes from `default_params`, before anything is read; the training step checks nothing."""
    with pytest.raises(ValueError, match=message):
        default_params(argv)


def test_imgcontloss_batches_of_one_are_fine_with_several_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert default_params(["--unsuper_loss", "imgcontloss", "--batch_size", "1"])["batch_size"] == 1


def test_parse_flags_converts_without_checking():
    """For code that builds one part from flags a run could not use (the encoders' own errors are tested so)."""
    params = parse_flags(["--lr", "nan", "--use_layn", "F"])
    assert params["lr"] != params["lr"] and params["use_layn"] is False
    with pytest.raises(ValueError, match="--lr must be a finite number"):
        default_params(["--lr", "nan"])


def test_device_auto_and_clear_errors():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="--device"):
        resolve_device("gpu0")


@pytest.mark.parametrize("name", ["mps", "xpu", "meta"])
def test_devices_other_than_cpu_and_cuda_are_one_clear_error(name):
    """--device mps gave a 12-line traceback."""
    with pytest.raises(ValueError, match=rf"--device {name}: this project runs on the CPU or a CUDA GPU only"):
        resolve_device(name)


def test_the_default_model_dir_is_beside_main_wherever_the_command_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_params([])["model_dir"] == str(MAIN_DIR.parent / "models") + "/"
    assert default_params(["--model_dir", "../models/"])["model_dir"] == "../models/"  # given: as given
    assert default_params(["--model_dir=runs"])["model_dir"] == "runs"


@pytest.mark.parametrize("error, words", [
    (PermissionError(13, "Permission denied", "/data/x.npy"), ["cannot access /data/x.npy: Permission denied",
                                                              "check the permissions"]),
    (OSError(28, "No space left on device", "/m/a.pth.tar"), ["/m/a.pth.tar", "the disk is full"]),
    (OSError(30, "Read-only file system", "/m/a.log"), ["/m/a.log", "read-only"]),
    (FileNotFoundError("fmow: the data folder is missing"), ["fmow: the data folder is missing"]),
    (OSError(36, "File name too long", "/m/model_1000…0.log"), ["/m/model_1000…0.log", "too long",
                                                               "give the flags (e.g. --lr) sensible values"]),
    (FileExistsError(17, "File exists", "/m/notes.txt"), ["/m/notes.txt", "a file is where a folder is needed"]),
])
def test_os_errors_are_one_line_naming_the_path_and_the_fix(error, words):
    message = describe_error(error)
    assert "\n" not in message and all(word in message for word in words)


@pytest.mark.parametrize("flag", [None, "--model_dir", "--out_dir"])
def test_the_fix_of_an_os_error_names_the_command_s_output_flag(flag):
    message = describe_error(PermissionError(13, "Permission denied", "/o/x.csv"), flag)
    assert message.endswith("check the permissions of that path, or write elsewhere" + (f" ({flag})" if flag else ""))


class _Parser(Exception):
    """Raised with the parser a command-line entry point built, instead of parsing."""


@pytest.mark.parametrize("module", ["csp.train_unsuper", "csp.tables", "csp.seeds", "csp.demo", "csp.plots",
                                    "benchmark_maps", "draw_overview", "csp.synthetic_data", "csp.demo_data"])
def test_every_option_has_help_text_and_its_default_in_help(module, monkeypatch):
    def caught(self, *args, **kwargs):
        raise _Parser(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", caught)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", caught)
    with pytest.raises(_Parser) as excinfo:
        importlib.import_module(module).main([])
    parsers = [excinfo.value.args[0]]
    for action in parsers[0]._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers += list(action.choices.values())
    for parser in parsers:
        assert parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter, parser.prog
        for action in parser._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                assert action.help, f"{parser.prog} {action.option_strings or action.dest}: no help text"


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: you tried to "
                 "allocate 512000000000 bytes."),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 768000000000 bytes. Error code 12 (Cannot allocate memory)"),
    MemoryError(),
])
def test_a_failed_allocation_is_one_line_naming_the_flags_that_size_it(error, monkeypatch, capsys):
    """--num_neg_rand_loc 1000000000 ended in the allocator's traceback mid-run."""
    monkeypatch.delenv("CSP_TRACEBACK", raising=False)

    def main():
        raise error
    with pytest.raises(SystemExit) as stop:
        run_command(main)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "out of memory" in err and "--batch_size" in err and "--num_neg_rand_loc" in err


def test_other_runtime_errors_still_show_their_traceback():
    def main():
        raise RuntimeError("a bug, not bad input")
    with pytest.raises(RuntimeError, match="a bug"):
        run_command(main)
