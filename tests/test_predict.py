"""predict.py: your own classifier's predictions reranked by a trained location prior, classes matched by name.

The data: four classes, two "colours" the classifier tells apart and two sides (west / east) only the location
tells, so the classifier alone is near 50 % and the prior lifts it. The run is the trainer's own (`--dataset custom
--image_predictions`), so predict.py must give its "image x location prior" Top-1 on the same rows.
"""
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from csp import arguments
from csp import checkpoints
from csp import fusion
from csp import models
from csp import predict
from csp import train_unsuper

CLASSES = ("blue_east", "blue_west", "red_east", "red_west")   # sorted: the run's class ids
FLAGS = ("--dataset custom --device cpu --spa_enc_type gridcell --frequency_num 8 --max_radius 360 --min_radius 1 "
         "--hidden_dim 64 --num_filts 32 --spa_f_act gelu --unsuper_loss none --lr 0.01 --batch_size 32 "
         "--num_epochs 40 --eval_frequency 100").split()


def make_table(rng, count):
    classes = rng.integers(0, 4, count)
    east = np.isin(classes, (0, 2))
    lon = np.where(east, rng.uniform(60, 120, count), rng.uniform(-120, -60, count))
    table = pd.DataFrame({"image": [f"img{i:04d}.jpg" for i in range(count)], "lon": lon.round(4),
                          "lat": rng.uniform(-40, 40, count).round(4), "label": np.array(CLASSES)[classes]})
    # the classifier: right colour with ~90 %, side a coin toss
    probs = rng.dirichlet(np.ones(4) * 0.5, count) * 0.2
    partner = classes ^ 1
    share = rng.uniform(0.3, 0.7, count)
    probs[np.arange(count), classes] += 0.8 * share
    probs[np.arange(count), partner] += 0.8 * (1 - share)
    return table, (probs / probs.sum(1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The trainer's run on a table with a val split: {dir, checkpoint, results, val table + predictions}."""
    root = tmp_path_factory.mktemp("predict")
    table, probs = make_table(np.random.default_rng(0), 400)
    table["split"] = np.where(np.arange(len(table)) % 4 == 0, "val", "train")
    table.loc[[4, 8], ["lon", "lat"]] = np.nan          # val rows without a location
    table.to_csv(root / "obs.csv", index=False)
    np.save(root / "preds.npy", probs)
    results = train_unsuper.main(FLAGS + ["--data_table", str(root / "obs.csv"), "--image_predictions",
                                          str(root / "preds.npy"), "--model_dir", str(root / "m")], console=False)
    val = np.flatnonzero(table["split"] == "val")
    table.iloc[val].drop(columns="split").to_csv(root / "val.csv", index=False)
    np.save(root / "val.npy", probs[val])
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    train = np.flatnonzero(table["split"] == "train")
    table.iloc[train].drop(columns="split").to_csv(root / "fit.csv", index=False)
    np.save(root / "fit.npy", probs[train])
    return {"dir": root, "checkpoint": results["files"]["model_file_name"], "results": results, "probs": probs[val],
            "table": table.iloc[val].reset_index(drop=True)}


def top1(results, method):
    return [e for e in results["evaluations"] if e["method"] == method and e["epoch"] is None][-1]["splits"][0]["top1"]


def call(run, *extra, preds="val.npy", table="val.csv"):
    root = run["dir"]
    args = [run["checkpoint"], root / table, root / preds]
    kwargs = {"classifier_classes": root / "classes.txt"} if str(preds).endswith(".npy") else {}
    return predict.predict(*args, **{**kwargs, **dict(extra)})


def test_the_trainers_image_x_location_prior_top1_on_the_same_rows(run):
    done = call(run)
    assert done.accuracy["with prior"][1] == top1(run["results"], "location_prior")
    assert done.accuracy["classifier"][1] == top1(run["results"], "no_prior")
    assert done.accuracy["with prior"][1] > done.accuracy["classifier"][1] + 20
    assert done.match.num_matched == 4 and done.num_labelled == len(run["table"])


def test_the_command_line_writes_the_top_k_and_prints_the_report(run, tmp_path, capsys):
    root = run["dir"]
    predict.main(["--checkpoint", run["checkpoint"], "--table", str(root / "val.csv"), "--image_predictions",
                  str(root / "val.npy"), "--classifier_classes", str(root / "classes.txt"), "--out",
                  str(tmp_path / "top.parquet"), "--top_k", "3"])
    out = pd.read_parquet(tmp_path / "top.parquet")
    assert list(out.columns) == ["image", "rank", "class", "score", "image_score", "prior"]
    assert len(out) == 3 * len(run["table"]) and out["rank"].tolist()[:3] == [1, 2, 3]
    assert (out.groupby("image")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    printed = capsys.readouterr().out
    assert f"with the prior (product) {top1(run['results'], 'location_prior'):.2f}" in printed
    assert "4 of the classifier's 4 classes matched" in printed


def test_a_class_list_with_a_byte_order_mark_and_crlf_and_a_large_top_k(run, tmp_path, capsys):
    (tmp_path / "c.txt").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(CLASSES).encode() + b"\r\n")
    done = call(run, ("classifier_classes", tmp_path / "c.txt"), ("top_k", 10 ** 9))
    assert done.match.num_matched == 4 and done.top_k == 4 and len(done.top) == 4 * len(run["table"])
    assert "--top_k 1000000000 is more than the classifier's 4 classes" in "\n".join(done.report)


def test_prediction_rows_for_images_not_in_the_table_are_ignored_and_counted(run, tmp_path):
    frame = pd.DataFrame(run["probs"], columns=CLASSES).assign(image=run["table"]["image"])
    extra = frame.head(3).assign(image=lambda f: f["image"] + "_other")
    pd.concat([frame, extra]).to_csv(tmp_path / "p.csv", index=False)
    frame.to_csv(tmp_path / "same.csv", index=False)
    done = call(run, preds=tmp_path / "p.csv")
    assert done.top.equals(call(run, preds=tmp_path / "same.csv").top)
    assert any(line.startswith("3 rows of --image_predictions") and "ignored" in line for line in done.report)


def test_rows_without_a_location_keep_the_classifiers_ranking(run):
    top = call(run, ("top_k", 4)).top
    unlocated = run["table"]["lon"].isna().to_numpy()
    for row in np.flatnonzero(unlocated):
        rows = top[top["image"] == run["table"]["image"][row]]
        expected = np.argsort(-run["probs"][row], kind="stable")
        assert rows["class"].tolist() == [CLASSES[c] for c in expected]
        assert np.allclose(rows["score"], rows["image_score"]) and rows["prior"].isna().all()
    assert top[top["image"].isin(run["table"]["image"][~unlocated])]["prior"].notna().all()


def test_a_shuffled_superset_and_a_subset_of_the_classes_by_name(run, tmp_path):
    """Columns in another order plus two classes the prior never saw: the prior follows the names, unknown
    classes get the row's mean prior; a subset: the prior's extra classes are ignored."""
    encoder = models.load_location_encoder(run["checkpoint"])
    probs, table = run["probs"].astype(np.float64), run["table"]
    located = table["lon"].notna().to_numpy()
    prior = encoder.class_probabilities(table[["lon", "lat"]].to_numpy()[located]).double().numpy()
    names = ["moss", *CLASSES[::-1], "lichen"]
    wide = np.concatenate([np.full((len(table), 1), 0.01), probs[:, ::-1] * 0.97, np.full((len(table), 1), 0.02)], 1)
    pd.DataFrame(wide, columns=names).assign(image=table["image"]).to_csv(tmp_path / "wide.csv", index=False)
    done = predict.predict(run["checkpoint"], run["dir"] / "val.csv", tmp_path / "wide.csv", top_k=6)
    assert done.match.num_matched == 4 and done.match.unknown == ["moss", "lichen"]
    expected = wide.copy()
    expected[located, 1:5] *= prior[:, ::-1]
    expected[located, 0] *= prior.mean(1)
    expected[located, 5] *= prior.mean(1)
    got = done.top.pivot(index="image", columns="class", values="score").loc[table["image"], names].to_numpy()
    assert np.allclose(got, expected / expected.sum(1, keepdims=True), rtol=1e-6)
    subset = [1, 3]
    pd.DataFrame(probs[:, subset] / probs[:, subset].sum(1, keepdims=True), columns=[CLASSES[c] for c in subset]) \
        .assign(image=table["image"]).to_csv(tmp_path / "subset.csv", index=False)
    done = predict.predict(run["checkpoint"], run["dir"] / "val.csv", tmp_path / "subset.csv")
    assert done.match.num_matched == 2 and "2 known only to the prior are ignored" in done.match.describe()
    fused = probs[located][:, subset] * prior[:, subset]
    best = np.array([CLASSES[c] for c in subset])[fused.argmax(1)]
    assert done.top[done.top["rank"] == 1].set_index("image").loc[table["image"][located], "class"].tolist() == \
        best.tolist()


def test_logits_in_a_table_rank_as_their_softmax(run, tmp_path):
    logits = np.log(run["probs"].astype(np.float64)) + 3.0
    pd.DataFrame(logits, columns=CLASSES).assign(image=run["table"]["image"])[::-1] \
        .to_parquet(tmp_path / "logits.parquet")
    done = predict.predict(run["checkpoint"], run["dir"] / "val.csv", tmp_path / "logits.parquet", kind="logits")
    assert done.accuracy == call(run).accuracy


def test_the_tempered_fusion_fits_alpha_on_another_table(run):
    done = call(run, ("fusion_kind", "tempered"), ("fit_on", run["dir"] / "fit.csv"),
                ("fit_predictions", run["dir"] / "fit.npy"))
    assert 0.3 < done.alpha <= fusion.ALPHA_BOUNDS[1]
    assert any(line.startswith(f"tempered fusion: α = {done.alpha:.3f} fitted for top1 on 300 rows")
               for line in done.report)
    assert done.accuracy["with prior"][1] > done.accuracy["classifier"][1] + 20


def test_fit_alpha_finds_the_tempering_that_generated_the_labels():
    rng = np.random.default_rng(1)
    image = rng.dirichlet(np.ones(5), 4000)
    prior = rng.uniform(0.01, 1, (4000, 5))
    truth = image * prior ** 2.5
    labels = np.array([rng.choice(5, p=row / row.sum()) for row in truth])
    for objective in fusion.OBJECTIVES:
        alpha, values = fusion.fit_alpha(torch.from_numpy(image), torch.from_numpy(prior), labels, objective)
        assert abs(alpha - 2.5) < 0.6 and values[alpha] >= max(values[1.0], values[0.0]), (objective, alpha)


# ---------------------------------------------------------------------------------------------------------------
# bad input: one line, exit status 2, no traceback, nothing written

def _pretraining_checkpoint(run, path):
    ckpt = checkpoints.load_checkpoint(run["checkpoint"])
    ckpt["params"]["checkpoint_phase"] = "pre-training"
    torch.save(ckpt, path)
    return path


def _renamed_checkpoint(run, path, names):
    ckpt = checkpoints.load_checkpoint(run["checkpoint"])
    ckpt[checkpoints.CLASS_NAMES_KEY] = list(names)
    torch.save(ckpt, path)
    return path


def _table(run, path, change):
    table = run["table"].copy()
    change(table)
    table.to_csv(path, index=False)
    return path


def _npy(path, array):
    np.save(path, array)
    return path


BAD = {
    "table missing": (lambda run, tmp: ["--table", str(tmp / "nope.csv")], "nope.csv"),
    "table without lat": (lambda run, tmp: ["--table", str(_table(run, tmp / "t.csv",
                                                                  lambda t: t.pop("lat")))], "'lat'"),
    "latitude out of range": (lambda run, tmp: ["--table", str(_table(
        run, tmp / "t.csv", lambda t: t.__setitem__("lat", t["lat"].where(t.index != 3, 123.0))))],
        "column 'lat', rows 3"),
    "repeated images": (lambda run, tmp: ["--table", str(_table(
        run, tmp / "t.csv", lambda t: t.__setitem__("image", t["image"].where(t.index != 5, t["image"][6]))))],
        "rows 5, 6"),
    "npy rows": (lambda run, tmp: ["--image_predictions", str(_npy(tmp / "p.npy", run["probs"][:-1]))],
                 "expected (100, 4)"),
    "npy without classes": (lambda run, tmp: ["--classifier_classes", None], "--classifier_classes"),
    "NaN probability": (lambda run, tmp: ["--image_predictions", str(_npy(
        tmp / "p.npy", np.where(np.arange(100)[:, None] == 7, np.nan, run["probs"])))], "rows 7: NaN"),
    "negative probability": (lambda run, tmp: ["--image_predictions", str(_npy(
        tmp / "p.npy", run["probs"] * np.where(np.arange(100)[:, None] == 9, -1, 1)))], "rows 9: negative"),
    "rows not summing to 1": (lambda run, tmp: ["--image_predictions", str(_npy(tmp / "p.npy", run["probs"] * 2))],
                              "not summing to 1"),
    "classes file repeats": (lambda run, tmp: ["--classifier_classes", str(_text(tmp / "c.txt", "a\nb\na\nc"))],
                             "repeats 'a'"),
    "classes file not UTF-8": (lambda run, tmp: ["--classifier_classes", str(_bytes(
        tmp / "c.txt", "\n".join(CLASSES[:3] + ("café",)).encode("latin-1")))], "lines 4 are not UTF-8"),
    "prediction table repeats a class": (lambda run, tmp: ["--classifier_classes", None, "--image_predictions", str(
        _text(tmp / "p.csv", ",".join(CLASSES + (CLASSES[1], "image")) + "\n"))], f"'{CLASSES[1]}' appear more"),
    "prior classes differ from the checkpoint's": (lambda run, tmp: ["--prior_classes", str(_text(
        tmp / "c.txt", "\n".join(reversed(CLASSES))))], "differs from the class names stored in --checkpoint"),
    "checkpoint repeats a class name": (lambda run, tmp: ["--checkpoint", str(_renamed_checkpoint(
        run, tmp / "dup.pth.tar", CLASSES[:3] + CLASSES[:1]))], f"its class names repeat '{CLASSES[0]}'"),
    "classes unknown to the prior": (lambda run, tmp: ["--classifier_classes",
                                                       str(_text(tmp / "c.txt", "a\nb\nc\nd"))], "none of"),
    "prediction table misses images": (lambda run, tmp: ["--classifier_classes", None, "--image_predictions", str(
        _csv(tmp / "p.csv", pd.DataFrame(run["probs"][:90], columns=CLASSES).assign(image=run["table"]["image"][:90])
             ))], "rows 90, 91"),
    "prediction table text": (lambda run, tmp: ["--classifier_classes", None, "--image_predictions", str(
        _csv(tmp / "p.csv", pd.DataFrame(run["probs"], columns=CLASSES).astype(object).assign(
            image=run["table"]["image"]).mask(lambda f: (f.index == 12)[:, None] & (f.columns == CLASSES[0]),
                                              "high")))], "rows 12"),
    "logits with infinity": (lambda run, tmp: ["--image_predictions_kind", "logits", "--image_predictions", str(_npy(
        tmp / "p.npy", np.where(np.arange(100)[:, None] == 2, np.inf, run["probs"])))], "rows 2: NaN, infinite"),
    "pre-training checkpoint": (lambda run, tmp: ["--checkpoint", str(_pretraining_checkpoint(
        run, tmp / "model_UNSUPER.pth.tar"))], "class head was never trained"),
    "not a checkpoint": (lambda run, tmp: ["--checkpoint", str(_text(tmp / "x.pth.tar", "hello"))],
                         "not a readable CSP checkpoint"),
    "tempered without a fit table": (lambda run, tmp: ["--fusion", "tempered"], "--fit_on"),
    "top_k 0": (lambda run, tmp: ["--top_k", "0"], "--top_k"),
    "output of another kind": (lambda run, tmp: ["--out", str(tmp / "top.xlsx")], ".csv or .parquet"),
    "output exists": (lambda run, tmp: ["--out", str(_text(tmp / "exists.csv", "keep me"))], "exists"),
}


def _text(path, text):
    path.write_text(text)
    return path


def _bytes(path, data):
    path.write_bytes(data)
    return path


def _csv(path, frame):
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(run, tmp_path, monkeypatch, capsys, case):
    root = run["dir"]
    flags = {"--checkpoint": run["checkpoint"], "--table": str(root / "val.csv"),
             "--image_predictions": str(root / "val.npy"), "--classifier_classes": str(root / "classes.txt"),
             "--out": str(tmp_path / "out" / "top.csv")}
    change, words = BAD[case]
    extra = change(run, tmp_path)
    for flag, value in zip(extra[::2], extra[1::2]):
        flags[flag] = value
    argv = [word for flag, value in flags.items() if value is not None for word in (flag, value)]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    monkeypatch.setattr(sys, "argv", ["predict.py", *argv])
    with pytest.raises(SystemExit) as stopped:
        arguments.run_command(predict.main)
    err = capsys.readouterr().err
    assert stopped.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and words in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
