"""Two processes (gloo, CPU) against one: the global-batch losses, whole runs, and a resumed run.

The two worker processes are spawned once per module (`two_processes`): each joins the process group from
torchrun's environment variables, runs every scenario and leaves what it computed in a file; the tests compare that
with one process doing the same at the global batch.
"""
import contextlib
import faulthandler
import io
import os
import shutil
import socket
import subprocess
import sys
from unittest import mock

import pytest
import torch
import torch.multiprocessing as mp

import conftest  # noqa: F401  (the package csp, also in the processes this module spawns)
from conftest import ROOT
from csp import arguments
from csp import checkpoints
from csp import distributed
from csp import losses
from csp import paths
from csp import train_unsuper
from csp.arguments import default_params
from csp.models import build_model
from csp.run_lock import RunLock
from csp.trainer import FINETUNING, PRETRAINING

WORLD, B, K, IMG, C, U = 2, 6, 2, 12, 5, 3
LOSS_FLAGS = ["--frequency_num", "4", "--hidden_dim", "32", "--num_filts", "16", "--dropout", "0",
              "--num_neg_rand_loc", str(K), "--rand_sample_weight", "0.7", "--simcse_weight", "0.3",
              "--unsuper_temp_inbatch", "2", "--unsuper_temp_negloc", "0.5", "--neg_rand_type", "sphericalold"]
LOSSES = ("contsoftmaxsym", "imgcontlosssimcse", "l2regress", "full_loss_user")
# a yfcc-style run (no invalid rows, so the row count is exact): 240 training rows; at 2 × 32 the last global
# batch has 48 rows, split 24 + 24. No dropout and no random-location term: the runs draw nothing per rank.
RUN_FLAGS = ("--dataset yfcc --device cpu --spa_enc_type gridcell --frequency_num 4 --max_radius 360 "
             "--min_radius 0.1 --hidden_dim 32 --num_filts 16 --unsuper_loss contsoftmax --simcse_weight 1 "
             "--unsuper_temp_inbatch 5 --rand_sample_weight 0 --dropout 0 --unsuper_lr 0.01 --lr 0.01 "
             "--eval_frequency 100 --do_unsuper_train T --do_super_train T").split()
PER_RANK_BATCH = 32
HANG_S = 300


def _inputs(loss):
    """Model and one global batch (2·B rows) for `loss`, the same in every process."""
    params = default_params(LOSS_FLAGS)
    params["unsuper_loss" if loss in losses.UNSUPER_LOSSES else "train_loss"] = loss
    params["num_classes"] = C
    torch.manual_seed(0)
    model = build_model(params, C, U, cnn_feat_dim=IMG)
    gen = torch.Generator().manual_seed(1)
    n = WORLD * B
    locs = torch.rand(n, 2, generator=gen) * torch.tensor([360.0, 180.0]) - torch.tensor([180.0, 90.0])
    feats = torch.randn(n, IMG, generator=gen)
    negs = losses.rand_samples(K * n, "cpu", "sphericalold", generator=gen)
    classes = torch.randint(0, C, (n,), generator=gen)
    users = torch.randint(0, U, (n,), generator=gen)
    return model, params, locs, feats, negs, classes, users


def _loss(step, loss, params, locs, feats, negs, classes, users):
    if loss in losses.UNSUPER_LOSSES:
        return step(losses.unsuper_loss, locs, feats, params, negs)
    return step(losses.embedding_loss, locs, classes, users, params, negs[:len(locs)])


