import json
import os

import numpy as np
import pytest
import torch

from csp import checkpoints
from csp import models
from csp.arguments import default_params
from csp.checkpoints import (epoch_file_name, find_checkpoint, load_checkpoint, load_state, log_file_name,
                         model_file_names, save_checkpoint)


def _golden_names(golden_dir):
    return json.loads((golden_dir / "filenames.json").read_text())


def test_file_names_match_the_original_for_every_golden_entry(golden_dir):
    entries = _golden_names(golden_dir)
    assert len(entries) == 8
    for entry in entries:
        params = default_params(entry["argv"].split())
        assert model_file_names(params) == (entry["unsuper_model_file_name"], entry["model_file_name"]), entry["argv"]


def test_model_dir_without_trailing_slash_gives_the_same_file(golden_dir):
    entry = _golden_names(golden_dir)[0]
    params = default_params(entry["argv"].replace("--model_dir ../models/", "--model_dir ../models").split())
    assert model_file_names(params)[1] == entry["model_file_name"]


def test_supervised_only_with_a_ratio_outside_zero_one_is_a_clear_error():
    with pytest.raises(ValueError, match="--train_sample_ratio must be in"):
        model_file_names(default_params(["--train_sample_ratio", "1.5"]))


def test_unknown_pretraining_loss_is_a_clear_error():
    with pytest.raises(ValueError, match="--unsuper_loss"):
        model_file_names(default_params(["--unsuper_loss", "contrastive"]))


def test_log_and_epoch_names():
    name = os.path.join("m", "model_x_gridcell_0.0010.pth.tar")
    assert log_file_name(name) == os.path.join("m", "model_x_gridcell_0.0010.log")
    assert epoch_file_name(name, 5) == os.path.join("m", "model_x_gridcell_0.0010-Epoch-5.pth.tar")


def test_find_checkpoint_finds_the_released_fmow_name(tmp_path):
    params = default_params(["--dataset", "fmow", "--unsuper_loss", "contsoftmax", "--simcse_weight", "0.1",
                             "--spa_f_act", "gelu", "--train_sample_ratio", "0.05", "--model_dir", str(tmp_path)])
    name = model_file_names(params)[1]
    assert "_gridcell_inception_v3_0.0010_" in name
    assert find_checkpoint(name) is None
    released = tmp_path / os.path.basename(name).replace("_inception_v3_", "_")
    released.write_bytes(b"")
    assert find_checkpoint(name) == str(released)
    with open(name, "wb"):
        pass
    assert find_checkpoint(name) == name


def _tiny_model_and_optimizer():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    return model, optimizer


def test_saved_checkpoint_has_the_original_layout_and_plain_params(tmp_path):
    model, optimizer = _tiny_model_and_optimizer()
    params = {"rbf_anchor_pt_ids": list(np.array([3, 1], dtype=np.int64)), "lr": np.float64(0.5),
              "map_range": (-180, 180, -90, 90), "device": torch.device("cpu")}
    path = tmp_path / "sub" / "model.pth.tar"
    save_checkpoint(str(path), model, optimizer, 7, params)
    ckpt = torch.load(path, weights_only=True)
    assert list(ckpt) == ["epoch", "state_dict", "optimizer", "params"]
    assert ckpt["epoch"] == 7 and ckpt["optimizer"]["state"][0]["step"] == 1
    assert ckpt["params"] == {"rbf_anchor_pt_ids": [3, 1], "lr": 0.5, "map_range": [-180, 180, -90, 90],
                              "device": "cpu"}
    assert type(ckpt["params"]["rbf_anchor_pt_ids"][0]) is int
    assert os.listdir(path.parent) == ["model.pth.tar"]


def test_params_that_cannot_be_stored_are_named():
    with pytest.raises(ValueError, match=r"params\['logger'\]"):
        checkpoints.plain_value({"logger": object()})


def test_a_crash_while_saving_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    model, optimizer = _tiny_model_and_optimizer()
    path = tmp_path / "model.pth.tar"
    save_checkpoint(str(path), model, optimizer, 1, {})
    before = path.read_bytes()

    def crash(obj, handle):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(str(path), model, optimizer, 2, {})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.pth.tar"]


def test_original_checkpoint_with_numpy_ids_loads_weights_only(tmp_path):
    """The original's rbf runs stored numpy int64 anchor ids in params."""
    path = tmp_path / "orig.pth.tar"
    torch.save({"epoch": 1, "state_dict": {}, "optimizer": {},
                "params": {"rbf_anchor_pt_ids": list(np.arange(3))}}, path)
    params = load_checkpoint(str(path))["params"]
    assert params["rbf_anchor_pt_ids"] == [0, 1, 2] and type(params["rbf_anchor_pt_ids"][0]) is int


