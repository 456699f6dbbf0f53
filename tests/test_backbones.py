"""Every classification model of torchvision.models extracts from a local state_dict of its architecture (random
weights here, nothing downloaded), or stops with one line."""
import re
import warnings

import pytest
import torch
import torchvision

from csp import arguments
from csp import backbones
from csp import extract_features

ALL = torchvision.models.list_models(module=torchvision.models)
# the smallest member of each family, and the input side it accepts (vit and maxvit: only their own)
FAMILIES = {"alexnet": 64, "convnext_tiny": 32, "densenet121": 32, "efficientnet_b0": 32, "efficientnet_v2_s": 32,
            "googlenet": 32, "inception_v3": 75, "maxvit_t": 224, "mnasnet0_5": 32, "mobilenet_v2": 32,
            "mobilenet_v3_small": 32, "regnet_x_400mf": 32, "regnet_y_400mf": 32, "resnet18": 32,
            "resnext50_32x4d": 32, "shufflenet_v2_x0_5": 32, "squeezenet1_1": 32, "swin_t": 32, "swin_v2_t": 32,
            "vgg11": 32, "vgg11_bn": 32, "vit_b_32": 224, "wide_resnet50_2": 32}
FEATURES = {"alexnet": 4096, "googlenet": 1024, "inception_v3": 2048, "squeezenet1_1": 512, "vgg11": 4096,
            "mobilenet_v3_small": 1024, "vit_b_32": 768, "resnet18": 512, "convnext_tiny": 768}


def family(name):
    """resnet50 → resnet, efficientnet_v2_m → efficientnet_v2, mobilenet_v3_large → mobilenet_v3, swin_b → swin."""
    return re.match(r"[a-z]+(_v\d)?", name).group()


def test_every_torchvision_classification_model_belongs_to_a_tested_family():
    untested = sorted({family(name) for name in ALL} - {family(name) for name in FAMILIES})
    assert not untested, untested
    assert len(ALL) >= 80


def random_state(name):
    """A state_dict of `name`'s architecture with its own (random) initialisation; aux heads included."""
    kwargs = {"aux_logits": True, "init_weights": False} if name in backbones.AUX_HEADS else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.get_model(name, weights=None, **kwargs).state_dict()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_extracts_from_a_state_dict(name):
    size = FAMILIES[name]
    state = random_state(name)
    model = backbones.from_state_dict(name, state)
    with torch.inference_mode():
        features = model(torch.rand(2, 3, size, size))
    assert features.ndim == 2 and len(features) == 2 and torch.isfinite(features).all()
    if name in FEATURES:
        assert features.shape[1] == FEATURES[name]
    transform, crop, resize = backbones.transform(name)
    assert transform(torch.zeros(3, 300, 250, dtype=torch.uint8)).shape == (3, crop, crop)


def test_aux_heads_may_be_there_or_not_and_the_class_count_is_free():
    without_aux = torchvision.models.get_model("googlenet", weights=None, aux_logits=False, init_weights=False)
    assert backbones.from_state_dict("googlenet", without_aux.state_dict()).transform_input  # ImageNet's setting
    ten_classes = torchvision.models.get_model("resnet18", weights=None, num_classes=10).state_dict()
    assert backbones.from_state_dict("resnet18", ten_classes)(torch.zeros(1, 3, 32, 32)).shape == (1, 512)


def test_a_torchvision_weights_file_gets_the_transform_of_those_weights(tmp_path):
    entries = torchvision.models.get_model_weights("resnet50")
    v1, default = entries.IMAGENET1K_V1, entries.DEFAULT
    assert default.transforms().resize_size != v1.transforms().resize_size  # 232 and 256
    v1_digest = v1.url.rpartition("-")[2].split(".")[0] + "0" * 56  # torchvision's file names hold its prefix
    assert backbones.weights_entry("resnet50", v1_digest) is v1
    assert backbones.transform("resnet50", v1_digest)[2] == 256
    assert backbones.weights_entry("resnet50", "f" * 64) is default
    weights = tmp_path / "mine.pth"
    weights.write_bytes(b"a state_dict saved by hand")
    assert backbones.weights_entry("resnet50", backbones.file_digest(weights)) is default


@pytest.mark.parametrize("write, words", [
    (lambda p: torch.save(random_state("resnet18"), p), ["does not fit torchvision's resnet34", "missing keys",
                                                         "was it saved from another model"]),
    (lambda p: p.write_text("hello\n"), ["is not a torch.save file of a state_dict"]),
    (lambda p: torch.save(torchvision.models.get_model("resnet34", weights=None), p),
     ["holds a pickled model, not a state_dict", "model.state_dict()"]),
    (lambda p: torch.save({"a": 1}, p), ["does not hold a state_dict"]),
], ids=["other architecture", "text file", "pickled model", "a dict of numbers"])
def test_bad_weights_files_stop_with_one_line(tmp_path, write, words):
    weights = tmp_path / "weights.pth"
    write(weights)
    with pytest.raises(ValueError) as raised:
        backbones.load("resnet34", weights)
    message = arguments.describe_error(raised.value)
    assert "\n" not in message and len(message) < 400 and all(word in message for word in words), message


def test_an_image_size_the_model_cannot_take_is_one_line(tmp_path):
    from PIL import Image
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    weights = tmp_path.parent / "vit.pth"
    torch.save(random_state("vit_b_32"), weights)
    with pytest.raises(ValueError, match="--image_size 64 does not suit --backbone vit_b_32"):
        extract_features.main(["--images", str(tmp_path), "--out", str(tmp_path.parent / "f.npy"), "--backbone",
                               "vit_b_32", "--weights", str(weights), "--image_size", "64", "--num_workers", "0"])