def _one_step(loss):
    """(loss, {parameter: gradient}) of one step on this rank's slice of the global batch (one process: all)."""
    model, params, locs, feats, negs, classes, users = _inputs(loss)
    rank, world = distributed.rank(), distributed.world_size()
    mine = slice(rank * B, (rank + 1) * B) if world > 1 else slice(None)
    b = len(locs) // world
    # negatives: row k·b + i is negative k of sample i, of this rank's samples
    negs = negs.view(K, WORLD * B, 2)[:, mine].reshape(K * b, 2)
    step = distributed.parallel(model)
    value = _loss(step, loss, params, locs[mine], feats[mine], negs, classes[mine], users[mine])
    value.backward()
    return distributed.mean_over_ranks(value.detach()).item(), \
        {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _run(model_dir, batch_size, *extra):
    """{phases: epochs done and run, pre-training and fine-tuned weights} of a run."""
    results = train_unsuper.main(RUN_FLAGS + ["--model_dir", str(model_dir), "--batch_size", str(batch_size),
                                              *extra], console=False)
    files = results["files"]
    return {"phases": results["phases"],
            **{key: checkpoints.load_checkpoint(files[key + "_file_name"])["state_dict"]
               for key in ("unsuper_model", "model") if os.path.isfile(files[key + "_file_name"])}}


def _worker(rank, port, data_dir, out_dir):
    faulthandler.dump_traceback_later(HANG_S, exit=True)  # a rank that waits for ever fails the test instead
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), CSP_DATA_DIR=str(data_dir))
    torch.set_num_threads(1)
    distributed.QUIET_EXIT_DELAY_S = 0.0   # the stopping runs below: no launcher stops these processes
    distributed.setup(torch.device("cpu"))
    out = {"steps": {loss: _one_step(loss) for loss in LOSSES}, "rank_seed": distributed.rank_seed(7),
           "shard": distributed.shard(torch.arange(11), 2).tolist()}
    load = ["--load_unsuper_model", "T", "--load_super_model", "T"]
    out["equal"] = _run(out_dir / "equal", PER_RANK_BATCH, "--num_epochs_unsuper", "2", "--num_epochs", "2")
    out["whole"] = _run(out_dir / "whole", PER_RANK_BATCH, "--num_epochs_unsuper", "2", "--num_epochs", "3")
    out["parts"] = [
        _run(out_dir / "parts", PER_RANK_BATCH, "--num_epochs_unsuper", "1", "--do_super_train", "F"),
        _run(out_dir / "parts", PER_RANK_BATCH, "--num_epochs_unsuper", "2", "--num_epochs", "2", *load),
        _run(out_dir / "parts", PER_RANK_BATCH, "--num_epochs_unsuper", "2", "--num_epochs", "3", *load)]
    out["stops"] = {name: _stop(out_dir, rank, name) for name in STOPS}
    torch.save(out, out_dir / f"rank{rank}.pt")


# runs that stop: (extra flags, {rank: environment}); the folder "busy" is held by the test process
STOPS = {
    "bad flag": (["--lr", "nan"], {}),
    "folder in use": (["--model_dir", "{out}/busy"], {}),
    "one row for two processes": (["--train_sample_method", "random-fix", "--train_sample_ratio", "0.001",
                                   "--do_unsuper_train", "F", "--unsuper_loss", "none", "--num_epochs", "1"], {}),
    "data missing on process 1 only": ([], {1: {"CSP_DATA_DIR": "{out}/no data here"}}),
    "full disk on process 0": (["--num_epochs_unsuper", "1", "--do_super_train", "F"], {0: {"FULL_DISK": "1"}}),
}


def _stop(out_dir, rank, name):
    """(exit status, stderr) of `python train_unsuper.py` with the flags and environment of STOPS[name]."""
    flags, environments = STOPS[name]
    argv = RUN_FLAGS + ["--model_dir", str(out_dir / name), "--batch_size", str(PER_RANK_BATCH)]
    argv += [flag.format(out=out_dir) for flag in flags]
    env = {key: value.format(out=out_dir) for key, value in environments.get(rank, {}).items()}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    stderr = io.StringIO()
    try:
        with mock.patch.object(sys, "argv", ["train_unsuper.py", *argv]), contextlib.redirect_stderr(stderr), \
                mock.patch.object(paths.os, "fsync", _full if env.get("FULL_DISK") else os.fsync):
            arguments.run_command(train_unsuper.main)
        code = 0
    except SystemExit as stop:
        code = stop.code
    finally:
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
    return code, stderr.getvalue()


