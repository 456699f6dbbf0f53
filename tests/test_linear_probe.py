"""The image-only probe P(y | I): calibrated softmax regression, the same in chunks as in one piece."""
import numpy as np
import pytest

from csp import linear_probe


def blobs(rng, n=300, num_classes=4, dim=16):
    classes = rng.integers(0, num_classes, n)
    centres = rng.normal(0, 3, (num_classes, dim))
    return (centres[classes] + rng.normal(0, 1, (n, dim))).astype(np.float32), classes


def test_probe_learns_separable_classes_and_gives_probabilities():
    feats, classes = blobs(np.random.default_rng(0))
    probe = linear_probe.train_probe(feats[:200], classes[:200], 4)
    probs = probe.predict(feats[200:])
    assert probs.shape == (100, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert linear_probe.top1(probs, classes[200:]) > 90


def test_chunks_give_the_same_probe_as_one_piece():
    feats, classes = blobs(np.random.default_rng(1))
    whole = linear_probe.train_probe(feats, classes, 4).predict(feats)
    chunked = linear_probe.train_probe(feats, classes, 4, chunk_rows=64).predict(feats, chunk_rows=50)
    np.testing.assert_allclose(chunked, whole, atol=2e-3)


def test_bad_input_is_refused():
    feats, classes = blobs(np.random.default_rng(2), n=20)
    with pytest.raises(ValueError, match="class ids must be in"):
        linear_probe.train_probe(feats, classes, 2)
    feats[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        linear_probe.train_probe(feats, classes, 4)
    with pytest.raises(ValueError, match="as many"):
        linear_probe.train_probe(feats[:5], classes, 4)
