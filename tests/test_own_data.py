"""Your own geotagged images: drawn images + a CSV → extract_features.py → train_unsuper.py --dataset custom.

The task needs location: an image's colour tells red from blue, only its place (west or east) tells the class
within a colour, so the image-only probe is stuck near 50 % and the location prior lifts it.
"""
import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image

from csp import arguments
from csp import backbones
from csp import baselines
from csp import extract_features
from csp import feature_store
from csp import models
from csp import own_data
from csp import plots
from csp import train_unsuper
from csp.trainer import FINETUNING, PRETRAINING

NUM_IMAGES = 200
CLASSES = ("red_west", "red_east", "blue_west", "blue_east")
FLAGS = ("--dataset custom --device cpu --spa_enc_type gridcell --frequency_num 8 --max_radius 360 --min_radius 1 "
         "--hidden_dim 64 --num_filts 32 --spa_f_act gelu --unsuper_loss contsoftmax --simcse_weight 1 "
         "--unsuper_lr 0.001 --lr 0.01 --batch_size 8 --eval_frequency 100 "
         "--do_unsuper_train T --do_super_train T").split()


def draw_images(folder, rng):
    """NUM_IMAGES 24 × 24 PNGs and their table: class = colour × side (lon < 0: west); ~15 % of the training rows
    unlabelled; a few rows without location; half the rows with a split, the rest drawn by the loader."""
    folder.mkdir(parents=True)
    classes = rng.integers(0, len(CLASSES), NUM_IMAGES)
    lon = np.where(classes % 2 == 0, rng.uniform(-120, -60, NUM_IMAGES), rng.uniform(60, 120, NUM_IMAGES))
    lat = rng.uniform(-40, 40, NUM_IMAGES)
    rows = []
    for i, c in enumerate(classes):
        colour = np.array([200, 40, 40] if c < 2 else [40, 40, 200])
        pixels = np.clip(colour + rng.normal(0, 40, (24, 24, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
        rows.append({"image": f"imgs/{i:03d}.png", "lon": round(lon[i], 4), "lat": round(lat[i], 4),
                     "label": CLASSES[c], "user": f"u{i % 7}", "date": f"2021-{1 + i % 12:02d}-15",
                     "split": "" if i % 2 else ("val" if i % 10 == 0 else "train")})
    table = pd.DataFrame(rows)
    table.loc[table.index % 7 == 3, "label"] = ""  # unlabelled (pre-training only)
    table.loc[(table.index % 7 == 3) & (table["split"] == "val"), "split"] = "train"
    table.loc[[5, 11], ["lon", "lat"]] = np.nan
    return table


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    table = draw_images(root / "imgs", np.random.default_rng(0))
    table.to_csv(root / "obs.csv", index=False)
    extract_features.main(["--images", str(root / "obs.csv"), "--out", str(root / "out" / "feats.npy"),
                           "--image_size", "32", "--num_workers", "0", "--batch_size", "50"])
    return root


def run(own, model_dir, *extra):
    return train_unsuper.main(FLAGS + ["--data_table", str(own / "obs.csv"), "--features",
                                       str(own / "out" / "feats.npy"), "--model_dir", str(model_dir), *extra])


def top1(results, method):
    return [e for e in results["evaluations"] if e["method"] == method and e["epoch"] is None][-1]["splits"][0]["top1"]


@pytest.fixture(scope="module")
def trained(own, tmp_path_factory):
    return run(own, tmp_path_factory.mktemp("run"), "--num_epochs_unsuper", "3", "--num_epochs", "30")


def test_extraction_writes_aligned_rows_and_nothing_into_the_image_folder(own):
    feats = np.load(own / "out" / "feats.npy")
    rows = pd.read_csv(own / "out" / "feats.rows.csv")
    assert feats.shape == (NUM_IMAGES, 1280) and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert rows["image"].tolist() == pd.read_csv(own / "obs.csv")["image"].tolist()
    assert sorted(p.name for p in (own / "imgs").iterdir()) == [f"{i:03d}.png" for i in range(NUM_IMAGES)]


def test_location_prior_beats_the_image_probe_on_a_task_that_needs_location(trained):
    assert trained["phases"][PRETRAINING]["epochs_done"] == 3
    assert trained["phases"][FINETUNING]["epochs_done"] == 30
    image_only, combined = top1(trained, "no_prior"), top1(trained, "location_prior")
    assert image_only < 70  # colour alone cannot tell west from east
    assert combined > image_only + 20
    results = json.loads(open(trained["files"]["results"]).read())
    assert results["params"]["dataset"] == "custom" and results["params"]["num_classes"] == len(CLASSES)


def test_drawn_splits_go_beside_the_run_and_fine_tuning_uses_labelled_rows_only(own, tmp_path):
    few = run(own, tmp_path, "--num_epochs_unsuper", "1", "--num_epochs", "1", "--train_sample_ratio", "0.5")
    splits = pd.read_csv(tmp_path / "splits" / "obs.splits.csv", keep_default_na=False)
    table = pd.read_csv(own / "obs.csv", keep_default_na=False)
    assert splits["image"].tolist() == table["image"].tolist()
    given = table["split"] != ""
    assert (splits["split"][given] == table["split"][given]).all() and splits["drawn"].tolist() == (~given).tolist()
    assert set(splits["split"][table["label"] == ""]) == {"train"}
    assert not (own / "splits").exists() and not (own / "imgs" / "splits").exists()
    subset = np.load(few["files"]["train_sample_idx_file"])
    num_labelled_train = ((splits["split"] == "train") & (table["label"] != "") & (table["lon"] != "")).sum()
    assert subset.max() < num_labelled_train and len(subset) == pytest.approx(num_labelled_train / 2, abs=3)


@pytest.mark.parametrize("baseline", ["grid", "nn_knn", "train_freq"])
def test_baselines_are_fitted_on_the_labelled_training_rows(own, tmp_path, monkeypatch, baseline):
    fitted, make = [], baselines.make_baseline

    def recording(name, locs, classes, *rest):
        fitted.append(classes)
        return make(name, locs, classes, *rest)

    monkeypatch.setattr(baselines, "make_baseline", recording)
    for extra in ([], ["--baseline_full_train", "T"]):  # the few-shot subset, then every labelled row
        results = run(own, tmp_path, "--spa_enc_type", baseline, "--unsuper_loss", "none", "--train_sample_ratio",
                      "0.5", *extra)
        assert 0 <= top1(results, baseline) <= 100
    splits = pd.read_csv(tmp_path / "splits" / "obs.splits.csv", keep_default_na=False)
    table = pd.read_csv(own / "obs.csv", keep_default_na=False)
    labelled_train = ((splits["split"] == "train") & (table["label"] != "") & (table["lon"] != "")).sum()
    assert all((classes >= 0).all() for classes in fitted)
    assert len(fitted[0]) == pytest.approx(labelled_train / 2, abs=3) and len(fitted[1]) == labelled_train


def test_the_checkpoint_works_with_load_location_encoder_and_plots(trained, tmp_path):
    encoder = models.load_location_encoder(trained["files"]["model_file_name"])
    prior = encoder.class_probabilities([[-90.0, 0.0], [90.0, 0.0]])
    assert prior.shape == (2, len(CLASSES))
    west, east = sorted(CLASSES).index("red_west"), sorted(CLASSES).index("red_east")  # class ids: labels sorted
    assert prior[0, west] > prior[0, east] and prior[1, east] > prior[1, west]
    plots.main(["map", "--checkpoint", trained["files"]["model_file_name"], "--class_id", "1",
                "--out", str(tmp_path / "map.png"), "--device", "cpu"])
    plots.main(["clusters", "--checkpoint", trained["files"]["unsuper_model_file_name"], "--checkpoint",
                trained["files"]["model_file_name"], "--out", str(tmp_path / "clusters.png"), "--step", "10",
                "--max_points", "200", "--device", "cpu"])
    assert (tmp_path / "map.png").stat().st_size > 0 and (tmp_path / "clusters.png").stat().st_size > 0


def test_a_killed_run_resumes(own, trained, tmp_path):
    load = ["--load_unsuper_model", "T", "--load_super_model", "T"]
    run(own, tmp_path, "--num_epochs_unsuper", "2", "--do_super_train", "F")  # stopped after pre-training epoch 1
    run(own, tmp_path, "--num_epochs_unsuper", "3", "--num_epochs", "12", *load)  # stopped in fine-tuning
    resumed = run(own, tmp_path, "--num_epochs_unsuper", "3", "--num_epochs", "30", *load)
    assert resumed["phases"][FINETUNING]["epochs_run"] == 18
    assert top1(resumed, "location_prior") == top1(trained, "location_prior")
    assert top1(resumed, "no_prior") == top1(trained, "no_prior")


def test_a_killed_extraction_resumes_where_it_stopped(own, tmp_path, monkeypatch):
    out = tmp_path / "feats.npy"
    args = ["--images", str(tmp_path / "obs.csv"), "--image_root", str(own), "--out", str(out), "--image_size", "32",
            "--num_workers", "0", "--batch_size", "20"]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    table = pd.read_csv(own / "obs.csv").iloc[:60]
    table.loc[30, "image"] = str(bad)
    table.to_csv(tmp_path / "obs.csv", index=False)
    monkeypatch.setattr(extract_features, "SAVE_INTERVAL_S", 0.0)
    model = backbones.load(backbones.LITE0)

    class Dying(torch.nn.Module):
        """The backbone, killed at its third call (the width probe, then two batches)."""
        calls = 0

        def forward(self, x):
            Dying.calls += 1
            if Dying.calls == 3:
                raise KeyboardInterrupt
            return model(x)

    monkeypatch.setattr(backbones, "load", lambda *a: Dying())
    with pytest.raises(KeyboardInterrupt):
        extract_features.main(args)
    assert json.loads((tmp_path / "feats.progress.json").read_text())["rows_done"] == 20
    seen = []

    class Counting(torch.nn.Module):
        def forward(self, x):
            seen.append(len(x))
            return model(x)

    monkeypatch.setattr(backbones, "load", lambda *a: Counting())
    done = extract_features.main(args)
    assert sum(seen) == 40  # only the rows after the last saved progress
    assert done["unreadable"] == 1
    feats = np.load(out)
    assert np.isnan(feats[30]).all() and np.isfinite(np.delete(feats, 30, axis=0)).all()
    whole = np.load(own / "out" / "feats.npy")[:60]
    np.testing.assert_allclose(np.delete(feats, 30, axis=0), np.delete(whole, 30, axis=0), rtol=1e-4, atol=1e-4)
    report = pd.read_csv(tmp_path / "feats.unreadable.csv")
    assert report[["row", "image"]].values.tolist() == [[30, str(bad)]]
    # the custom dataset leaves the unreadable row out
    obs = own_data.Observations(tmp_path / "obs.csv")
    assert own_data.FeatureFile(out, obs).unreadable.nonzero()[0].tolist() == [30]


def test_torchvision_backbone_with_a_local_state_dict(tmp_path):
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), weights)
    model = backbones.load("resnet18", weights)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 512)
    transform, crop, resize = backbones.transform("resnet50")
    assert (crop, resize) == (224, 232) and transform(torch.zeros(3, 300, 260, dtype=torch.uint8)).shape == (3, 224, 224)
    with pytest.raises(ValueError, match="needs --weights"):
        backbones.load("resnet18")
    with pytest.raises(ValueError, match="does not fit"):
        backbones.load("resnet34", weights)
    with pytest.raises(ValueError, match="not a torchvision classification model"):
        backbones.load("no_such_net", weights)


