"""Training features on the device or left in their file and read per batch: the same rows either way."""
import numpy as np
import pytest
import torch

from csp import arguments
from csp import datasets
from csp import feature_store
from csp.feature_store import FileRows, MappedFeatures, training_features
from csp.trainer import PRETRAINING, Trainer


@pytest.fixture
def feature_file(tmp_path):
    """A (50, 4) float32 .npy whose row i is [i, i, i, i] · (1, 2, 3, 4), opened as a memory map."""
    path = tmp_path / "feats.npy"
    np.save(path, np.arange(50, dtype=np.float32)[:, None] * np.float32([1, 2, 3, 4]))
    return np.load(path, mmap_mode="c")


def test_mapped_features_give_the_rows_asked_for_in_their_order(feature_file):
    rows = torch.tensor([7, 3, 3, 49, 0])
    for source in (feature_file, np.array(feature_file)):
        batch = MappedFeatures(source, torch.device("cpu"))[rows]
        assert batch.dtype == torch.float32
        np.testing.assert_array_equal(batch.numpy(), feature_file[rows.numpy()])


def test_file_rows_read_only_the_kept_rows(feature_file):
    kept = np.array([1, 2, 5, 40, 41])
    view = FileRows(feature_file, kept)
    assert view.shape == (5, 4) and len(view) == 5
    np.testing.assert_array_equal(np.asarray(view), feature_file[kept])
    batch = MappedFeatures(view, torch.device("cpu"))[torch.tensor([4, 0])]
    np.testing.assert_array_equal(batch.numpy(), feature_file[[41, 1]])


def test_auto_keeps_an_array_on_the_cpu_without_copy_and_a_file_subset_in_its_file(feature_file):
    cpu = torch.device("cpu")
    whole = training_features(feature_file, cpu)
    assert torch.is_tensor(whole) and np.shares_memory(whole.numpy(), feature_file)
    assert isinstance(training_features(FileRows(feature_file, [0, 1]), cpu), MappedFeatures)
    assert isinstance(training_features(feature_file, cpu, "mapped"), MappedFeatures)
    forced = training_features(FileRows(feature_file, [3, 9]), cpu, "device")
    np.testing.assert_array_equal(forced.numpy(), feature_file[[3, 9]])
    with pytest.raises(ValueError, match="--feature_storage 'disk'"):
        training_features(feature_file, cpu, "disk")


def test_loader_leaves_a_subset_in_the_file_when_it_does_not_fit_or_when_asked():
    assert feature_store.stays_in_file("mapped", 1) and not feature_store.stays_in_file("device", 1 << 60)
    assert feature_store.stays_in_file("auto", 1 << 60) and not feature_store.stays_in_file("auto", 1)


@pytest.fixture(scope="module")
def fmow_dir(synthetic_data_dir):
    return synthetic_data_dir("fmow", num_train=300, num_val=60, num_classes=8, feat_dim=16)


def _pretraining_epoch(tmp_path, storage):
    flags = ("--dataset fmow --device cpu --inat2018_resolution pretrain --frequency_num 4 --hidden_dim 32 "
             "--num_filts 16 --unsuper_loss contsoftmax --do_unsuper_train T --batch_size 32").split()
    params = arguments.default_params(flags + ["--feature_storage", storage, "--model_dir", str(tmp_path / storage)])
    with Trainer(params, console=False) as trainer:
        return type(trainer.train_feats), trainer.run_epoch(PRETRAINING, 0)


def test_a_run_with_mapped_features_trains_as_with_features_in_memory(tmp_path, monkeypatch, fmow_dir):
    monkeypatch.setenv("CSP_DATA_DIR", str(fmow_dir))
    kind, mapped = _pretraining_epoch(tmp_path, "mapped")   # some rows dropped: left in the file, read per batch
    assert kind is MappedFeatures
    kind, in_memory = _pretraining_epoch(tmp_path, "device")
    assert kind is torch.Tensor and mapped == in_memory
    params = arguments.default_params(["--dataset", "fmow", "--inat2018_resolution", "pretrain",
                                       "--feature_storage", "mapped"])
    data = datasets.load_dataset(params, "val", True, True, load_cnn_features_train=True)
    assert isinstance(data.train.feats, FileRows) and len(data.train.feats) == len(data.train)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mapped_features_reach_the_gpu_through_pinned_buffers_in_turn(feature_file):
    device = torch.device("cuda", 0)
    features = MappedFeatures(feature_file, device)
    batches = [features[torch.tensor(rows, device=device)] for rows in ([1, 2], [3, 4, 5], [6])]
    torch.cuda.synchronize()
    for batch, rows in zip(batches, ([1, 2], [3, 4, 5], [6])):
        assert batch.device == device
        np.testing.assert_array_equal(batch.cpu().numpy(), feature_file[rows])
    on_gpu = training_features(feature_file, device, "device")
    np.testing.assert_array_equal(on_gpu.cpu().numpy(), feature_file)
