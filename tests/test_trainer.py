"""The run's behaviour on tiny synthetic data: checkpoints, resuming, reproducibility, baselines, flag errors."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from csp import arguments
from csp import checkpoints
from csp import models
from csp import train_unsuper
from csp.synthetic_data import write_synthetic_dataset
from csp.trainer import FINETUNING, PRETRAINING, Trainer

# fMoW-style CSP run, small: 20 classes, 32-d image features
FLAGS = ("--dataset fmow --device cpu --spa_enc_type gridcell --frequency_num 8 --max_radius 360 --min_radius 0.1 "
         "--hidden_dim 64 --num_filts 32 --spa_f_act gelu --unsuper_loss contsoftmax --simcse_weight 1 "
         "--unsuper_temp_inbatch 20 --neg_rand_type sphericalold --unsuper_lr 0.001 --lr 0.01 --batch_size 64 "
         "--train_sample_ratio 0.05 --cnn_pred_type fewshot --inat2018_resolution pretrain --eval_frequency 2 "
         "--do_unsuper_train T --do_super_train T").split()


@pytest.fixture(scope="module")
def data_dir(synthetic_data_dir):
    return synthetic_data_dir("fmow", num_train=1000, num_val=200, num_classes=20, feat_dim=32)


@pytest.fixture(autouse=True)
def data(monkeypatch, data_dir):
    monkeypatch.setenv("CSP_DATA_DIR", str(data_dir))


def run(model_dir, *extra):
    return train_unsuper.main(FLAGS + ["--model_dir", str(model_dir), *extra])


def final(results):
    """{method: top-1, MRR} of the final evaluation blocks."""
    return {e["method"]: (e["splits"][0]["top1"], e["splits"][0]["mrr"]) for e in results["evaluations"]
            if e["epoch"] is None}


def log_text(results):
    with open(results["files"]["log_file_name"]) as handle:
        return handle.read()


def test_checkpoints_load_into_a_model_built_from_their_params(tmp_path):
    results = run(tmp_path / "a" / "b", "--num_epochs_unsuper", "2", "--num_epochs", "3")  # nested, no trailing /
    files = results["files"]
    pre = checkpoints.load_checkpoint(files["unsuper_model_file_name"])
    fine = checkpoints.load_checkpoint(files["model_file_name"])
    assert (pre["epoch"], pre["params"]["checkpoint_phase"]) == (2, PRETRAINING)
    assert (fine["epoch"], fine["params"]["checkpoint_phase"]) == (3, FINETUNING)
    for ckpt in (pre, fine):
        params = ckpt["params"]
        model = models.build_model(params, params["num_classes"], params["num_users"])
        checkpoints.load_state(model, ckpt["state_dict"])
    encoder = models.load_location_encoder(files["model_file_name"])
    assert encoder.class_probabilities([[10.0, 20.0]]).shape == (1, 20)


def test_killed_run_resumes_exactly_where_it_stopped(tmp_path):
    whole = run(tmp_path / "whole", "--num_epochs_unsuper", "2", "--num_epochs", "5")
    parts = tmp_path / "parts"
    load = ["--load_unsuper_model", "T", "--load_super_model", "T"]
    first = run(parts, "--num_epochs_unsuper", "1", "--do_super_train", "F")  # stopped after pre-training epoch 0
    second = run(parts, "--num_epochs_unsuper", "2", "--num_epochs", "3", *load)  # stopped after fine-tuning epoch 2
    third = run(parts, "--num_epochs_unsuper", "2", "--num_epochs", "5", *load)
    assert [r["phases"][PRETRAINING]["epochs_run"] for r in (first, second, third)] == [1, 1, 0]
    assert [r["phases"][FINETUNING]["epochs_run"] for r in (first, second, third)] == [0, 3, 2]
    assert final(third) == final(whole)
    # the resumed run's results file also holds the evaluations of the epochs before the restart
    assert [(e["epoch"], e["method"]) for e in third["evaluations"]] == \
        [(e["epoch"], e["method"]) for e in whole["evaluations"]]
    log = log_text(third)
    assert log.count("Unsupervised Training Epoch\t1") == 1 and "Unsupervised Training Epoch\t0" in log
    assert log.count("\nEpoch\t3\n") == 1 and log.count("\nEpoch\t0\n") == 1
    files = second["files"]
    assert f"Resuming pre-training at epoch 1 of 2 from {files['unsuper_model_file_name']}" in log
    assert f"Resuming fine-tuning at epoch 3 of 5 from {files['model_file_name']}" in log
    assert log.count("Resuming") == 2  # not for the runs that started a phase at epoch 0


def _cpp_compiler():
    from torch._inductor import cpp_builder
    try:
        return shutil.which(cpp_builder.get_cpp_compiler())
    except Exception:  # no compiler found: torch raises its own error types
        return None


@pytest.mark.skipif(_cpp_compiler() is None, reason="torch.compile's inductor backend needs a C++ compiler (g++)")
def test_compiled_step_trains_both_phases_as_the_eager_one(tmp_path, monkeypatch):
    """--compile T through pre-training and fine-tuning, each with a shorter last batch (a second, dynamic-shape
    graph), ends with the eager run's weights; without dropout or a random-location term nothing else is drawn (the
    random draws that are made follow eager's generator, `fallback_random`)."""
    monkeypatch.setattr("torch._inductor.config.fallback_random", True)
    flags = ["--num_epochs_unsuper", "1", "--num_epochs", "1", "--dropout", "0", "--rand_sample_weight", "0",
             "--train_sample_ratio", "0.5", "--cnn_pred_type", "full", "--batch_size", "192"]
    weights = {}
    for compiled in ("T", "F"):
        files = run(tmp_path / compiled, *flags, "--compile", compiled)["files"]
        weights[compiled] = [checkpoints.load_checkpoint(files[key])["state_dict"]
                             for key in ("unsuper_model_file_name", "model_file_name")]
    for compiled, eager in zip(weights["T"], weights["F"]):
        for name in eager:
            torch.testing.assert_close(compiled[name], eager[name], rtol=0, atol=1e-5, msg=name)
    assert (weights["F"][1]["class_emb.weight"] - weights["F"][0]["class_emb.weight"]).abs().max() > 1e-3


