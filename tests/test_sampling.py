"""Few-shot subsets (counts of the original, index files old and new) and the class-balanced epoch sampler."""
import json
import logging
import os
import pickle

import numpy as np
import pytest
import torch

from csp import arguments
from csp import sampling


def classes_from_counts(counts):
    """Class labels with the given per-class counts, interleaved (not sorted by class)."""
    labels = np.concatenate([np.full(n, int(c)) for c, n in counts.items()])
    return np.random.default_rng(0).permutation(labels)


def test_stratified_counts_match_the_original(golden_dir):
    golden = json.loads((golden_dir / "sampling.json").read_text())
    classes = classes_from_counts(golden["class_counts"])
    for ratio, expected in golden["samples_per_class"].items():
        idx = sampling.stratified_sample_indices(classes, float(ratio), np.random.default_rng(1))
        got = dict(zip(*np.unique(classes[idx], return_counts=True)))
        assert {str(c): int(n) for c, n in got.items()} == expected, ratio
        counts = np.array(list(golden["class_counts"].values()))
        assert sampling.sample_counts(counts, float(ratio)).tolist() == list(expected.values())


def test_stratified_indices_are_sorted_distinct_int64_and_seeded():
    classes = classes_from_counts({0: 40, 1: 7, 2: 100, 5: 3})
    a = sampling.stratified_sample_indices(classes, 0.2, np.random.default_rng(7))
    b = sampling.stratified_sample_indices(classes, 0.2, np.random.default_rng(7))
    c = sampling.stratified_sample_indices(classes, 0.2, np.random.default_rng(8))
    assert a.dtype == np.int64 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_random_subset_size_is_rounded_with_at_least_one():
    rng = np.random.default_rng(0)
    assert len(sampling.random_sample_indices(1000, 0.05, rng)) == 50
    assert len(sampling.random_sample_indices(10, 0.05, rng)) == 1
    assert len(sampling.random_sample_indices(30, 0.05, rng)) == 2  # round(1.5) = 2
    idx = sampling.random_sample_indices(100, 0.3, rng)
    assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0) and idx.max() < 100


@pytest.mark.parametrize("ratio", [0, 1, 1.5, -0.1])
def test_ratio_outside_zero_one_is_refused(ratio):
    with pytest.raises(ValueError, match="--train_sample_ratio must be in \\(0, 1\\)"):
        sampling.stratified_sample_indices(np.zeros(5, int), ratio, np.random.default_rng(0))


def test_reads_the_original_pickled_index_file(tmp_path):
    original = np.array([3, 8, 21, 40], dtype=np.int64)
    path = tmp_path / "train_sample_ratio0.050.npy"
    original.dump(path)  # what the original wrote: a pickle despite the name
    np.testing.assert_array_equal(sampling.read_index_file(path), original)


class _MakesAFolder:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_refuses_pickles_that_are_not_arrays(tmp_path):
    path = tmp_path / "evil.npy"
    path.write_bytes(pickle.dumps(_MakesAFolder(str(tmp_path / "made"))))
    with pytest.raises(ValueError, match="neither a .npy file nor the original's pickled index array"):
        sampling.read_index_file(path)
    assert not (tmp_path / "made").exists()


def test_written_index_files_are_real_npy(tmp_path):
    path = tmp_path / "a" / "b.npy"
    sampling.write_index_file(path, [5, 1, 2])
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), [5, 1, 2])
    assert np.load(path).dtype == np.int64


@pytest.fixture
def run_params(tmp_path, monkeypatch):
    data_root = tmp_path / "data"
    (data_root / "fmow").mkdir(parents=True)
    monkeypatch.setenv("CSP_DATA_DIR", str(data_root))

    def make(*flags):
        return arguments.default_params(["--dataset", "fmow", "--model_dir", str(tmp_path / "models"),
                                         "--train_sample_ratio", "0.05", *flags])
    return make


