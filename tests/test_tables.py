import json
import logging
import shutil

import pandas as pd
import pytest

from csp import checkpoints
from csp import paths
from csp import table_runs
from csp import tables
from csp import train_unsuper
from csp.arguments import default_params
from csp.synthetic_data import write_synthetic_dataset

TINY = ["--num_epochs", "1", "--num_epochs_unsuper", "1", "--num_filts", "16", "--hidden_dim", "32",
        "--frequency_num", "8", "--batch_size", "64"]
RATIOS = ["0.1", "1"]


def _no_runs(monkeypatch):
    def refuse(argv):
        raise AssertionError(f"unexpected run {argv}")
    monkeypatch.setattr(train_unsuper, "main", refuse)


@pytest.fixture(scope="module")
def fmow_table(tmp_path_factory):
    """Table 5 with two rows at two ratios run on tiny synthetic fMoW data (1 epoch each)."""
    root = tmp_path_factory.mktemp("tables")
    write_synthetic_dataset("fmow", root / "data", num_train=300, num_val=40, num_classes=5, feat_dim=8,
                            fewshot_ratios=(0.1,))
    argv = ["comparison", "--dataset", "fmow", "--data_dir", str(root / "data"), "--model_dir", str(root / "runs"),
            "--ratios", *RATIOS, "--rows", "sup_grid", "mc_bld", "--device", "cpu"] + TINY
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CSP_DATA_DIR", str(root / "data"))     # restored afterwards (--data_dir sets it)
        found = tables.main(argv)
    return root, argv, found


def test_table_has_the_paper_layout_with_our_numbers_beside_the_published_ones(fmow_table):
    root, _, found = fmow_table
    assert sorted(key for key, value in found.items() if value) == [
        ("mc_bld", 0.1), ("mc_bld", 1.0), ("sup_grid", 0.1), ("sup_grid", 1.0)]
    frame = pd.read_csv(root / "runs" / "table5_fmow_released.csv")
    assert list(frame["model"]) == ["Img. Only (Geo-SSL)", "Img. Only (Tile2Vec)", "Sup. Only (wrap)",
                                    "Sup. Only (grid)", "MSE", "CSP-NCE-BLD", "CSP-MC-BLD"]
    for ratio in ("5%", "10%", "20%", "100%"):
        assert {f"{ratio} ours", f"{ratio} paper", f"{ratio} paper spread"} <= set(frame.columns)
    rows = frame.set_index("model")
    assert rows.loc["CSP-MC-BLD", "5% paper"] == 67.47 and rows.loc["CSP-MC-BLD", "5% paper spread"] == 0.02
    assert rows.loc["Img. Only (Tile2Vec)", "100% paper"] == 64.45
    for model in ("Img. Only (Geo-SSL)", "Sup. Only (grid)", "CSP-MC-BLD"):
        assert 0 <= rows.loc[model, "10% ours"] <= 100 and 0 <= rows.loc[model, "100% ours"] <= 100
        assert pd.isna(rows.loc[model, "5% ours"])
    assert rows[["10% ours", "100% ours"]].loc[["MSE", "Sup. Only (wrap)", "CSP-NCE-BLD"]].isna().all().all()
    assert rows.loc["CSP-MC-BLD", "preset"] == "released"
    markdown = (root / "runs" / "table5_fmow_released.md").read_text()
    assert "preset `released`" in markdown and "simcse_weight 0.1" in markdown
    caption = next(line for line in markdown.splitlines() if line.startswith("Our numbers"))
    assert "`--num_epochs 1 --num_epochs_unsuper 1 --num_filts 16" in caption
    assert "num_epochs 300" not in caption and "num_epochs_unsuper 300" not in caption
    assert rows.loc["CSP-MC-BLD", "flags after --"] == " ".join(TINY)
    assert "lr 0.00005" in table_runs.preset_description("released", "fmow", ["--lr=0.1"])
    assert ", lr 0.001," not in table_runs.preset_description("released", "fmow", ["--lr=0.1"])
    assert "| CSP-MC-BLD | released | – | 67.47 (0.02) |" in markdown
    assert markdown.count("\n|") == 2 + 7