def test_finished_run_started_again_is_not_retrained(tmp_path):
    flags = ["--num_epochs_unsuper", "2", "--num_epochs", "2"]
    done = run(tmp_path, *flags)
    again = run(tmp_path, *flags, "--load_unsuper_model", "T", "--load_super_model", "T")
    assert again["phases"][PRETRAINING]["epochs_run"] == again["phases"][FINETUNING]["epochs_run"] == 0
    assert final(again) == final(done)
    assert "Fine-tuning already done: 2 of 2 epochs" in log_text(again)


def test_original_pretrained_checkpoint_counts_as_finished_pretraining(tmp_path, golden_dir, monkeypatch):
    """The original's pre-trained file (epoch 1, with Adam state) is not trained further; fine-tuning starts at
    epoch 0 (the original started at 1, with one decay step too many)."""
    root = tmp_path / "data"
    write_synthetic_dataset("fmow", root, num_train=100, num_val=40, num_classes=20, feat_dim=2048)
    monkeypatch.setenv("CSP_DATA_DIR", str(root))
    flags = ["--model_dir", str(tmp_path / "m"), "--frequency_num", "32", "--hidden_dim", "512", "--num_filts", "256",
             "--spa_f_act", "leakyrelu", "--load_unsuper_model", "T", "--num_epochs_unsuper", "30",
             "--num_epochs", "1"]
    params = arguments.default_params(FLAGS + flags)
    pretrained, _ = checkpoints.model_file_names(params)
    (tmp_path / "m").mkdir()
    shutil.copy(golden_dir / "encoders" / "gridcell_inat_csp.pth.tar", pretrained)
    results = train_unsuper.main(FLAGS + flags)
    assert results["phases"][PRETRAINING] == {"epochs_done": 30, "epochs_run": 0}
    assert results["phases"][FINETUNING] == {"epochs_done": 1, "epochs_run": 1}
    log = log_text(results)
    assert "Unsupervised Training Epoch" not in log and "\nEpoch\t0\n" in log


