"""Training features on the device, or left in their file and streamed: the same rows either way, every row once
per epoch, reproducible and resumable, disjoint rows per torchrun rank, and a file cut short named."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from csp import arguments
from csp import data_arrays
from csp import datasets
from csp import distributed
from csp import feature_store
from csp import train_unsuper
from csp.feature_store import FeatureFile, MappedFeatures, StreamedFeatures, training_features
from csp.trainer import PRETRAINING, Trainer

ROWS, WIDTH = 50, 4


@pytest.fixture
def feature_path(tmp_path):
    """A (50, 4) float32 .npy whose row i is i · (1, 2, 3, 4)."""
    path = tmp_path / "feats.npy"
    np.save(path, np.arange(ROWS, dtype=np.float32)[:, None] * np.float32([1, 2, 3, 4]))
    return path


def _file(path, rows=None, dtype=np.float32):
    return FeatureFile(path, 128, dtype, (ROWS, WIDTH), rows)


def test_mapped_features_give_the_rows_asked_for_in_their_order(feature_path):
    array = np.load(feature_path)
    rows = torch.tensor([7, 3, 3, 49, 0])
    for source in (np.load(feature_path, mmap_mode="c"), array):
        batch = MappedFeatures(source, torch.device("cpu"))[rows]
        assert batch.dtype == torch.float32
        np.testing.assert_array_equal(batch.numpy(), array[rows.numpy()])


def test_a_feature_file_reads_only_the_kept_rows_in_any_order(feature_path):
    array = np.load(feature_path)
    kept = np.array([1, 2, 5, 40, 41])
    view = _file(feature_path, kept)
    assert view.shape == (5, 4) and len(view) == 5
    np.testing.assert_array_equal(np.asarray(view), array[kept])
    np.testing.assert_array_equal(view[[4, 0, 4]], array[[41, 1, 41]])
    np.testing.assert_array_equal(view[3], array[40])
    batch = StreamedFeatures(view, torch.device("cpu"))[torch.tensor([4, 0])]
    np.testing.assert_array_equal(batch.numpy(), array[[41, 1]])


@pytest.mark.parametrize("span_rows, gap_rows, threads", [(3, 1, 1), (7, 2, 4), (64, 64, 4)])
def test_reads_split_into_bounded_spans_give_the_same_rows(monkeypatch, feature_path, span_rows, gap_rows, threads):
    array, row_bytes = np.load(feature_path), 4 * WIDTH
    monkeypatch.setattr(feature_store, "SPAN_BYTES", span_rows * row_bytes)
    monkeypatch.setattr(feature_store, "MAX_GAP_BYTES", gap_rows * row_bytes)
    reads = []
    view = _file(feature_path)
    monkeypatch.setattr(view, "_read_into", lambda handle, first, out, read=view._read_into:
                        reads.append(len(out)) or read(handle, first, out))
    positions = np.array([0, 1, 2, 3, 4, 5, 9, 10, 20, 21, 22, 23, 24, 25, 26, 27, 49])
    np.testing.assert_array_equal(view.read(positions, threads), array[positions])
    assert max(reads) <= span_rows and sum(reads) >= len(positions)


def test_a_float16_file_is_read_as_float32(tmp_path, feature_path):
    array = np.load(feature_path)
    np.save(tmp_path / "half.npy", array.astype(np.float16))
    half = _file(tmp_path / "half.npy", dtype=np.float16)
    assert half[[3, 1]].dtype == np.float32
    np.testing.assert_array_equal(np.asarray(half), array.astype(np.float16).astype(np.float32))


def test_auto_keeps_an_array_on_the_cpu_without_copy_and_streams_a_file(feature_path):
    cpu = torch.device("cpu")
    mapped = np.load(feature_path, mmap_mode="c")
    whole = training_features(mapped, cpu)
    assert torch.is_tensor(whole) and np.shares_memory(whole.numpy(), mapped)
    assert isinstance(training_features(_file(feature_path, [0, 1]), cpu), StreamedFeatures)
    assert isinstance(training_features(_file(feature_path), cpu, "mapped"), StreamedFeatures)
    forced = training_features(_file(feature_path, [3, 9]), cpu, "device")
    np.testing.assert_array_equal(forced.numpy(), mapped[[3, 9]])
    with pytest.raises(ValueError, match="--feature_storage 'disk'"):
        training_features(mapped, cpu, "disk")


def test_loader_leaves_features_in_the_file_when_they_do_not_fit_or_when_asked():
    assert feature_store.stays_in_file("mapped", 1) and not feature_store.stays_in_file("device", 1 << 60)
    assert feature_store.stays_in_file("auto", 1 << 60) and not feature_store.stays_in_file("auto", 1)


# ---------------------------------------------------------------------------------------------------------------
# the streaming order

BLOCK, WINDOW = 7, 21


def _order(rows, seed, batch_size=8, world=1):
    generator = torch.Generator().manual_seed(seed)
    return feature_store.block_order(torch.as_tensor(rows), generator, batch_size, world, BLOCK, WINDOW)


def test_a_streamed_epoch_takes_every_row_once_in_shuffled_blocks_read_window_by_window():
    rows = torch.randperm(1000, generator=torch.Generator().manual_seed(1))
    drawn = rows[:900]  # e.g. a class-balanced draw
    assert sorted(_order(drawn, seed=0).tolist()) == sorted(drawn.tolist())
    order = _order(rows, seed=0)
    assert sorted(order.tolist()) == list(range(1000))
    windows = order.split(WINDOW)
    for window in windows[:-1]:  # a window holds the rows of at most 4 blocks: 3 whole, or parts of 4
        assert len(set((window // BLOCK).tolist())) <= WINDOW // BLOCK + 1
    blocks = [int(window.min()) // BLOCK for window in windows]
    assert blocks != sorted(blocks)  # the blocks come in a random order
    assert not torch.equal(order, _order(rows, seed=1)) and torch.equal(order, _order(rows, seed=0))


def test_ranks_stream_disjoint_rows_and_read_only_their_own(monkeypatch, feature_path):
    rows = torch.arange(ROWS)
    world, batch_size = 3, 4
    order = feature_store.block_order(rows, torch.Generator().manual_seed(0), batch_size, world, 5, 10)
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    shards = []
    for rank in range(world):
        monkeypatch.setattr(distributed, "rank", lambda rank=rank: rank)
        shards.append(distributed.shard(order, batch_size))
    assert [len(shard) for shard in shards] == [ROWS // world] * world
    taken = torch.cat(shards)
    assert len(set(taken.tolist())) == len(taken) == ROWS - ROWS % world
    streamed = StreamedFeatures(_file(feature_path), torch.device("cpu"), block_rows=5, window_rows=10)
    read = []
    monkeypatch.setattr(streamed.source, "read", lambda positions, *args, read_rows=streamed.source.read:
                        read.append(positions) or read_rows(positions, *args))
    for shard in shards:
        read.clear()
        batches = torch.cat(list(streamed.batches(shard, batch_size)))
        np.testing.assert_array_equal(batches.numpy(), np.load(feature_path)[shard.numpy()])
        assert sorted(np.concatenate(read).tolist()) == sorted(shard.tolist())


def test_streamed_batches_are_the_rows_of_the_order_across_window_edges(tmp_path, feature_path):
    streamed = StreamedFeatures(_file(feature_path), torch.device("cpu"), block_rows=3, window_rows=9)
    order = torch.cat([_order(torch.arange(ROWS), seed=2), torch.tensor([5, 5])])  # a row twice in a window
    batches = list(streamed.batches(order, 4))
    assert [len(batch) for batch in batches] == [4] * 13
    np.testing.assert_array_equal(torch.cat(batches).numpy(), np.load(feature_path)[order.numpy()])


# ---------------------------------------------------------------------------------------------------------------
# runs

FLAGS = ("--dataset fmow --device cpu --inat2018_resolution pretrain --frequency_num 4 --hidden_dim 32 "
         "--num_filts 16 --unsuper_loss contsoftmax --do_unsuper_train T --batch_size 32").split()


@pytest.fixture(scope="module")
def fmow_dir(synthetic_data_dir):
    return synthetic_data_dir("fmow", num_train=300, num_val=60, num_classes=8, feat_dim=16)


def _trainer(tmp_path, storage, *extra):
    params = arguments.default_params(FLAGS + ["--feature_storage", storage, "--model_dir",
                                               str(tmp_path / storage), *extra])
    return Trainer(params, console=False)


def test_a_streamed_epoch_sees_every_pretraining_row_once_with_its_features(tmp_path, monkeypatch, fmow_dir):
    monkeypatch.setenv("CSP_DATA_DIR", str(fmow_dir))
    with _trainer(tmp_path, "mapped", "--balanced_train_loader", "F") as trainer:
        assert isinstance(trainer.train_feats, StreamedFeatures)
        trainer.params["batch_size"] = 32
        for epoch in (0, 1):
            trainer._seed_epoch(PRETRAINING, epoch)
            order = trainer.epoch_indices(PRETRAINING)
            assert sorted(order.tolist()) == list(range(len(trainer.train_classes)))
            streamed = torch.cat(list(feature_store.batches(trainer.train_feats, order, 32)))
            np.testing.assert_array_equal(streamed.numpy(), np.asarray(trainer.data.train.feats)[order.numpy()])
    params = arguments.default_params(FLAGS + ["--feature_storage", "mapped"])
    data = datasets.load_dataset(params, "val", True, True, load_cnn_features_train=True)
    assert isinstance(data.train.feats, FeatureFile) and len(data.train.feats) == len(data.train)


def test_a_streamed_run_resumes_exactly_as_the_uninterrupted_one(tmp_path, monkeypatch, fmow_dir):
    monkeypatch.setenv("CSP_DATA_DIR", str(fmow_dir))
    run = [*FLAGS, "--feature_storage", "mapped", "--do_super_train", "F"]
    whole = train_unsuper.main(run + ["--num_epochs_unsuper", "3", "--model_dir", str(tmp_path / "whole")])
    train_unsuper.main(run + ["--num_epochs_unsuper", "1", "--model_dir", str(tmp_path / "parts")])
    parts = train_unsuper.main(run + ["--num_epochs_unsuper", "3", "--load_unsuper_model", "T",
                                      "--model_dir", str(tmp_path / "parts")])
    assert parts["phases"][PRETRAINING] == {"epochs_done": 3, "epochs_run": 2}
    weights = [torch.load(result["files"]["unsuper_model_file_name"])["state_dict"] for result in (whole, parts)]
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=0, msg=name)


def test_a_float16_feature_file_trains_like_its_float32_values(tmp_path, monkeypatch, synthetic_data_dir):
    half = synthetic_data_dir("fmow", num_train=300, num_val=60, num_classes=8, feat_dim=16, feature_dtype="float16")
    monkeypatch.setenv("CSP_DATA_DIR", str(half))
    losses = {}
    for storage in ("device", "mapped"):
        with _trainer(tmp_path, storage, "--balanced_train_loader", "F") as trainer:
            order = trainer.epoch_indices(PRETRAINING)
            losses[storage] = trainer.run_epoch(PRETRAINING, 0, torch.sort(order).values)
            assert trainer.train_feats.shape == (len(trainer.train_classes), 16)
    assert losses["mapped"] == losses["device"]


def test_a_feature_file_cut_short_is_named_in_one_line(tmp_path, monkeypatch, fmow_dir):
    data = tmp_path / "data"
    shutil.copytree(fmow_dir / "fmow", data / "fmow")
    path = data / "fmow/features_inception_pretrain/fmow_train_pretrain_net_feats.npy"
    monkeypatch.setenv("CSP_DATA_DIR", str(data))
    with _trainer(tmp_path, "mapped", "--balanced_train_loader", "F") as trainer:
        with open(path, "r+b") as handle:  # cut short while in use: an mmap would die of SIGBUS here
            handle.truncate(path.stat().st_size // 2)
        with pytest.raises(ValueError, match=f"{path} ends before row .* cut short"):
            trainer.run_epoch(PRETRAINING, 0)
    done = subprocess.run([sys.executable, str(ROOT / "main" / "train_unsuper.py"), *FLAGS, "--feature_storage",
                           "mapped", "--model_dir", str(tmp_path / "run")], capture_output=True, text=True,
                          env={**os.environ, "CSP_DATA_DIR": str(data)}, timeout=300)
    error = [line for line in done.stderr.splitlines() if " - INFO - " not in line]
    assert done.returncode == 2 and len(error) == 1 and error[0].startswith("train_unsuper.py: error:"), done.stderr
    assert str(path) in error[0] and "truncated, or written to a full disk" in error[0]


def test_a_feature_file_replaced_while_in_use_is_named(tmp_path, feature_path):
    view = _file(feature_path)
    view.read(np.arange(3))
    replacement = tmp_path / "other.npy"
    np.save(replacement, np.zeros((ROWS, WIDTH), np.float32))
    os.replace(replacement, feature_path)  # same size and header: read silently before
    with pytest.raises(ValueError, match=f"{feature_path} was replaced or written to while in use"):
        view.read(np.arange(3))


def test_a_big_endian_file_streams_as_native_float32(tmp_path, feature_path):
    array = np.load(feature_path)
    np.save(tmp_path / "big.npy", array.astype(">f4"))
    streamed = StreamedFeatures(_file(tmp_path / "big.npy", dtype=">f4"), torch.device("cpu"))
    batch = next(streamed.batches(np.arange(ROWS), ROWS))
    np.testing.assert_array_equal(batch.numpy(), array)


@pytest.mark.parametrize("problem, write, storage", [
    ("holds no column", lambda path: np.save(path, np.zeros((ROWS, 0), np.float32)), "device"),
    ("Fortran .column. order", lambda path: np.save(path, np.asfortranarray(np.ones((ROWS, WIDTH), np.float32))),
     "mapped"),
    ("damaged", lambda path: (np.save(path, np.ones((ROWS, WIDTH), np.float32)),
                              open(path, "ab").write(b"\0" * 64)), "mapped"),
    ("is a folder", lambda path: path.mkdir(), "mapped")])
def test_feature_files_that_cannot_be_read_as_they_are_stored_are_refused(tmp_path, problem, write, storage):
    path = tmp_path / "feats.npy"
    write(path)
    with pytest.raises(ValueError, match=problem) as raised:
        data_arrays.read_rows("fmow", path, None, ROWS, None, tmp_path / "train.csv", "train image features", storage)
    assert str(path) in str(raised.value)