def test_an_extraction_that_reads_no_image_is_an_error(own, tmp_path):
    with pytest.raises(ValueError, match="none of the 200 images could be read"):
        extract_features.main(["--images", str(own / "obs.csv"), "--image_root", str(tmp_path), "--out",
                               str(tmp_path / "f.npy"), "--image_size", "32", "--num_workers", "0"])


def write(tmp_path, table, name="obs.csv"):
    path = tmp_path / name
    pd.DataFrame(table).to_csv(path, index=False)
    return path


GOOD = {"image": ["a.png", "b.png", "c.png"], "lon": [10.0, 20.0, -30.0], "lat": [5.0, -5.0, 45.0],
        "label": ["x", "y", "x"]}


@pytest.mark.parametrize("change, message", [
    ({"lat": None}, "missing column\\(s\\) 'lat'"),
    ({"lat": [5.0, 95.0, 45.0]}, "column 'lat', rows 1: out of \\[-90, 90\\]"),
    ({"lon": [10.0, 200.0, -30.0]}, "column 'lon', rows 1: out of \\[-180, 180\\]"),
    ({"lon": [5.0, -5.0, 45.0], "lat": [10.0, 120.0, -130.0]}, "rows 1, 2: .*look swapped"),
    ({"lon": [5.0, -5.0, 45.0], "lat": [10.0, 120.0, 40.0]}, "rows 1: .*\\(if lon and lat are swapped: the table"),
    ({"lon": ["10", "ten", "-30"]}, "column 'lon', rows 1: not a number"),
    ({"image": ["a.png", "b.png", "a.png"]}, "column 'image', rows 0, 2: duplicated image ids"),
    ({"split": ["train", "valid", "val"]}, "column 'split', rows 1: unknown split 'valid'"),
    ({"label": ["x", "", "y"], "split": ["train", "val", "val"]}, "rows 1: val / test rows without a label"),
])
def test_bad_tables_name_the_file_the_column_and_the_rows(tmp_path, change, message):
    table = {**GOOD, **change}
    path = write(tmp_path, {k: v for k, v in table.items() if v is not None})
    with pytest.raises(ValueError, match=message) as err:
        own_data.Observations(path)
    assert str(path) in str(err.value)