def test_same_seed_same_results(tmp_path):
    flags = ["--num_epochs_unsuper", "1", "--num_epochs", "2"]
    a, b = run(tmp_path / "a", *flags), run(tmp_path / "b", *flags)
    c = run(tmp_path / "c", *flags, "--seed", "1")
    for results in (a, b, c):
        del results["files"]
    assert a == b
    assert json.dumps(a["evaluations"]) != json.dumps(c["evaluations"])
    subsets = [np.load(tmp_path / name / "sample_idx" / "fmow" / "train_sample_ratio0.050.npy") for name in "ab"]
    np.testing.assert_array_equal(*subsets)


def test_results_and_ranks_files(tmp_path):
    results = run(tmp_path, "--num_epochs_unsuper", "1", "--num_epochs", "3")
    with open(results["files"]["results"]) as handle:
        assert json.load(handle) == json.loads(json.dumps(results))
    assert results["format"] == "csp-results/1" and "model_dir" not in results["params"]
    blocks = [(e["epoch"], e["method"], e["flag"]) for e in results["evaluations"]]
    assert blocks == [(2, "location_only", "LocEnc (Epoch 2)"), (2, "no_prior", "(Epoch 2) fewshot-ratio0.050 "),
                      (2, "location_prior", "(Epoch 2) fewshot-ratio0.050 "),
                      (None, "no_prior", " fewshot-ratio0.050 "), (None, "location_prior", " fewshot-ratio0.050 "),
                      (None, "location_only", "LocEnc ")]
    split = results["evaluations"][-1]["splits"][0]
    assert set(split) == {"id", "name", "count", "top1", "top3", "top5", "top10", "mrr"}
    ranks = np.load(results["files"]["ranks"])
    assert ranks["locs"].shape == (200, 2) and ranks["ranks_location_prior"].shape == (200,)
    top1 = 100 * np.mean(ranks["ranks_location_prior"] == 1)
    assert round(top1, 2) == final(results)["location_prior"][0]
    assert ranks["ranks_location_only"].shape == ranks["locenc_labels"].shape


def test_epoch_snapshots(tmp_path):
    results = run(tmp_path, "--num_epochs_unsuper", "3", "--num_epochs", "0", "--do_epoch_save", "T",
                  "--unsuper_save_frequency", "1")
    path = results["files"]["unsuper_model_file_name"]
    for epoch in (1, 2):
        assert checkpoints.load_checkpoint(checkpoints.epoch_file_name(path, epoch))["epoch"] == epoch + 1
    assert not (tmp_path / checkpoints.epoch_file_name(path, 0)).exists()


@pytest.mark.parametrize("baseline, header", [
    ("no_prior", None), ("train_freq", "Train frequency prior"), ("grid", "Discrete grid prior"),
    ("nn_dist", "Nearest neighbor distance prior")])
def test_baseline_as_spa_enc_type(tmp_path, baseline, header):
    results = run(tmp_path, "--spa_enc_type", baseline)
    methods = [e["method"] for e in results["evaluations"]]
    assert methods == ["no_prior"] + ([baseline] if header else [])
    assert not list(tmp_path.glob("*.pth.tar"))
    log = log_text(results)
    assert "\nNo prior\n" in log and "Epoch" not in log
    if header:
        assert f"\n{header}\n" in log
        assert final(results)[baseline][0] >= final(results)["no_prior"][0] - 1


def test_sup_only_run(tmp_path):
    results = run(tmp_path, "--unsuper_loss", "none", "--num_epochs", "2")
    assert results["files"]["unsuper_model_file_name"] is None
    assert results["phases"][FINETUNING]["epochs_done"] == 2
    assert "location_prior" in final(results)


@pytest.mark.parametrize("flag, value, words", [
    ("--unsuper_loss", "contsoftmaxx", ["--unsuper_loss", "contsoftmax", "imgcontloss"]),
    ("--spa_enc_type", "grid_cell", ["--spa_enc_type", "gridcell", "theory", "geo_net", "nn_knn"]),
    ("--train_loss", "full", ["--train_loss", "full_loss_user"]),
    ("--neg_rand_type", "sphere", ["--neg_rand_type", "sphericalold"]),
    ("--batch_size", "0", ["--batch_size", "at least 1"]),
    ("--train_sample_ratio", "0", ["--train_sample_ratio", "(0, 1]"]),
])
def test_bad_flag_values_are_named(tmp_path, flag, value, words):
    with pytest.raises(ValueError) as err:
        Trainer(arguments.default_params(FLAGS + ["--model_dir", str(tmp_path), flag, value]))
    for word in words:
        assert word in str(err.value)