def _full(fd):
    raise OSError(28, "No space left on device")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def data_dir(synthetic_data_dir):
    return synthetic_data_dir("yfcc", num_train=240, num_val=60, num_classes=10, feat_dim=16)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, data_dir):
    """What each of the two worker processes computed: [rank 0's, rank 1's], and their folder."""
    out_dir = tmp_path_factory.mktemp("two")
    with RunLock(out_dir / "busy"):
        mp.spawn(_worker, args=(_free_port(), data_dir, out_dir), nprocs=WORLD)
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)], out_dir


@pytest.mark.parametrize("loss", LOSSES)
def test_one_step_loss_and_gradients_equal_one_process_at_the_global_batch(two_processes, loss):
    ranks, _ = two_processes
    value, grads = _one_step(loss)
    for rank_value, rank_grads in (r["steps"][loss] for r in ranks):
        assert rank_value == pytest.approx(value, abs=1e-6)
        assert rank_grads.keys() == grads.keys()  # unused heads get no gradient, as in one process
        for name, grad in grads.items():
            torch.testing.assert_close(rank_grads[name], grad, rtol=0, atol=1e-6, msg=name)


def _assert_weights_close(actual, expected, atol):
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=0, atol=atol, msg=name)


def test_two_processes_end_with_the_weights_of_one_process_at_twice_the_batch(two_processes, tmp_path,
                                                                            monkeypatch, data_dir):
    ranks, _ = two_processes
    monkeypatch.setenv("CSP_DATA_DIR", str(data_dir))
    one = _run(tmp_path, 2 * PER_RANK_BATCH, "--num_epochs_unsuper", "2", "--num_epochs", "2")
    two = ranks[0]["equal"]
    assert two["phases"] == one["phases"]
    for key in ("unsuper_model", "model"):
        _assert_weights_close(two[key], one[key], atol=1e-5)
    # both phases moved the weights (8 steps each) by far more than the tolerance
    assert (one["model"]["class_emb.weight"] - one["unsuper_model"]["class_emb.weight"]).abs().max() > 1e-2


def test_a_stopped_two_process_run_resumes_as_the_uninterrupted_one(two_processes):
    ranks, out_dir = two_processes
    parts = ranks[0]["parts"]
    assert [p["phases"][PRETRAINING]["epochs_run"] for p in parts] == [1, 1, 0]
    assert [p["phases"][FINETUNING]["epochs_run"] for p in parts] == [0, 2, 1]
    _assert_weights_close(parts[-1]["model"], ranks[0]["whole"]["model"], atol=1e-6)
    # rank 0 alone logs: each epoch once in the log the three parts appended to
    log = next((out_dir / "parts").glob("*.log")).read_text()
    assert log.count("Unsupervised Training Epoch\t0") == 1 and log.count("\nEpoch\t2") == 1


def test_ranks_draw_their_own_random_numbers_and_disjoint_equal_shards(two_processes):
    ranks, _ = two_processes
    assert ranks[0]["rank_seed"] == 7 != ranks[1]["rank_seed"]  # rank 0 draws as one process
    # 11 rows as global batches of 2 × 2: [0 1 | 2 3], [4 5 | 6 7], then 3 rows: one each, row 10 left out
    assert [r["shard"] for r in ranks] == [[0, 1, 4, 5, 8], [2, 3, 6, 7, 9]]


def test_one_process_is_left_alone():
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    rows = torch.arange(11)
    assert distributed.shard(rows, 2) is rows
    assert distributed.rank_seed(7) == 7
    tensor = torch.ones(3, requires_grad=True)
    assert distributed.gather(tensor) is tensor and distributed.mean_over_ranks(tensor) is tensor