TRAIN_CLASSES = classes_from_counts({0: 10, 1: 30, 2: 50, 3: 70, 4: 5})


def test_new_subset_is_written_under_model_dir_not_the_data_folder(run_params, tmp_path):
    params = run_params()
    idx, path = sampling.train_sample_indices(params, TRAIN_CLASSES)
    assert path == str(tmp_path / "models/sample_idx/fmow/train_sample_ratio0.050.npy")
    assert len(idx) == 1 + 2 + 2 + 4 + 1
    np.testing.assert_array_equal(np.load(path, allow_pickle=False), idx)
    assert not (tmp_path / "data/fmow/sample_idx").exists()
    again, _ = sampling.train_sample_indices(run_params("--seed", "5"), TRAIN_CLASSES)
    np.testing.assert_array_equal(again, idx)  # -fix reuses the saved subset


def test_published_subset_of_the_bundle_is_reused(run_params, tmp_path):
    published = np.array([0, 4, 9, 100], dtype=np.int64)
    folder = tmp_path / "data/fmow/sample_idx"
    folder.mkdir()
    published.dump(folder / "train_sample_ratio0.050.npy")
    idx, path = sampling.train_sample_indices(run_params(), TRAIN_CLASSES)
    np.testing.assert_array_equal(idx, published)
    assert path == str(folder / "train_sample_ratio0.050.npy")


def test_birdsnap_subset_lives_in_a_meta_type_folder(tmp_path, monkeypatch):
    (tmp_path / "data/birdsnap/sample_idx/orig_meta").mkdir(parents=True)
    monkeypatch.setenv("CSP_DATA_DIR", str(tmp_path / "data"))
    np.arange(3).dump(tmp_path / "data/birdsnap/sample_idx/orig_meta/train_sample_ratio0.100-stratified-fix.npy")
    np.arange(3).dump(tmp_path / "data/birdsnap/sample_idx/orig_meta/train_sample_ratio0.100.npy")
    params = arguments.default_params(["--dataset", "birdsnap", "--meta_type", "orig_meta", "--train_sample_ratio",
                                       "0.1", "--model_dir", str(tmp_path / "models")])
    idx, path = sampling.train_sample_indices(params, np.zeros(10, int))
    assert path.endswith("birdsnap/sample_idx/orig_meta/train_sample_ratio0.100.npy")
    np.testing.assert_array_equal(idx, np.arange(3))


def test_random_methods_draw_with_the_seed_and_tag_the_file(run_params, tmp_path):
    idx_a, path = sampling.train_sample_indices(run_params("--train_sample_method", "random-random"), TRAIN_CLASSES)
    idx_b, _ = sampling.train_sample_indices(run_params("--train_sample_method", "random-random"), TRAIN_CLASSES)
    idx_c, _ = sampling.train_sample_indices(run_params("--train_sample_method", "random-random", "--seed", "1"),
                                             TRAIN_CLASSES)
    assert path.endswith("train_sample_ratio0.050-random-random.npy")
    assert len(idx_a) == round(len(TRAIN_CLASSES) * 0.05)
    np.testing.assert_array_equal(idx_a, idx_b)
    assert not np.array_equal(idx_a, idx_c)
    idx_s, path_s = sampling.train_sample_indices(run_params("--train_sample_method", "stratified-random"),
                                                  TRAIN_CLASSES)
    assert path_s.endswith("train_sample_ratio0.050-stratified-random.npy") and len(idx_s) == 10


def test_index_file_of_other_data_is_refused(run_params, tmp_path):
    """The bundle's published subset is never to be deleted: the fix points at the data or another method."""
    folder = tmp_path / "data/fmow/sample_idx"
    folder.mkdir()
    np.array([1, 5000]).dump(folder / "train_sample_ratio0.050.npy")
    with pytest.raises(ValueError, match=r"train_sample_ratio0\.050\.npy does not fit this training set of 165 "
                                         r"samples.*published subset.*CSP_DATA_DIR") as err:
        sampling.train_sample_indices(run_params(), TRAIN_CLASSES)
    assert "delete" not in str(err.value)