def test_rbf_checkpoint_reloads_with_its_own_anchors(tmp_path):
    """The anchors are the checkpoint's (not drawn again): ids written into the file are the ones used."""
    rbf = ["--spa_enc_type", "rbf", "--num_rbf_anchor_pts", "20", "--rbf_kernal_size", "10", "--num_epochs", "2"]
    trained = run(tmp_path, *rbf)
    path = trained["files"]["model_file_name"]
    ckpt = torch.load(path, weights_only=True)
    other_ids = [i + 1 for i in ckpt["params"]["rbf_anchor_pt_ids"]]
    ckpt["params"]["rbf_anchor_pt_ids"] = other_ids
    torch.save(ckpt, path)
    reloaded = run(tmp_path, *rbf, "--load_super_model", "T", "--do_unsuper_train", "F")
    assert reloaded["phases"][FINETUNING]["epochs_run"] == 0
    assert reloaded["params"]["rbf_anchor_pt_ids"] == other_ids != trained["params"]["rbf_anchor_pt_ids"]


def test_geo_net_with_dates_leaves_out_samples_without_a_date(tmp_path):
    results = run(tmp_path, "--spa_enc_type", "geo_net", "--use_date_feats", "T", "--unsuper_loss", "none",
                  "--num_epochs", "2")
    log = log_text(results)
    assert "training samples have no date: with --use_date_feats T they are not trained on" in log
    assert "Test loss   : nan" not in log and " nan" not in log
    assert final(results)["location_only"][0] < 90


def test_a_run_that_neither_trains_nor_loads_the_fine_tuned_file_evaluates_its_own_model(tmp_path):
    """Evaluating the pre-trained model (--do_super_train F) beside an earlier run's fine-tuned checkpoint: the
    location-only block scores the model in memory, as the image × prior block does, not the file on disk."""
    flags = ["--num_epochs_unsuper", "1", "--num_epochs", "2"]
    only_pretrained = [*flags, "--do_unsuper_train", "F", "--load_unsuper_model", "T", "--do_super_train", "F"]
    run(tmp_path / "a", *flags)
    beside_finetuned = run(tmp_path / "a", *only_pretrained)
    (tmp_path / "b").mkdir()
    pretrained = beside_finetuned["files"]["unsuper_model_file_name"]
    shutil.copy(pretrained, tmp_path / "b")
    alone = run(tmp_path / "b", *only_pretrained)
    assert final(beside_finetuned) == final(alone)


@pytest.mark.parametrize("extra, words", [
    (["--map_range", "-180", "180"], ["--map_range", "xmin xmax ymin ymax", "-180.0, 180.0"]),
    (["--map_range", "0", "0", "-90", "90"], ["--map_range", "xmin < xmax"]),
    (["--dropout", "1.5"], ["--dropout", "[0, 1)", "1.5"]),
])
def test_bad_encoder_flag_values_are_named_before_anything_runs(tmp_path, extra, words):
    """A --map_range of 2 values crashed in the first forward pass; an empty extent trained on NaN silently."""
    with pytest.raises(ValueError) as err:
        Trainer(arguments.default_params(FLAGS + ["--model_dir", str(tmp_path), "--spa_enc_type", "naive", *extra]))
    for word in words:
        assert word in str(err.value)


def test_nce_pretraining_epoch_ending_in_a_batch_of_one_sample(tmp_path):
    """The NCE in-batch term needs two samples: a last batch of one is left out (it stopped the run with an error;
    the original divided by zero and trained on NaN)."""
    flags = ["--model_dir", str(tmp_path), "--unsuper_loss", "imgcontloss", "--batch_size", "4"]
    with Trainer(arguments.default_params(FLAGS + flags), console=False) as trainer:
        mean = trainer.run_epoch(PRETRAINING, 0, indices=torch.arange(9))
    assert np.isfinite(mean)