def test_labels_outside_the_label_set_and_feature_files_of_other_tables(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("x\nz\n")
    with pytest.raises(ValueError, match="column 'label', rows 1: labels not in the label set"):
        own_data.Observations(write(tmp_path, GOOD), labels)
    obs = own_data.Observations(write(tmp_path, GOOD))
    assert obs.class_names == ["x", "y"] and obs.classes.tolist() == [0, 1, 0]
    feats = tmp_path / "feats.npy"
    np.save(feats, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="2 rows for the 3 rows of"):
        own_data.FeatureFile(feats, obs)
    pd.DataFrame({"row": [0, 1], "image": ["a.png", "zzz.png"]}).to_csv(tmp_path / "feats.rows.csv", index=False)
    with pytest.raises(ValueError, match="column 'image', rows 1, 2: images not in the feature file"):
        own_data.FeatureFile(feats, obs)


def test_bad_input_on_the_command_line_exits_2_without_traceback(own, tmp_path, monkeypatch, capsys):
    table = pd.read_csv(own / "obs.csv")
    table.loc[3, "lat"] = 123.0
    table.to_csv(tmp_path / "obs.csv", index=False)
    monkeypatch.setattr(sys, "argv", ["train_unsuper.py", "--dataset", "custom", "--data_table",
                                      str(tmp_path / "obs.csv"), "--features", str(own / "out" / "feats.npy"),
                                      "--model_dir", str(tmp_path / "m")])
    with pytest.raises(SystemExit) as stopped:
        arguments.run_command(train_unsuper.main)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and "column 'lat', rows 3: out of [-90, 90]" in error


def _oracle(own):
    """(table, class names, predictions): your classifier's probabilities, certain and right on the labelled rows."""
    table = pd.read_csv(own / "obs.csv", keep_default_na=False)
    names = sorted(CLASSES)
    preds = np.full((len(table), len(names)), 1 / len(names), np.float32)
    labelled = np.flatnonzero(table["label"] != "")
    preds[labelled] = np.eye(len(names), dtype=np.float32)[[names.index(x) for x in table["label"][labelled]]]
    return table, names, preds


def _own_run(own, model_dir, preds_path, *extra):
    return run(own, model_dir, "--unsuper_loss", "none", "--num_epochs", "1", "--image_predictions", str(preds_path),
               *extra)


def test_your_own_classifiers_predictions_replace_the_probe(own, tmp_path):
    table, names, preds = _oracle(own)
    np.save(tmp_path / "preds.npy", preds)
    assert top1(_own_run(own, tmp_path / "m", tmp_path / "preds.npy"), "no_prior") == 100.0
    # the same as a table whose class columns come in another order, matched by name
    frame = pd.DataFrame(preds, columns=names)[names[::-1]]
    frame.insert(0, "image", table["image"])
    frame.sample(frac=1, random_state=0).to_csv(tmp_path / "preds.csv", index=False)
    assert top1(_own_run(own, tmp_path / "m2", tmp_path / "preds.csv"), "no_prior") == 100.0


def test_logits_are_taken_through_the_softmax_when_you_say_so(own, tmp_path):
    _, _, preds = _oracle(own)
    logits = np.log(np.clip(preds, 1e-6, None)) + 3.0   # any shift: the softmax gives the probabilities back
    np.save(tmp_path / "logits.npy", logits.astype(np.float32))
    np.save(tmp_path / "preds.npy", preds)
    by_logits = _own_run(own, tmp_path / "a", tmp_path / "logits.npy", "--image_predictions_kind", "logits")
    by_probs = _own_run(own, tmp_path / "b", tmp_path / "preds.npy")
    for method in ("no_prior", "location_prior"):
        assert top1(by_logits, method) == top1(by_probs, method)
    with pytest.raises(ValueError, match=r"rows 0, 1, 2, .*negative values; .*--image_predictions_kind logits"):
        _own_run(own, tmp_path / "c", tmp_path / "logits.npy")   # log-probabilities taken for probabilities


def _nan_row(preds):
    preds[5, 1] = np.nan
    return preds


def _log_probabilities(preds):
    return np.log(np.clip(preds, 1e-6, None))


def _not_summing_to_one(preds):
    preds[7] *= 0.5
    return preds


def _infinite_logit(preds):
    preds[2, 0] = np.inf
    return preds


BAD_PREDICTIONS = [  # (name, change of the right predictions, extra flags, words of the one-line error)
    ("NaN", _nan_row, [], "rows 5: NaN, infinite or empty values"),
    ("log-probabilities", _log_probabilities, [], "negative values; probabilities are >= 0"),
    ("rows not summing to 1", _not_summing_to_one, [], "rows 7: rows not summing to 1"),
    ("infinite logit", _infinite_logit, ["--image_predictions_kind", "logits"], "rows 2: NaN, infinite"),
    ("too few columns", lambda preds: preds[:, :3], [], "one column per class of the label set"),
    ("too few rows", lambda preds: preds[:-1], [], "one row per row of"),
    ("one column per table row", lambda preds: preds.T, [], "expected (")]


@pytest.mark.parametrize("name, change, flags, words", BAD_PREDICTIONS, ids=[case[0] for case in BAD_PREDICTIONS])
def test_bad_predictions_stop_the_run_with_one_line_and_write_nothing(own, tmp_path, monkeypatch, capsys, name,
                                                                       change, flags, words):
    _, _, preds = _oracle(own)
    np.save(tmp_path / "preds.npy", change(preds.copy()))
    monkeypatch.setattr(sys, "argv", ["train_unsuper.py", *FLAGS, "--data_table", str(own / "obs.csv"), "--features",
                                      str(own / "out" / "feats.npy"), "--model_dir", str(tmp_path / "m"),
                                      "--unsuper_loss", "none", "--num_epochs", "1", "--image_predictions",
                                      str(tmp_path / "preds.npy"), *flags])
    with pytest.raises(SystemExit) as stopped:
        arguments.run_command(train_unsuper.main)
    error = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and "Traceback" not in "\n".join(error)
    assert error[-1].startswith("train_unsuper.py: error: --image_predictions") and words in error[-1]
    assert not [path for path in (tmp_path / "m").rglob("*") if path.suffix in (".tar", ".json", ".npz")]


def test_prediction_tables_must_name_the_label_sets_classes(own, tmp_path):
    table, names, preds = _oracle(own)
    frame = pd.DataFrame(preds, columns=["red_west", "red_east", "blue_west", "green"])
    frame.insert(0, "image", table["image"])
    frame.to_csv(tmp_path / "preds.csv", index=False)
    with pytest.raises(ValueError, match="missing: blue_east; not in the label set: green"):
        _own_run(own, tmp_path / "m", tmp_path / "preds.csv")
    frame.drop(index=4).to_csv(tmp_path / "preds.csv", index=False)
    with pytest.raises(ValueError, match="no predictions for these images"):
        _own_run(own, tmp_path / "m", tmp_path / "preds.csv")


def test_a_parquet_table_reads_as_the_csv(tmp_path):
    write(tmp_path, GOOD)
    pd.DataFrame(GOOD).to_parquet(tmp_path / "obs.parquet")
    a, b = own_data.Observations(tmp_path / "obs.csv"), own_data.Observations(tmp_path / "obs.parquet")
    assert a.ids.tolist() == b.ids.tolist() and a.classes.tolist() == b.classes.tolist()
    np.testing.assert_array_equal(a.locs, b.locs)


def test_consecutive_feature_rows_stay_memory_mapped_and_others_are_gathered(tmp_path):
    obs = own_data.Observations(write(tmp_path, GOOD))
    feats = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "feats.npy", feats)
    pd.DataFrame({"row": [0, 1, 2], "image": ["c.png", "a.png", "b.png"]}).to_csv(tmp_path / "feats.rows.csv",
                                                                                  index=False)
    features = own_data.FeatureFile(tmp_path / "feats.npy", obs)  # table rows a, b, c = file rows 1, 2, 0
    mapped = features.read(np.array([0, 1]), "train")
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, feats[[1, 2]])
    np.testing.assert_array_equal(features.read(np.array([2, 0]), "val"), feats[[0, 1]])


