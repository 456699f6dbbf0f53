"""P(y | I) where no classifier's predictions are at hand: softmax regression on frozen, standardised
image features, fitted by full-batch L-BFGS to minimise mean cross-entropy + (prior_precision / n) · ||W||²;
features may be a memory map.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

CHUNK_ROWS = 65536


def _chunks(num, chunk_rows):
    return [(start, min(start + chunk_rows, num)) for start in range(0, num, chunk_rows)]


@dataclass
class LinearProbe:
    """A fitted probe: mean, std (F,), weight (F, C), bias (C,) float32."""
    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def predict(self, feats, chunk_rows=CHUNK_ROWS):
        """(N, F) features (array or memory map) → (N, C) float32 probabilities, rows summing to 1."""
        out = np.empty((len(feats), self.weight.shape[1]), np.float32)
        for start, stop in _chunks(len(feats), chunk_rows):
            z = (torch.as_tensor(np.asarray(feats[start:stop]), dtype=torch.float32) - self.mean) / self.std
            out[start:stop] = torch.softmax(z @ self.weight + self.bias, dim=1).numpy()
        return out


def train_probe(feats, classes, num_classes, prior_precision=100.0, max_iter=200, chunk_rows=CHUNK_ROWS):
    """Fit the probe on `feats` (N, F) and `classes` (N,) in [0, num_classes); ValueError for no rows,
    mismatched lengths, class ids out of range or non-finite features."""
    classes = np.asarray(classes, dtype=np.int64)
    if len(feats) == 0 or len(feats) != len(classes):
        raise ValueError(f"train_probe: {len(feats)} feature rows and {len(classes)} labels; need as many, at least 1")
    if classes.min() < 0 or classes.max() >= num_classes:
        raise ValueError(f"train_probe: class ids must be in [0, {num_classes}), got {classes.min()}..{classes.max()}")
    chunks = _chunks(len(classes), chunk_rows)
    blocks = [torch.as_tensor(np.asarray(feats[a:b]), dtype=torch.float32) for a, b in chunks] if len(chunks) == 1 \
        else None

    def block(k):
        a, b = chunks[k]
        return blocks[k] if blocks is not None else torch.as_tensor(np.asarray(feats[a:b]), dtype=torch.float32)

    total = torch.zeros(feats.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for k in range(len(chunks)):
        x = block(k).double()
        if not torch.isfinite(x).all():
            raise ValueError("train_probe: the features hold NaN or infinite values (unreadable images?)")
        total += x.sum(0)
        total_sq += x.square().sum(0)
    n = len(classes)
    mean = total / n
    std = ((total_sq - n * mean.square()).clamp(min=0) / max(n - 1, 1)).sqrt()
    mean, std = mean.float(), std.float() + 1e-6
    y = torch.as_tensor(classes)
    weight = torch.zeros(feats.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        penalty = prior_precision / n * weight.square().sum()
        penalty.backward()
        loss = penalty.detach()
        for k, (a, b) in enumerate(chunks):
            z = (block(k) - mean) / std
            part = F.cross_entropy(z @ weight + bias, y[a:b], reduction="sum") / n
            part.backward()
            loss = loss + part.detach()
        return loss

    optimizer.step(closure)
    return LinearProbe(mean, std, weight.detach(), bias.detach())


def top1(probs, classes):
    """Top-1 accuracy (%) of probabilities (N, C) against class ids (N,)."""
    return float((np.asarray(probs).argmax(1) == np.asarray(classes)).mean() * 100)