def test_a_few_shot_subset_drawn_for_other_data_is_refused(tmp_path, monkeypatch):
    """The walkthrough: the fMoW script on a 62-class set, then on a 20-class set with the same --model_dir, reused
    the first set's subset silently; now the second run stops before training, naming the file and the fix."""
    other = tmp_path / "other"
    write_synthetic_dataset("fmow", other, num_train=1000, num_val=200, num_classes=12, feat_dim=32)
    run(tmp_path / "m", "--num_epochs_unsuper", "0", "--num_epochs", "0")
    monkeypatch.setenv("CSP_DATA_DIR", str(other))
    with pytest.raises(ValueError) as err:
        run(tmp_path / "m", "--num_epochs_unsuper", "0", "--num_epochs", "0")
    message = str(err.value)
    for part in ("sample_idx/fmow/train_sample_ratio0.050.npy", "20 classes", "12 classes", "--model_dir"):
        assert part in message


def test_the_inat_test_split_is_reported_as_public_and_private(tmp_path, monkeypatch):
    """--eval_split test: the results file and the log name the Kaggle splits Public and Private."""
    root = tmp_path / "data"
    write_synthetic_dataset("inat_2018", root, num_train=150, num_val=40, num_test=60, num_classes=12, feat_dim=8)
    monkeypatch.setenv("CSP_DATA_DIR", str(root))
    results = train_unsuper.main(["--dataset", "inat_2018", "--device", "cpu", "--spa_enc_type", "train_freq",
                                  "--eval_split", "test", "--model_dir", str(tmp_path / "m")], console=False)
    for evaluation in results["evaluations"]:
        assert [(split["id"], split["name"]) for split in evaluation["splits"]] == [(0, "Public"), (1, "Private")]
        assert sum(split["count"] for split in evaluation["splits"]) == 60
    assert np.load(results["files"]["ranks"])["split_ids"].dtype == bool


# ---------------------------------------------------------------------------------------------------------------
# nothing silently wrong (issue 9)

def test_a_non_finite_loss_stops_the_run_before_a_checkpoint_or_results_are_written(tmp_path):
    """A temperature that passes the flag check but makes the logits infinite: the loss is NaN from batch 0."""
    with pytest.raises(ValueError, match=r"pre-training epoch 0, batch 0: the loss is not finite .* Likely cause: the "
                                         r"inputs are finite, so the optimisation diverged: lower --unsuper_lr"):
        run(tmp_path, "--unsuper_temp_inbatch", "1e-40", "--num_epochs_unsuper", "2", "--num_epochs", "2")
    assert not list(tmp_path.glob("*.pth.tar")) and not list(tmp_path.glob("*.results.json"))


def test_a_non_finite_input_row_is_named_with_the_epoch_and_batch(tmp_path):
    """One NaN feature row that got past the loader (here set in memory): the message names the row."""
    params = arguments.default_params(FLAGS + ["--model_dir", str(tmp_path), "--balanced_train_loader", "F"])
    with Trainer(params, console=False) as trainer:
        trainer.train_feats[7] = float("nan")
        indices = torch.arange(len(trainer.train_classes))
        with pytest.raises(ValueError, match=r"pre-training epoch 3, batch 0: .*non-finite training image features "
                                             r"in rows \[7\]"):
            trainer.run_epoch(PRETRAINING, 3, indices)


@pytest.mark.parametrize("flag, value", [
    ("--lr", "nan"), ("--lr", "-1"), ("--weight_decay", "-1"), ("--seed", "-1"), ("--unsuper_lr", "-1"),
    ("--num_filts", "0"), ("--hidden_dim", "0"), ("--num_hidden_layer", "-1"), ("--max_radius", "inf"),
    ("--min_radius", "nan"), ("--rand_sample_weight", "inf"), ("--simcse_weight", "nan"), ("--lr_decay", "0"),
    ("--unsuper_temp_negloc", "0"), ("--frequency_num", "0"),
])
def test_flags_out_of_range_are_named_before_any_folder_or_file_is_made(tmp_path, flag, value):
    model_dir = tmp_path / "models"
    with pytest.raises(ValueError, match=rf"^{flag} must be .*got {value}"):
        Trainer(arguments.default_params(FLAGS + ["--model_dir", str(model_dir), flag, value]))
    assert not model_dir.exists()