def test_img_only_is_the_no_prior_block_and_finished_runs_are_not_run_again(fmow_table, monkeypatch, caplog):
    root, argv, found = fmow_table
    expected = table_runs.final_top1(found[("sup_grid", 0.1)], "no_prior")
    assert expected == table_runs.final_top1(found[("mc_bld", 0.1)], "no_prior")
    _no_runs(monkeypatch)
    monkeypatch.setenv("CSP_DATA_DIR", str(root / "data"))
    again = tables.main(argv)
    assert {key: bool(value) for key, value in again.items()} == {key: bool(value) for key, value in found.items()}
    rows = pd.read_csv(root / "runs" / "table5_fmow_released.csv").set_index("model")
    assert rows.loc["Img. Only (Geo-SSL)", "10% ours"] == expected
    tables.main(argv + ["--ratios", "1", "--collect_only"])     # --ratios chooses what runs; the table shows all
    rows = pd.read_csv(root / "runs" / "table5_fmow_released.csv").set_index("model")
    assert rows.loc["CSP-MC-BLD", "10% ours"] == table_runs.final_top1(found[("mc_bld", 0.1)], "location_prior")


def test_collect_only_shows_missing_runs_as_dashes(tmp_path, monkeypatch):
    _no_runs(monkeypatch)
    found = tables.main(["ablation", "--dataset", "inat_2018", "--model_dir", str(tmp_path), "--preset", "paper",
                         "--collect_only", "--ratios", "0.05"])
    assert set(found.values()) == {None}
    frame = pd.read_csv(tmp_path / "table2_inat_2018_paper.csv").set_index("model")
    assert list(frame.index) == ["CSP-MC-BLD", "CSP-MC-BD", "CSP-MC-BL", "CSP-MC-B"]
    assert frame["5% ours"].isna().all() and frame.loc["CSP-MC-BD", "10% paper"] == 19.60
    markdown = (tmp_path / "table2_inat_2018_paper.md").read_text()
    assert "| CSP-MC-B | paper | – | 8.16 |" in markdown and "lr 0.0005" in markdown


def _results(evaluations, epochs_done=3):
    return {"format": "csp-results/1", "phases": {"fine-tuning": {"epochs_done": epochs_done}},
            "evaluations": evaluations}


def _block(method, epoch, splits):
    return {"method": method, "epoch": epoch,
            "splits": [{"id": i, "count": count, "top1": top1} for i, (count, top1) in enumerate(splits)]}


def test_results_reader_takes_the_final_block_weighted_over_splits(tmp_path, caplog):
    document = _results([_block("location_prior", 5, [(10, 99.0)]), _block("no_prior", None, [(10, 20.0)]),
                         _block("location_prior", None, [(30, 10.0), (10, 50.0)])])
    path = tmp_path / "run.results.json"
    path.write_text(json.dumps(document))
    results = tables.read_results(path)
    assert table_runs.final_top1(results, "location_prior") == 20.0
    assert table_runs.final_top1(results, "no_prior") == 20.0 and table_runs.final_top1(results, "kde") is None
    assert table_runs.is_finished(results, 3) and not table_runs.is_finished(results, 4)
    assert not table_runs.is_finished(_results([_block("location_prior", 5, [(1, 1.0)])]), 3)
    assert tables.read_results(tmp_path / "absent.json") is None
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="csp.tables"):
        assert tables.read_results(path) is None
    assert "not a readable results file" in caplog.text


def test_run_flags_follow_preset_row_and_ratio_and_overrides_win():
    released = default_params(tables.run_argv("inat_2018", "released", "mc_bd", 0.05, "m", "cpu", ["--lr", "0.1"]))
    assert (released["unsuper_loss"], released["rand_sample_weight"], released["simcse_weight"]) == (
        "contsoftmax", 0.0, 1.0)
    assert released["unsuper_temp_inbatch"] == 20 and released["unsuper_lr"] == 0.0005 and released["lr"] == 0.1
    assert released["cnn_pred_type"] == "fewshot" and released["load_cnn_features_train"]
    paper = default_params(tables.run_argv("fmow", "paper", "sup_wrap", 1.0, "m", "cpu", []))
    assert (paper["spa_enc_type"], paper["unsuper_loss"], paper["cnn_pred_type"]) == ("geo_net", "none", "full")
    assert paper["min_radius"] == 0.01 and paper["neg_rand_type"] == "spherical"
    assert not paper["load_cnn_features_train"]


def test_every_run_row_of_the_paper_tables_has_published_numbers():
    for (kind, dataset), (number, _, rows) in tables.TABLES.items():
        if (kind, dataset) == ("ablation", "fmow"):
            continue
        paper = tables.paper_results(number, dataset)
        for row in rows:
            for ratio in tables.PAPER_RATIOS:
                assert (tables.ROWS[row][0], ratio) in paper, (number, row, ratio)