def test_dates_are_fractions_of_the_year(tmp_path):
    dates = ["2021-01-01", "2020-07-02T12:00", ""]
    obs = own_data.Observations(write(tmp_path, {**GOOD, "date": dates}))
    np.testing.assert_allclose(obs.dates[:2], [0.0, (183 + 0.5) / 366], atol=1e-6)
    assert np.isnan(obs.dates[2])
    table = pd.DataFrame({**GOOD, "date": pd.to_datetime(["2021-01-01", "2021-07-02", None])})
    table.to_parquet(tmp_path / "obs.parquet")
    np.testing.assert_allclose(own_data.Observations(tmp_path / "obs.parquet").dates[:2], [0.0, 182 / 365], atol=1e-6)
    with pytest.raises(ValueError, match="column 'date', rows 1: not a date"):
        own_data.Observations(write(tmp_path, {**GOOD, "date": ["2021-01-01", "soon", ""]}))


def test_feature_storage_mapped_leaves_the_training_features_in_the_file(own, tmp_path):
    params = arguments.default_params(["--dataset", "custom", "--data_table", str(own / "obs.csv"), "--features",
                                       str(own / "out" / "feats.npy"), "--model_dir", str(tmp_path),
                                       "--feature_storage", "mapped"])
    data = own_data.load_own_dataset(params, "val", True, True, load_cnn_features_train=True)
    assert isinstance(data.train.feats, feature_store.FeatureFile)
    whole = np.load(own / "out" / "feats.npy")
    np.testing.assert_array_equal(data.train.feats[np.arange(5)], whole[data.train.inds[:5]])


