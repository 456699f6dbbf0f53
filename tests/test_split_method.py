"""--split_method random|spatial_block for --dataset custom tables without splits, and the demo passing it on."""
import numpy as np
import pandas as pd
import pytest

from csp import arguments
from csp import demo
from csp import own_data
from csp import spatial_splits
from csp import train_unsuper


def write_table(path, rows=400, seed=0):
    """A table without a split column: labels by hemisphere, every 9th row unlabelled, rows 3 and 4 unlocated."""
    rng = np.random.default_rng(seed)
    lon, lat = rng.uniform(-180, 180, rows), rng.uniform(-60, 70, rows)
    table = pd.DataFrame({"image": [f"img{i}.png" for i in range(rows)], "lon": lon.round(4), "lat": lat.round(4),
                          "label": np.where(lat > 0, "north", "south")})
    table.loc[table.index % 9 == 0, "label"] = ""
    table.loc[[3, 4], ["lon", "lat"]] = np.nan
    table.to_csv(path, index=False)
    return path


def test_the_default_is_today_s_random_draw(tmp_path):
    params = arguments.default_params([])
    assert (params["split_method"], params["block_deg"]) == ("random", 10.0)
    path = write_table(tmp_path / "obs.csv")
    default, random = own_data.Observations(path), own_data.Observations(path)
    own_data.draw_splits(default, 3, None)
    own_data.draw_splits(random, 3, None, "random", 25.0)
    np.testing.assert_array_equal(default.splits, random.splits)


def test_spatial_block_holds_out_whole_cells_of_labelled_located_rows(tmp_path):
    params = arguments.default_params(["--dataset", "custom", "--data_table", str(write_table(tmp_path / "obs.csv")),
                                       "--split_method", "spatial_block", "--block_deg", "20", "--seed", "2",
                                       "--model_dir", str(tmp_path / "run")])
    data = own_data.load_own_dataset(params, "val", True, True)
    splits = pd.read_csv(tmp_path / "run" / "splits" / "obs.splits.csv", keep_default_na=False)
    table = pd.read_csv(tmp_path / "obs.csv", keep_default_na=False)
    val = (splits["split"] == "val").to_numpy()
    located = (table["lon"] != "").to_numpy()
    labelled = (table["label"] != "").to_numpy() & located
    cells = spatial_splits.block_ids(table.loc[labelled, ["lon", "lat"]].to_numpy(float), 20)
    assert not set(cells[val[labelled]]) & set(cells[~val[labelled]])
    assert set(splits["split"][(table["label"] == "") | ~located]) == {"train"}
    assert 0.2 <= val[labelled].mean() < 0.3 and len(data.val.inds) == val.sum()


def test_labelled_rows_in_one_cell_are_named_with_the_fix(tmp_path):
    table = pd.read_csv(write_table(tmp_path / "obs.csv")).assign(lon=lambda t: 5 + t.lon / 100, lat=lambda t: 5 + t.lat / 100)
    table.to_csv(tmp_path / "obs.csv", index=False)
    params = arguments.default_params(["--dataset", "custom", "--data_table", str(tmp_path / "obs.csv"),
                                       "--split_method", "spatial_block", "--model_dir", str(tmp_path / "run")])
    with pytest.raises(ValueError) as caught:
        own_data.load_own_dataset(params, "val", True, True)
    assert str(caught.value) == (f"{tmp_path / 'obs.csv'}: the labelled rows fall into 1 cell of --block_deg 10 "
                                 f"degrees; a spatial_block split needs at least 2 cells (one held out, one to train "
                                 f"on): give a smaller --block_deg or --split_method random")


@pytest.mark.parametrize("value", ["1e-20", "1e-07", "360"])
def test_a_block_size_outside_its_range_is_refused_before_any_run(value):
    with pytest.raises(ValueError, match=f"--block_deg must be between 1e-06 and 180 degrees .*, got {float(value)}"):
        arguments.default_params(["--block_deg", value])


def test_a_bad_split_method_is_refused_before_any_run():
    with pytest.raises(ValueError, match="--split_method: invalid choice: 'blocks'"):
        arguments.default_params(["--split_method", "blocks"])


def test_the_demo_runs_draw_their_splits_from_the_table_without_its_split_column(tmp_path, monkeypatch):
    """`python main/demo.py -- --split_method spatial_block`: both runs read a split-free copy in their own folder."""
    def fake_build(data_dir, build_args):
        data_dir.mkdir(parents=True)
        table = pd.read_csv(write_table(data_dir / "observations.csv")).assign(split="train")
        table.to_csv(data_dir / "observations.csv", index=False)

    seen = []

    def fake_run(argv, **kwargs):
        seen.append(argv)
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "ensure_dataset", fake_build)
    monkeypatch.setattr(train_unsuper, "main", fake_run)
    with pytest.raises(KeyboardInterrupt):
        demo.main(["--out_dir", str(tmp_path / "demo"), "--", "--split_method", "spatial_block"])
    params = arguments.default_params(seen[0])
    run_dir = tmp_path / "demo" / "runs" / "seed0-spatial_block"
    assert params["split_method"] == "spatial_block" and params["model_dir"] == str(run_dir) + "/"
    assert params["data_table"] == str(run_dir / "observations.csv")
    copy = pd.read_csv(params["data_table"])
    assert "split" not in copy and len(copy) == 400
    assert "split" in pd.read_csv(tmp_path / "demo" / "data" / "observations.csv")