def test_bad_rows_and_ratios_are_named():
    with pytest.raises(ValueError, match="--rows mse: not in this table"):
        tables.main(["ablation", "--dataset", "inat_2018", "--rows", "mse", "--collect_only"])
    with pytest.raises(ValueError, match="--train_sample_ratio: set by the table itself"):
        tables.main(["comparison", "--dataset", "inat_2018", "--collect_only", "--", "--train_sample_ratio", "0.5"])
    with pytest.raises(ValueError, match="--device: set by the table itself"):
        tables.main(["comparison", "--dataset", "inat_2018", "--collect_only", "--", "--device=cpu"])
    # an abbreviation of a flag the table sets (argparse took it for --train_sample_ratio: a 10 % run in the 5 %
    # column), or of one of the table's own flags, is no flag at all
    for words in (["--", "--train_sample_rat", "0.1"], ["--", "--train_sample_rat=0.1"], ["--devic", "cpu"],
                  ["--", "--lr_dec", "0.5"]):
        with pytest.raises(ValueError, match=rf"^{' '.join(words[-2:]) if words[-2] != '--' else words[-1]}: not a "
                                             rf"flag of train_unsuper\.py"):
            tables.main(["comparison", "--dataset", "inat_2018", "--collect_only", *words])
    with pytest.raises(ValueError, match="--ratios must be in \\(0, 1\\]"):
        tables.main(["comparison", "--dataset", "inat_2018", "--ratios", "0", "--collect_only"])


def test_the_dataset_must_be_named(capsys):
    with pytest.raises(SystemExit) as excinfo:
        tables.main(["comparison", "--collect_only"])
    assert excinfo.value.code == 2 and "--dataset" in capsys.readouterr().err


def test_mean_and_spread_over_seeds():
    mean, std, runs = table_runs.mean_spread([7.0, None, 8.0, 9.0], "std")
    assert (mean, std, runs) == (8.0, 1.0, 3)
    assert table_runs.mean_spread([7.0, 8.0, 9.0], "se")[1] == pytest.approx(1 / 3 ** 0.5)
    assert table_runs.mean_spread([7.5], "std") == (7.5, None, 1)
    assert table_runs.mean_spread([None], "se") == (None, None, 0)


def test_several_seeds_run_every_cell_per_seed_and_report_mean_and_spread(synthetic_data_dir, tmp_path, monkeypatch):
    data = synthetic_data_dir("fmow", num_train=200, num_val=30, num_classes=4, feat_dim=4)
    monkeypatch.setenv("CSP_DATA_DIR", str(data))
    argv = ["comparison", "--dataset", "fmow", "--model_dir", str(tmp_path / "runs"), "--ratios", "1", "--rows",
            "sup_grid", "--device", "cpu", "--seeds", "0", "1"] + TINY
    founds = tables.main(argv)
    tops = [table_runs.final_top1(founds[seed][("sup_grid", 1.0)], "location_prior") for seed in (0, 1)]
    for seed in (0, 1):
        assert founds[seed][("sup_grid", 1.0)]["params"]["seed"] == seed
        assert list((tmp_path / "runs" / f"seed{seed}").glob("*.results.json"))
    rows = pd.read_csv(tmp_path / "runs" / "table5_fmow_released.csv").set_index("model")
    mean, se, runs = table_runs.mean_spread(tops, "se")
    assert rows.loc["Sup. Only (grid)", "100% ours"] == pytest.approx(mean, abs=0.005)
    assert rows.loc["Sup. Only (grid)", "100% ours spread"] == pytest.approx(se, abs=0.005)
    assert rows.loc["Sup. Only (grid)", "100% ours runs"] == runs == 2
    markdown = (tmp_path / "runs" / "table5_fmow_released.md").read_text()
    assert "mean (standard error) over seeds 0 1" in markdown
    assert (f"| Sup. Only (grid) | released | – | 67.01 (0.02) | – | 68.91 (0.04) | – | 70.20 (0.03) | "
            f"{mean:.2f} ({se:.2f}) | 70.77 (0.03) |") in markdown
    with pytest.raises(ValueError, match="--seed: set by the table itself"):
        tables.main(argv + ["--", "--seed", "3"])


def _files(folder):
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def _message(excinfo):
    return " ".join(str(excinfo.value).split())


def test_finished_runs_made_with_other_flags_stop_the_table_before_anything_runs(fmow_table, monkeypatch):
    root, argv, _ = fmow_table
    _no_runs(monkeypatch)
    monkeypatch.setenv("CSP_DATA_DIR", str(root / "data"))
    before = _files(root / "runs")
    with pytest.raises(ValueError) as excinfo:
        tables.main(argv + ["--cnn_pred_type", "full"])   # the 10 % runs used the few-shot predictions
    message = _message(excinfo)
    paths, _ = zip(*(table_runs.results_path(tables.run_argv("fmow", "released", row, 0.1, root / "runs", "cpu",
                                                          TINY)) for row in ("sup_grid", "mc_bld")))
    assert all(str(path) in message for path in paths) and "ratio1.000" not in message
    assert "--cnn_pred_type full here, fewshot in the file" in message
    assert "neither used nor overwritten" in message and "another --model_dir" in message
    assert _files(root / "runs") == before