def test_drawn_splits_are_logged_once_kept_when_identical_and_do_not_depend_on_the_label_set_order(own, tmp_path,
                                                                                                 caplog):
    """The split line was logged twice per run; a label set in another order drew other splits."""
    caplog.set_level("INFO", logger="csp.own_data")
    run(own, tmp_path, "--num_epochs_unsuper", "0", "--num_epochs", "1")
    assert caplog.text.count("drew the split of") == 1
    written = (tmp_path / "splits" / "obs.splits.csv").read_bytes()
    (tmp_path / "labels.txt").write_text("\n".join(CLASSES[::-1]) + "\n")
    reordered = own_data.Observations(own / "obs.csv", tmp_path / "labels.txt")
    own_data.draw_splits(reordered, 0, tmp_path)           # identical: kept, not written again
    assert (tmp_path / "splits" / "obs.splits.csv").read_bytes() == written
    assert caplog.text.count("drew the split of") == 1


def test_labels_are_read_as_text_exactly_as_written(tmp_path):
    obs = own_data.Observations(write(tmp_path, {**GOOD, "label": ["NA", "None", ""]}))
    assert obs.class_names == ["NA", "None"] and obs.classes.tolist() == [0, 1, -1]
    obs = own_data.Observations(write(tmp_path, {**GOOD, "label": ["null", "nan", "n/a"]}))
    assert obs.class_names == ["n/a", "nan", "null"] and (obs.classes >= 0).all()