def test_min_radius_must_be_below_max_radius(tmp_path):
    with pytest.raises(ValueError, match=r"--min_radius \(2\.0\) must be smaller than --max_radius \(1\.0\)"):
        Trainer(arguments.default_params(FLAGS + ["--model_dir", str(tmp_path / "m"), "--min_radius", "2",
                                                  "--max_radius", "1"]))
    assert not (tmp_path / "m").exists()


def test_a_checkpoint_is_neither_resumed_nor_evaluated_under_other_flags(tmp_path):
    """Reloading a geometric-frequency run with --freq_init nerf evaluated the old weights with the new encoding and
    overwrote its results file."""
    flags = ["--num_epochs_unsuper", "1", "--num_epochs", "1"]
    done = run(tmp_path, *flags)
    before = open(done["files"]["results"], "rb").read()
    for other in (["--freq_init", "nerf"], ["--seed", "3"]):
        with pytest.raises(ValueError, match=r"was made with other flags \(.*--" + other[0][2:] + r" " + other[1]):
            run(tmp_path, *flags, *other, "--load_super_model", "T")
    assert open(done["files"]["results"], "rb").read() == before
    resumed = run(tmp_path, "--num_epochs_unsuper", "1", "--num_epochs", "2", "--load_super_model", "T")
    assert resumed["phases"][FINETUNING] == {"epochs_done": 2, "epochs_run": 1}


def test_a_checkpoint_with_more_epochs_than_asked_for_is_refused(tmp_path):
    run(tmp_path, "--num_epochs_unsuper", "1", "--num_epochs", "2")
    with pytest.raises(ValueError, match=r"holds 2 completed fine-tuning epochs, more than --num_epochs 1"):
        run(tmp_path, "--num_epochs_unsuper", "1", "--num_epochs", "1", "--load_super_model", "T")


@pytest.mark.parametrize("baseline", ["grid", "train_freq"])
def test_baselines_use_the_few_shot_subset_unless_asked_otherwise(tmp_path, baseline):
    """At --train_sample_ratio 0.05 the grid prior used 100 % of the labels while the log named the subset."""
    subset = run(tmp_path, "--spa_enc_type", baseline)
    full = run(tmp_path, "--spa_enc_type", baseline, "--baseline_full_train", "T")
    assert full["files"]["results"] != subset["files"]["results"]
    assert "_ratio0.050_fulltrain" in full["files"]["results"]
    assert "fitted on all 975 training samples" in log_text(full)
    assert "few-shot subset" in log_text(subset)
    assert final(full)[baseline] != final(subset)[baseline]


@pytest.mark.parametrize("baseline, hyper_parameter", [("nn_knn", "num_neighbors"), ("kde", "kde_nb")])
def test_neighbour_baselines_on_small_data_are_clamped_and_say_so(tmp_path, baseline, hyper_parameter):
    results = run(tmp_path, "--spa_enc_type", baseline)
    assert baseline in final(results)
    assert f"{baseline}: {hyper_parameter} lowered from" in log_text(results)


def test_a_second_run_in_the_same_folder_is_stopped_and_changes_nothing(tmp_path):
    """Two runs with other seeds at once: one's results described the other's model."""
    params = arguments.default_params(FLAGS + ["--model_dir", str(tmp_path), "--num_epochs_unsuper", "1",
                                               "--num_epochs", "1"])
    with Trainer(params, console=False):
        before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
        for seed in ("1", "2"):
            with pytest.raises(ValueError, match=rf"--model_dir {tmp_path} is in use by another run \(process "
                                                 rf"{os.getpid()} "):
                run(tmp_path, "--seed", seed, "--num_epochs_unsuper", "1", "--num_epochs", "1")
        assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before
    run(tmp_path, "--seed", "1", "--num_epochs_unsuper", "1", "--num_epochs", "1")  # the folder is free again


