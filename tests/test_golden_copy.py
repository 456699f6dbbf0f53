import json

import numpy as np
import pytest
import torch

import golden_copy


@pytest.fixture
def golden_like(tmp_path):
    """A small folder shaped like the golden one: a checkpoint with a shared tensor, an npz, a json."""
    source = tmp_path / "source"
    (source / "encoders").mkdir(parents=True)
    weight = torch.randn(4, 3)
    torch.save({"epoch": 2, "state_dict": {"a.weight": weight, "b.weight": weight, "step": torch.tensor(3.0)},
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
                "params": {"spa_enc_type": "gridcell", "rbf_anchor_pt_ids": None}},
               source / "encoders" / "m.pth.tar")
    np.savez(source / "x.npz", coords=np.arange(6, dtype=np.float32).reshape(3, 2), nan=np.array([np.nan]),
             ids=np.arange(3))
    (source / "index.json").write_text(json.dumps({"configs": ["m"]}))
    return source


def test_unpacked_copy_has_the_original_files_arrays_and_checkpoint_structure(golden_like, tmp_path):
    golden_copy.pack(golden_like, tmp_path / "copy")
    out = golden_copy.unpack(tmp_path / "copy", tmp_path / "out")
    before = torch.load(golden_like / "encoders" / "m.pth.tar", weights_only=True)
    after = torch.load(out / "encoders" / "m.pth.tar", weights_only=True)
    assert after["params"] == before["params"] and after["optimizer"] == before["optimizer"] and after["epoch"] == 2
    assert list(after["state_dict"]) == list(before["state_dict"])
    for key, value in before["state_dict"].items():
        assert after["state_dict"][key].dtype == value.dtype and torch.equal(after["state_dict"][key], value)
    assert after["state_dict"]["a.weight"].data_ptr() == after["state_dict"]["b.weight"].data_ptr()
    with np.load(golden_like / "x.npz") as expected, np.load(out / "x.npz") as got:
        assert got.files == expected.files
        for key in expected.files:
            assert got[key].dtype == expected[key].dtype
            np.testing.assert_array_equal(got[key], expected[key])
    assert (out / "index.json").read_bytes() == (golden_like / "index.json").read_bytes()


def test_a_damaged_copy_is_refused(golden_like, tmp_path):
    golden_copy.pack(golden_like, tmp_path / "copy")
    manifest = json.loads((tmp_path / "copy" / golden_copy.MANIFEST).read_text())
    manifest["arrays"][0][0] = "0" * 40
    (tmp_path / "copy" / golden_copy.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="does not match the original's bytes"):
        golden_copy.unpack(tmp_path / "copy", tmp_path / "out")


def test_the_repository_copy_leaves_out_only_what_its_readme_lists(golden_dir):
    """The entries emptied in the copy are those of DROPPED, each named in tests/golden/README.md."""
    for name, keys in golden_copy.DROPPED:
        checkpoint = torch.load(golden_dir / name, weights_only=True)
        value = checkpoint
        for key in keys:
            value = value[key]
        assert (not value.any()) if isinstance(value, torch.Tensor) else value == {}
    readme = (golden_copy.Path(__file__).parent / "golden" / "README.md").read_text()
    assert all(f"`{name}`" in readme and f"`{keys[-1]}`" in readme for name, keys in golden_copy.DROPPED)