def test_parquet_integer_labels_with_missing_values_stay_integers_in_numeric_order(tmp_path):
    labels = pd.array([10, None, 1], dtype="Int64")
    pd.DataFrame({**GOOD, "label": labels}).to_parquet(tmp_path / "obs.parquet")
    obs = own_data.Observations(tmp_path / "obs.parquet")
    assert obs.class_names == ["1", "10"] and obs.classes.tolist() == [1, -1, 0]
    pd.DataFrame({**GOOD, "label": np.array([2, 10, 0], np.int16)}).to_parquet(tmp_path / "obs.parquet")
    assert own_data.Observations(tmp_path / "obs.parquet").class_names == ["0", "2", "10"]


@pytest.mark.parametrize("column", [pd.array([True, False, True], dtype="boolean"),
                                    pd.to_datetime(["2021-01-01"] * 3)], ids=["boolean", "datetime"])
def test_coordinates_only_from_real_numbers(tmp_path, column):
    pd.DataFrame({**GOOD, "lon": column}).to_parquet(tmp_path / "obs.parquet")
    with pytest.raises(ValueError, match=r"obs.parquet: column 'lon', rows 0, 1, 2: a column of .* not real numbers"):
        own_data.Observations(tmp_path / "obs.parquet")
    with pytest.raises(ValueError, match=r"column 'lat', rows 1: not a number \(e.g. '\(1\+2j\)'\)"):
        own_data.Observations(write(tmp_path, {**GOOD, "lat": ["5", "(1+2j)", "45"]}))