def test_unreadable_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(str(tmp_path / "missing.pth.tar"))
    model, optimizer = _tiny_model_and_optimizer()
    path = tmp_path / "model.pth.tar"
    save_checkpoint(str(path), model, optimizer, 1, {})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="model.pth.tar is not a readable CSP checkpoint"):
        load_checkpoint(str(path))
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="lacks epoch, optimizer, params"):
        load_checkpoint(str(path))
    for content in (b"hello", b"", np.zeros(3).tobytes()):     # a text file, an empty file, raw numbers
        path.write_bytes(content)
        with pytest.raises(ValueError, match="model.pth.tar is not a readable CSP checkpoint") as err:
            load_checkpoint(str(path))
        assert "\n" not in str(err.value)


def test_load_state_lists_missing_unexpected_and_mismatched_keys():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.LayerNorm(3))
    state = {"0.weight": torch.zeros(4, 2), "0.bias": torch.zeros(3), "2.weight": torch.zeros(1)}
    with pytest.raises(ValueError) as err:
        load_state(model, state, source="ckpt.pth.tar")
    message = str(err.value)
    assert message.startswith("ckpt.pth.tar:")
    assert "missing keys (2): 1.weight; 1.bias" in message
    assert "unexpected keys (1): 2.weight" in message
    assert "0.weight: checkpoint (4, 2) vs model (3, 2)" in message


def test_load_state_of_weights_for_other_classes_or_users_blames_the_data_not_the_flags():
    """A checkpoint of a 62-class fmow set in the --model_dir of a 20-class one: the flags are fine, the data differ."""
    model = torch.nn.Module()
    model.class_emb, model.user_emb = torch.nn.Linear(4, 20, bias=False), torch.nn.Linear(4, 7, bias=False)
    state = {"class_emb.weight": torch.zeros(62, 4), "user_emb.weight": torch.zeros(9, 4)}
    with pytest.raises(ValueError) as err:
        load_state(model, state, source="ckpt.pth.tar")
    message = str(err.value)
    for part in ("ckpt.pth.tar", "62 classes", "20 classes", "9 users", "7 users", "other data", "--model_dir"):
        assert part in message
    assert "--spa_enc_type" not in message
    state = {"class_emb.weight": torch.zeros(62, 4), "user_emb.weight": torch.zeros(7, 5)}
    with pytest.raises(ValueError, match="check --spa_enc_type"):
        load_state(model, state, source="ckpt.pth.tar")


@pytest.mark.parametrize("change, message", [
    ({"state_dict": [1, 2]}, "its state_dict is a list, not a mapping"),
    ({"state_dict": {"w": [1.0]}}, "its state_dict maps 'w' to something other than a tensor"),
    ({"params": ["lr"]}, "its params is a list, not a mapping"),
    ({"epoch": "3"}, "its epoch is '3', not an integer"),
    ({"optimizer": 5}, "its optimizer state is a int, not a mapping"),
])
def test_malformed_checkpoint_parts_are_named(tmp_path, change, message):
    path = tmp_path / "model.pth.tar"
    torch.save({"epoch": 1, "state_dict": {"w": torch.zeros(1)}, "optimizer": None, "params": {}, **change}, path)
    with pytest.raises(ValueError, match=f"model.pth.tar is malformed: {message}"):
        load_checkpoint(str(path))


def test_keys_of_a_wrapped_model_name_the_prefix():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    for prefix in ("module.", "_orig_mod."):
        state = {prefix + key: value for key, value in model.state_dict().items()}
        with pytest.raises(ValueError, match=rf"every key of its state_dict carries the prefix '{prefix}' .*"
                                             rf"removeprefix\('{prefix}'\)"):
            load_state(model, state, source="ckpt.pth.tar")


def test_a_model_checkpoint_whose_params_lack_a_key_is_named(tmp_path):
    params = {**default_params(["--spa_enc_type", "naive", "--num_filts", "4", "--hidden_dim", "4"]),
              "num_classes": 3, "num_users": 1}
    model = models.build_model(params, 3, 1)
    path = tmp_path / "model.pth.tar"
    save_checkpoint(str(path), model, None, 1, {key: value for key, value in params.items() if key != "num_filts"})
    with pytest.raises(ValueError, match=r"model.pth.tar is malformed: its params lack 'num_filts'"):
        models.load_location_encoder(str(path))