def record_file(tmp_path):
    return tmp_path / "models/sample_idx/fmow/train_sample_ratio0.050.json"


def test_a_written_subset_records_what_it_was_drawn_from(run_params, tmp_path):
    sampling.train_sample_indices(run_params("--seed", "3"), TRAIN_CLASSES)
    record = json.loads(record_file(tmp_path).read_text())
    assert record["num_train"] == len(TRAIN_CLASSES) and record["num_classes"] == 5
    assert (record["ratio"], record["method"], record["seed"]) == (0.05, "stratified-fix", 3)
    assert record["classes_fingerprint"] == sampling.classes_fingerprint(TRAIN_CLASSES)
    assert record["classes_fingerprint"] != sampling.classes_fingerprint(TRAIN_CLASSES[::-1])


@pytest.mark.parametrize("other, differs", [
    (classes_from_counts({0: 10, 1: 30, 2: 50, 3: 70, 4: 25}), ["185 training rows", "165"]),
    (classes_from_counts({c: 8 for c in range(20)} | {20: 5}), ["training classes", "21 classes", "5 classes"]),
    (TRAIN_CLASSES[::-1], ["other class ids per row"]),
])
def test_a_subset_written_for_other_data_is_refused(run_params, tmp_path, other, differs):
    """The walkthrough: a subset drawn for one fmow set (62 classes) was reused silently for another (20 classes)."""
    sampling.train_sample_indices(run_params(), TRAIN_CLASSES)
    with pytest.raises(ValueError) as err:
        sampling.train_sample_indices(run_params(), other)
    message = str(err.value)
    for part in (str(tmp_path / "models/sample_idx/fmow/train_sample_ratio0.050.npy"), "delete", "--model_dir",
                 *differs):
        assert part in message


def test_a_subset_is_reused_with_another_seed_but_not_with_an_unreadable_record(run_params, tmp_path):
    idx, _ = sampling.train_sample_indices(run_params(), TRAIN_CLASSES)
    again, _ = sampling.train_sample_indices(run_params("--seed", "9"), TRAIN_CLASSES)
    np.testing.assert_array_equal(again, idx)
    record_file(tmp_path).write_text("{not json")
    with pytest.raises(ValueError, match=r"train_sample_ratio0\.050\.json is not a record .*delete"):
        sampling.train_sample_indices(run_params(), TRAIN_CLASSES)


def test_random_methods_redraw_and_rewrite_the_record(run_params, tmp_path):
    flags = ("--train_sample_method", "stratified-random")
    sampling.train_sample_indices(run_params(*flags), TRAIN_CLASSES)
    other = classes_from_counts({0: 40, 1: 40})
    idx, path = sampling.train_sample_indices(run_params(*flags), other)
    record = json.loads((tmp_path / "models/sample_idx/fmow/train_sample_ratio0.050-stratified-random.json").read_text())
    assert record["num_train"] == 80 and len(idx) == 4 and idx.max() < 80


def test_a_subset_without_a_record_is_checked_against_the_stratified_counts(run_params, tmp_path, caplog):
    """Files of the bundle (and of earlier versions) have no record: the counts per class are checked instead."""
    folder = tmp_path / "data/fmow/sample_idx"
    folder.mkdir()
    np.arange(10).dump(folder / "train_sample_ratio0.050.npy")
    with caplog.at_level(logging.WARNING, logger="csp.sampling"):
        idx, _ = sampling.train_sample_indices(run_params(), TRAIN_CLASSES)
    np.testing.assert_array_equal(idx, np.arange(10))
    assert "train_sample_ratio0.050.npy" in caplog.text and "per class" in caplog.text
    assert "stratified" in caplog.text and "other data" in caplog.text
    caplog.clear()
    fitting = sampling.stratified_sample_indices(TRAIN_CLASSES, 0.05, np.random.default_rng(2))
    fitting.dump(folder / "train_sample_ratio0.050.npy")
    with caplog.at_level(logging.WARNING, logger="csp.sampling"):
        idx, _ = sampling.train_sample_indices(run_params(), TRAIN_CLASSES)
    np.testing.assert_array_equal(idx, fitting)
    assert caplog.text == ""