def test_text_that_is_not_utf8_is_named_and_a_bom_is_dropped(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeffimage,lon,lat,label\na.png,1,2,x\n".encode())
    (tmp_path / "labels.txt").write_bytes("\ufeffx\ny\n".encode())
    assert own_data.Observations(tmp_path / "bom.csv", tmp_path / "labels.txt").class_names == ["x", "y"]
    (tmp_path / "latin1.csv").write_bytes("image,lon,lat,label\na.png,1,2,x\nb.png,1,2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.csv: column 'label', rows 1: not UTF-8 text \(e.g. 'caf\\\\xe9'\)"):
        own_data.Observations(tmp_path / "latin1.csv")
    (tmp_path / "labels.txt").write_bytes("x\nvo\xeet\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"--label_set .*labels.txt: lines 2 are not UTF-8 text"):
        own_data.Observations(tmp_path / "bom.csv", tmp_path / "labels.txt")


@pytest.mark.parametrize("labels, rows", [(["1", "--3", "10"], "1"), (["2", "3.0", "x"], "1, 2")])
def test_labels_mixing_integers_and_text_name_the_rows(tmp_path, labels, rows):
    with pytest.raises(ValueError, match=rf"obs.csv: column 'label', rows {rows}: not integers .*give --label_set"):
        own_data.Observations(write(tmp_path, {**GOOD, "label": labels}))


def test_a_date_column_may_mix_iso_dates_and_year_fractions(tmp_path):
    obs = own_data.Observations(write(tmp_path, {**GOOD, "date": ["2021-07-02", "0.25", "2020-01-01T12:00"]}))
    np.testing.assert_allclose(obs.dates, [182 / 365, 0.25, 0.5 / 366], atol=1e-6)
    with pytest.raises(ValueError, match="column 'date', rows 1: a number outside"):
        own_data.Observations(write(tmp_path, {**GOOD, "date": ["2021-07-02", "1.5", ""]}))