def test_collect_only_with_other_flags_reports_them_and_keeps_the_table(fmow_table, monkeypatch):
    root, argv, _ = fmow_table
    _no_runs(monkeypatch)
    before = _files(root / "runs")
    with pytest.raises(ValueError) as excinfo:      # same file names, other fine-tuning epochs
        tables.main(argv + ["--collect_only", "--num_epochs", "3"])
    assert "--num_epochs 3 here, 1 in the file" in _message(excinfo)
    assert "collect with the flags those runs had" in _message(excinfo)
    without = argv[:argv.index("--device")] + ["--collect_only"]   # none of the flags after --: other file names
    with pytest.raises(ValueError) as excinfo:
        tables.main(without)
    message = _message(excinfo)
    assert "no finished run made with these flags" in message
    assert "--num_filts 256 here, 16 in the file" in message and "--num_epochs 300 here, 1 in the file" in message
    assert _files(root / "runs") == before


def test_checkpoints_made_with_other_flags_are_not_reused(fmow_table, tmp_path, monkeypatch):
    root, _, _ = fmow_table
    pretrained, finetuned = (checkpoints.model_file_names(
        default_params(tables.run_argv("fmow", "released", "mc_bld", 1.0, root / "runs", "cpu", TINY))))
    for path in (pretrained, finetuned):
        shutil.copy(path, tmp_path)
    argv = ["comparison", "--dataset", "fmow", "--data_dir", str(root / "data"), "--model_dir", str(tmp_path),
            "--ratios", "1", "--rows", "mc_bld", "--device", "cpu"] + TINY
    monkeypatch.setenv("CSP_DATA_DIR", str(root / "data"))
    _no_runs(monkeypatch)
    with pytest.raises(ValueError) as excinfo:      # fine-tuning flags: the pre-trained checkpoint still serves
        tables.main(argv + ["--num_epochs", "2"])
    message = _message(excinfo)
    assert f"{tmp_path / finetuned.split('/')[-1]}: --num_epochs 2 here, 1 in the file" in message
    assert "UNSUPER" not in message
    with pytest.raises(ValueError) as excinfo:
        tables.main(argv + ["--num_epochs_unsuper", "2"])
    message = _message(excinfo)
    assert f"{tmp_path / pretrained.split('/')[-1]}: --num_epochs_unsuper 2 here, 1 in the file" in message
    started = []
    monkeypatch.setattr(train_unsuper, "main", started.append)
    tables.main(argv)                               # the same flags: the checkpoints are resumed from
    assert len(started) == 1 and default_params(started[0])["train_sample_ratio"] == 1.0


def test_missing_prediction_files_stop_the_table_before_any_run(synthetic_data_dir, tmp_path, monkeypatch):
    data = synthetic_data_dir("inat_2018", num_train=60, num_val=20, num_classes=4, feat_dim=4, fewshot_ratios=(0.05,))
    _no_runs(monkeypatch)
    monkeypatch.setenv("CSP_DATA_DIR", str(data))
    with pytest.raises(FileNotFoundError) as excinfo:
        tables.main(["comparison", "--dataset", "inat_2018", "--model_dir", str(tmp_path / "runs"), "--ratios",
                     "0.05", "0.1", "0.2", "1",
                     "--device", "cpu", "--", "--num_epochs", "2", "--num_epochs_unsuper", "1"])
    message = _message(excinfo)
    assert "fewshot/inat2018_val_preds_sparse_ratio0.100.npz" in message
    assert "fewshot/inat2018_val_preds_sparse_ratio0.200.npz" in message and "ratio0.050" not in message
    assert message.count("ratio0.100.npz") == 1
    assert "-- --cnn_pred_type full" in message and "--ratios" in message
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_the_default_model_folder_is_in_the_repository_wherever_the_command_starts(tmp_path, monkeypatch):
    """`python main/tables.py comparison --collect_only` from the repository root wrote ../model_dir/ outside it."""
    seen = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tables, "collect", lambda kind, dataset, preset, rows, ratios, model_dir, *rest:
                        seen.setdefault("model_dir", model_dir) and {})
    monkeypatch.setattr(tables, "write_table", lambda *args: seen.setdefault("out_dir", args[5]) and ("", "", ""))
    for preset in ("released", "paper"):
        seen.clear()
        tables.main(["comparison", "--dataset", "fmow", "--collect_only", "--preset", preset])
        expected = paths.MAIN_DIR.parent / "model_dir" / "tables" / "fmow" / preset
        assert seen == {"model_dir": expected, "out_dir": expected}