def test_incomplete_torchrun_environment_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ValueError, match="MASTER_PORT"):
        distributed.setup(torch.device("cpu"))


@pytest.mark.parametrize("name, words", [
    ("bad flag", ["--lr must be a finite number"]),
    ("folder in use", ["is in use by another run"]),
    ("one row for two processes", ["fine-tuning epoch 0: 1 training row(s) for 2 torchrun processes"]),
    ("data missing on process 1 only", ["torchrun process 1 stopped:", "no data here"]),
    ("full disk on process 0", ["the disk is full", ".pth.tar"]),
])
def test_a_run_that_stops_under_torchrun_stops_every_process_with_one_line_from_process_0(two_processes, name,
                                                                                         words):
    """Every process exits 2, process 0 prints the one line, the others nothing: no traceback, no process left
    waiting for another (a process that fails alone, in set-up or while writing, stops the others too)."""
    ranks, _ = two_processes
    (code0, err0), (code1, err1) = (r["stops"][name] for r in ranks)
    assert code0 == code1 == 2, (err0, err1)
    assert "Traceback" not in err0 + err1 and err1 == "", (err0, err1)
    last = err0.rstrip("\n").split("\n")[-1]
    assert err0.count("error: ") == 1 and last.startswith("train_unsuper.py: error: "), err0
    assert all(word in last for word in words), last


def test_a_two_process_checkpoint_is_not_continued_mid_phase_by_one_process(two_processes, tmp_path, monkeypatch,
                                                                           data_dir):
    """One process would continue the phase at half the global batch: refused, nothing written; a phase the
    checkpoint finished may start afresh with one process (and evaluation needs no training)."""
    _, out_dir = two_processes
    models = tmp_path / "parts"
    shutil.copytree(out_dir / "parts", models)
    monkeypatch.setenv("CSP_DATA_DIR", str(data_dir))
    load = ["--load_unsuper_model", "T", "--load_super_model", "T"]
    before = {path: path.read_bytes() for path in models.iterdir() if path.is_file()}
    with pytest.raises(ValueError, match=r"was written by 2 process\(es\) after 3 of 4 fine-tuning epochs; continuing "
                                         r"with 1 would change the global batch mid-phase \(64 -> 32 rows\)"):
        _run(models, PER_RANK_BATCH, "--num_epochs_unsuper", "2", "--num_epochs", "4", *load)
    finetuned = next(path for path in models.glob("*.pth.tar") if "UNSUPER" not in path.name)
    finetuned.unlink()
    with pytest.raises(ValueError, match=r"after 2 of 3 pre-training epochs"):
        _run(models, PER_RANK_BATCH, "--num_epochs_unsuper", "3", "--num_epochs", "1", *load)
    assert {path: path.read_bytes() for path in models.iterdir() if path.is_file()} == {
        path: data for path, data in before.items() if path != finetuned}
    fresh = _run(models, PER_RANK_BATCH, "--num_epochs_unsuper", "2", "--num_epochs", "1", *load)
    assert fresh["phases"][FINETUNING]["epochs_run"] == 1


def test_bad_input_under_torchrun_itself_is_one_line_from_process_0(tmp_path):
    """torchrun's own report follows (its exit status 1, ChildFailedError), naming process 0's exit status 2 as the
    root cause; no traceback of the processes' code."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("CSP_TRACEBACK", None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "main/train_unsuper.py", "--lr", "nan", "--device", "cpu",
                           "--model_dir", str(tmp_path / "m")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=HANG_S)
    assert done.stderr.count("train_unsuper.py: error: --lr must be a finite number >= 0, got nan\n") == 1, \
        done.stderr
    root_cause = done.stderr[done.stderr.index("Root Cause"):]
    assert "rank      : 0 (local_rank: 0)\n  exitcode  : 2 " in root_cause, done.stderr
    assert 'train_unsuper.py", line' not in done.stderr and "main/arguments.py" not in done.stderr
    assert not (tmp_path / "m").exists()