def test_a_random_subset_without_a_record_is_checked_against_the_random_size(run_params, tmp_path, caplog):
    folder = tmp_path / "data/fmow/sample_idx"
    folder.mkdir()
    np.arange(20).dump(folder / "train_sample_ratio0.050-random-fix.npy")
    with caplog.at_level(logging.WARNING, logger="csp.sampling"):
        sampling.train_sample_indices(run_params("--train_sample_method", "random-fix"), TRAIN_CLASSES)
    assert "holds 20 indices, the random rule takes 8 of these 165 training rows" in caplog.text


def test_unknown_method_is_refused(run_params):
    with pytest.raises(ValueError, match="--train_sample_method 'stratified' is unknown; valid values: stratified-fix"):
        sampling.train_sample_indices(run_params("--train_sample_method", "stratified"), TRAIN_CLASSES)


def test_balanced_epoch_caps_each_class_and_shuffles():
    counts = {0: 250, 3: 7, 4: 100, 9: 101, 11: 1}
    classes = torch.from_numpy(classes_from_counts(counts))
    idx = sampling.balanced_epoch_indices(classes, 100, torch.Generator().manual_seed(0))
    assert idx.dtype == torch.int64 and idx.device == classes.device
    assert len(torch.unique(idx)) == len(idx) == sum(min(n, 100) for n in counts.values())
    got = dict(zip(*[t.tolist() for t in torch.unique(classes[idx], return_counts=True)]))
    assert got == {c: min(n, 100) for c, n in counts.items()}
    assert not torch.equal(classes[idx], torch.sort(classes[idx]).values)  # classes interleaved


def test_balanced_epoch_is_reproducible_and_varies_by_epoch():
    classes = torch.from_numpy(classes_from_counts({0: 300, 1: 300}))
    gen = torch.Generator().manual_seed(4)
    first, second = (sampling.balanced_epoch_indices(classes, 50, gen) for _ in range(2))
    again = sampling.balanced_epoch_indices(classes, 50, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, second)


def test_balanced_epoch_rejects_a_zero_cap():
    with pytest.raises(ValueError, match="--max_num_exs_per_class must be at least 1"):
        arguments.default_params(["--max_num_exs_per_class", "0"])


def test_published_positions_are_translated_through_the_original_rows(run_params, tmp_path, caplog):
    """The bundle's positions address the original's rows; this project also drops original row 3 (say, lat 95):
    every published position after it names the row one earlier here, and row 3 itself is left out and counted."""
    folder = tmp_path / "data/fmow/sample_idx"
    folder.mkdir()
    np.array([1, 3, 5, 164]).dump(folder / "train_sample_ratio0.050.npy")
    original_rows = np.concatenate([[0, 1, 2, -1], np.arange(3, len(TRAIN_CLASSES))])
    with caplog.at_level(logging.WARNING, logger="csp.sampling"):
        idx, _ = sampling.train_sample_indices(run_params(), TRAIN_CLASSES[:-1], original_rows[:-1])
    np.testing.assert_array_equal(idx, [1, 4, 163])
    assert "1 of its 4 members are training rows that this project drops" in caplog.text
    assert "delete" not in caplog.text


def test_published_positions_without_dropped_rows_are_used_as_they_are(run_params, tmp_path):
    folder = tmp_path / "data/fmow/sample_idx"
    folder.mkdir()
    np.array([2, 7]).dump(folder / "train_sample_ratio0.050.npy")
    idx, _ = sampling.train_sample_indices(run_params(), TRAIN_CLASSES, np.arange(len(TRAIN_CLASSES)))
    np.testing.assert_array_equal(idx, [2, 7])