def test_temporary_files_of_a_killed_write_are_removed_by_the_next_run(tmp_path):
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True).stdout)
    (tmp_path / "sample_idx").mkdir()
    left = [tmp_path / f".model_x.pth.tar.{dead_pid}.0badcafe.tmp",
            tmp_path / "sample_idx" / f".train_sample_ratio0.050.npy.{dead_pid}.12345678.tmp"]
    for path in left:
        path.write_bytes(b"half")
    results = run(tmp_path, "--num_epochs_unsuper", "1", "--num_epochs", "1")
    assert not any(path.exists() for path in left)
    assert f"Removed {left[0]}, a temporary file left by a run that was killed" in log_text(results)


@pytest.mark.parametrize("flag, value", [("--freq_init", "nerff"), ("--spa_f_act", "swish"),
                                         ("--loc_encode", "encode_4D"), ("--date_encode", "encode_sin")])
def test_unknown_encoder_choices_are_named_before_any_folder_is_made(tmp_path, flag, value):
    with pytest.raises(ValueError, match=rf"^{flag} '{value}' is unknown; valid values: "):
        Trainer(arguments.default_params(FLAGS + ["--model_dir", str(tmp_path / "m"), flag, value]))
    assert not (tmp_path / "m").exists()


def test_a_flag_newer_than_the_checkpoint_matches_only_at_its_default(tmp_path):
    """A checkpoint of an earlier version lacks flags added since: left at their defaults they change nothing."""
    flags = ["--num_epochs_unsuper", "1", "--num_epochs", "1"]
    done = run(tmp_path, *flags)
    path = done["files"]["model_file_name"]
    ckpt = torch.load(path, weights_only=True)
    for key in ("lr_decay", "neg_rand_type"):  # lr_decay at its default here, neg_rand_type not (sphericalold)
        del ckpt["params"][key]
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"other flags \(--neg_rand_type sphericalold here, \(not recorded\) in the "
                                         r"file\)"):
        run(tmp_path, *flags, "--load_super_model", "T")
    ckpt["params"]["neg_rand_type"] = "sphericalold"
    torch.save(ckpt, path)
    assert run(tmp_path, *flags, "--load_super_model", "T")["phases"][FINETUNING]["epochs_run"] == 0


def test_a_run_that_stops_in_set_up_leaves_no_log_of_its_own(tmp_path, monkeypatch):
    """A run that failed validation left an empty .log; an earlier run's log is kept."""
    params = arguments.default_params(FLAGS + ["--model_dir", str(tmp_path)])
    log = tmp_path / checkpoints.log_file_name(checkpoints.model_file_names(params)[1]).split("/")[-1]
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path / "no data"))
    with pytest.raises(FileNotFoundError, match="data folder"):
        Trainer(params)
    assert not log.exists()
    log.write_text("an earlier run\n")
    with pytest.raises(FileNotFoundError, match="data folder"):
        Trainer(arguments.default_params(FLAGS + ["--model_dir", str(tmp_path)]))
    assert log.read_text() == "an earlier run\n"  # nothing appended


def _edit_json(path, change):
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _move_first_location(entries):
    entries[0]["lon"] = entries[0]["lon"] / 2
    return entries


@pytest.mark.parametrize("load, change, words", [
    ("--load_super_model", lambda d: _edit_json(d / "category.json", lambda c: {
        name: (1 - cid if cid < 2 else cid) for name, cid in c.items()}),
     ["class 0 is ", "(2 of 20 class ids name other classes"]),
    ("--load_super_model", lambda d: np.save(d / "fewshot/fmow_val_preds_ratio0.050.npy",
                                             np.load(d / "fewshot/fmow_val_preds_ratio0.050.npy")[::-1]),
     ["val image predictions", "has changed since (other content)"]),
    ("--load_unsuper_model", lambda d: _edit_json(d / "train_location.json", _move_first_location),
     ["train locations", "train_location.json has changed since"]),
])
def test_a_checkpoint_of_other_data_is_neither_resumed_nor_evaluated(tmp_path, monkeypatch, data_dir, load, change,
                                                                    words):
    """The checkpoint records its data files (sizes, fingerprints) and class names: a data folder changed in place
    (class ids renamed, other predictions, a moved location) is one line naming it, and nothing is overwritten."""
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    monkeypatch.setenv("CSP_DATA_DIR", str(data))
    flags = ["--num_epochs_unsuper", "1", "--num_epochs", "1"]
    done = run(tmp_path / "m", *flags)
    if load == "--load_unsuper_model":  # the fine-tuned checkpoint would be loaded first
        os.remove(done["files"]["model_file_name"])
    before = {path: path.read_bytes() for path in (tmp_path / "m").rglob("*") if path.is_file()}
    change(data / "fmow")
    with pytest.raises(ValueError) as err:
        run(tmp_path / "m", "--num_epochs_unsuper", "2", "--num_epochs", "2", load, "T")
    message = str(err.value)
    key = "unsuper_model_file_name" if load == "--load_unsuper_model" else "model_file_name"
    assert message.startswith(f"{done['files'][key]} was trained on other data (") and all(
        word in message for word in words), message
    assert f"--{load[2:]} F to train anew" in message and "\n" not in message
    assert {path: path.read_bytes() for path in (tmp_path / "m").rglob("*") if path.is_file()} == before


def test_the_same_data_in_another_folder_resumes_and_old_checkpoints_without_records_still_load(tmp_path, monkeypatch,
                                                                                            data_dir, caplog):
    """Files are compared by content, not by path; a checkpoint that records no data or process count (the
    original's, or one of an earlier version) loads with a warning that says what cannot be checked."""
    monkeypatch.setenv("CSP_DATA_DIR", str(data_dir))
    done = run(tmp_path / "m", "--num_epochs_unsuper", "1", "--num_epochs", "1")
    recorded = checkpoints.load_checkpoint(done["files"]["model_file_name"])
    assert recorded["world_size"] == 1 and recorded["class_names"] == done["data"]["class_names"]
    assert {role: entry["path"] for role, entry in recorded["data"].items()} == {
        "class names": str(data_dir / "fmow/category.json"), "train locations": str(data_dir / "fmow/train_location.json"),
        "train annotations": str(data_dir / "fmow/train.json"), "val locations": str(data_dir / "fmow/val_location.json"),
        "val annotations": str(data_dir / "fmow/val.json"),
        "val image predictions": str(data_dir / "fmow/fewshot/fmow_val_preds_ratio0.050.npy"),
        "train image features": str(data_dir / "fmow/features_inception_pretrain/fmow_train_pretrain_net_feats.npy")}
    moved = tmp_path / "moved"
    shutil.copytree(data_dir, moved)
    monkeypatch.setenv("CSP_DATA_DIR", str(moved))
    resumed = run(tmp_path / "m", "--num_epochs_unsuper", "1", "--num_epochs", "2", "--load_super_model", "T")
    assert resumed["phases"][FINETUNING]["epochs_run"] == 1
    assert resumed["data"]["files"]["val annotations"]["path"] == str(moved / "fmow/val.json")
    path = resumed["files"]["model_file_name"]
    ckpt = torch.load(path, weights_only=True)
    for key in ("data", "world_size", "class_names"):
        del ckpt[key]
    torch.save(ckpt, path)
    caplog.set_level("WARNING")
    again = run(tmp_path / "m", "--num_epochs_unsuper", "1", "--num_epochs", "3", "--load_super_model", "T")
    assert again["phases"][FINETUNING] == {"epochs_done": 3, "epochs_run": 1}
    assert "does not record the data it was trained on" in caplog.text
    assert "does not record how many processes wrote it" in caplog.text


def test_yfcc_takes_its_loader_flags_from_the_data_and_records_them(tmp_path, monkeypatch):
    """yfcc has no users or dates: the run logs and records use_date_feats and balanced_train_loader F (as the
    original), which the loaders report, never set."""
    write_synthetic_dataset("yfcc", tmp_path / "data", num_train=200, num_val=40, num_test=40, num_classes=5,
                            feat_dim=8)
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path / "data"))
    results = train_unsuper.main(["--dataset", "yfcc", "--device", "cpu", "--model_dir", str(tmp_path / "m"),
                                  "--num_epochs", "1", "--hidden_dim", "16", "--num_filts", "8", "--frequency_num",
                                  "4", "--use_date_feats", "T"])
    assert not results["params"]["use_date_feats"] and not results["params"]["balanced_train_loader"]
    assert log_text(results).count("yfcc has no users or dates: use_date_feats and balanced_train_loader set to "
                                   "False\n") == 1
