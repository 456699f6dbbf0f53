import io
import logging
import sys

import numpy as np
import pytest
import torch

from csp import evaluation
from csp.arguments import default_params
from csp.models import build_model

N, C = 40, 12


def _reference_ranks(scores, labels):
    """Brute force: a stable ascending sort, reversed (ties: the higher class index first)."""
    ranks = []
    for row, label in zip(scores, labels):
        order = np.argsort(row, kind="stable")[::-1]
        ranks.append(int(np.flatnonzero(order == label)[0]) + 1)
    return np.array(ranks)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    preds = rng.integers(0, 4, (N, C)).astype(np.float32) / 4          # many ties
    preds[:5] = 0                                                       # all-zero rows
    classes = rng.integers(0, C, N)
    locs = np.stack([rng.uniform(-180, 180, N), rng.uniform(-90, 90, N)], 1).astype(np.float32)
    return preds, classes, locs


def _messages(caplog):
    return [record.getMessage() for record in caplog.records if record.name == "csp.evaluation"]


def test_ranks_match_a_brute_force_stable_sort_with_ties_and_all_zero_rows():
    preds, classes, _ = _data()
    ranks = evaluation.label_ranks(torch.from_numpy(preds), torch.from_numpy(classes))
    assert ranks.dtype == torch.int64
    np.testing.assert_array_equal(ranks.numpy(), _reference_ranks(preds, classes))


def test_all_zero_row_ranks_the_last_class_first_as_the_original():
    zeros = np.zeros((1, C), np.float32)
    original_order = np.argsort(zeros, axis=-1)[:, ::-1]                # the original's get_label_rank
    for label in (0, 5, C - 1):
        rank = evaluation.label_ranks(torch.from_numpy(zeros), torch.tensor([label])).item()
        assert rank == int(np.flatnonzero(original_order[0] == label)[0]) + 1 == C - label


def test_nan_scores_rank_below_every_number_and_a_nan_true_score_ranks_last():
    nan = float("nan")
    scores = torch.tensor([[0.5, nan, 0.2, -float("inf")],
                           [0.5, nan, 0.2, -float("inf")],
                           [0.5, nan, 0.2, -float("inf")],
                           [nan, nan, nan, nan]])
    ranks = evaluation.label_ranks(scores, torch.tensor([2, 3, 1, 0]))
    assert ranks.tolist() == [2, 3, 4, 4]
    preds = np.full((N, C), np.nan, np.float32)                          # a diverged model
    result, ranks = evaluation.evaluate_image_only(preds, np.arange(N) % C, np.zeros(N))
    assert (ranks == C).all() and result["splits"][0]["top1"] == 0.0 and result["splits"][0]["top10"] == 0.0


def test_top_k_and_mrr_per_split_count_unscored_rows_in_the_denominator():
    ranks = np.array([1, 2, 4, 11, 0, 1, 3, 6])
    result = evaluation.summarize(ranks, np.zeros(8, int), "m", num_scored=7)
    (split,) = result["splits"]
    assert split["count"] == 8 and result["num_rows"] == 8 and result["num_scored"] == 7
    assert [split[f"top{k}"] for k in (1, 3, 5, 10)] == [25.0, 50.0, 62.5, 75.0]
    assert split["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 11 + 1 + 1 / 3 + 1 / 6) / 8)
    assert evaluation.summarize(np.array([1, 2, 2]), np.zeros(3), "m")["splits"][0]["top1"] == 33.33


def test_image_only_logs_the_original_lines(caplog):
    preds, classes, _ = _data()
    with caplog.at_level(logging.INFO, logger="csp.evaluation"):
        result, ranks = evaluation.evaluate_image_only(preds, classes, np.ones(N, int), flag="(Epoch 5)")
    hits = [np.mean(_reference_ranks(preds, classes) <= k) * 100 for k in (1, 3, 5, 10)]
    assert _messages(caplog) == ["\nNo prior", f"({N},)", " Split ID: 0"] + [
        f" Top {k}\t(Epoch 5)acc (%):   {round(h, 2)}" for k, h in zip((1, 3, 5, 10), hits)]
    assert result["method"] == "no_prior" and result["flag"] == "(Epoch 5)"
    assert len(ranks) == N


def test_kaggle_private_mask_gives_two_blocks_public_first(caplog):
    preds, classes, _ = _data()
    private = np.arange(N) >= 30
    with caplog.at_level(logging.INFO, logger="csp.evaluation"):
        result, ranks = evaluation.evaluate_image_only(preds, classes, private)
    assert [line for line in _messages(caplog) if "Split" in line] == [" Split ID: 0", " Split ID: 1"]
    public, private_block = result["splits"]
    assert (public["id"], public["name"], public["count"]) == (0, "Public", 30)
    assert (private_block["id"], private_block["name"], private_block["count"]) == (1, "Private", 10)
    expected = _reference_ranks(preds, classes)
    assert private_block["top1"] == round(np.mean(expected[30:] == 1) * 100, 2)


def test_product_is_ranked_in_float64():
    # 0.5(1+2^-12) * (1+2^-12) > 0.5(1+2^-11) * 1 exactly, but both round to the same float32
    a, b, c = 0.5 * (1 + 2 ** -12), 1 + 2 ** -12, 0.5 * (1 + 2 ** -11)
    assert np.float32(a) * np.float32(b) == np.float32(c)
    preds = np.array([[a, c]], np.float32)
    _, ranks = evaluation.evaluate_with_prior(preds, [0], [0], np.array([[b, 1.0]], np.float32),
                                              locs=np.zeros((1, 2), np.float32))
    assert ranks.tolist() == [1]


def test_location_encoder_prior_with_nan_locations_falling_back_to_the_image(caplog):
    preds, classes, locs = _data(1)
    locs[[3, 17]] = np.nan
    model = build_model(default_params(["--frequency_num", "4", "--hidden_dim", "16", "--num_filts", "8"]), C, 2)
    with torch.no_grad():
        prior = model.eval()(torch.from_numpy(np.nan_to_num(locs))).double().numpy()
    expected_scores = preds.astype(np.float64) * prior
    expected_scores[[3, 17]] = preds[[3, 17]]
    model.train()
    with caplog.at_level(logging.INFO, logger="csp.evaluation"):
        result, ranks = evaluation.evaluate_with_prior(preds, classes, np.zeros(N, int), model, locs, "csp",
                                                       chunk_rows=7)
    assert model.training                                              # the mode is restored
    assert _messages(caplog)[0] == " Split ID: 0"                      # no header, no shape line
    np.testing.assert_array_equal(ranks.numpy(), _reference_ranks(expected_scores, classes))
    assert result["num_scored"] == N and result["splits"][0]["count"] == N


def test_callable_prior_sees_every_row_and_constant_prior_applies_to_every_row():
    preds, classes, locs = _data(2)
    locs[5] = np.nan
    seen = []

    def reversed_prior(chunk):
        seen.append(chunk)
        return torch.arange(C, 0, -1, dtype=torch.float64).expand(len(chunk), C)

    _, ranks = evaluation.evaluate_with_prior(preds, classes, np.zeros(N), reversed_prior, locs, chunk_rows=4)
    assert torch.cat(seen).shape == (N, 2) and torch.isnan(torch.cat(seen)[5]).all()   # the callable decides
    weights = np.arange(C, 0, -1, dtype=np.float64)
    np.testing.assert_array_equal(ranks.numpy(), _reference_ranks(preds * weights, classes))
    _, ranks = evaluation.evaluate_with_prior(preds, classes, np.zeros(N), weights)
    np.testing.assert_array_equal(ranks.numpy(), _reference_ranks(preds * weights, classes))


def test_location_only_drops_nan_rows_from_the_numerator_only(caplog):
    _, classes, locs = _data(3)
    locs[:4] = np.nan
    model = build_model(default_params(["--frequency_num", "4", "--hidden_dim", "16", "--num_filts", "8"]), C, 2)
    with caplog.at_level(logging.INFO, logger="csp.evaluation"):
        result, ranks = evaluation.evaluate_location_only(model, locs, classes, np.zeros(N, int), chunk_rows=9)
    assert _messages(caplog)[:4] == [evaluation.LOCATION_ONLY_HEADER, f"({N - 4},)", " Split ID: 0",
                                     f" Top 1\tLocEnc acc (%):   {round(np.mean(ranks.numpy() == 1) * 100, 2)}"]
    assert (ranks[:4] == 0).all() and (ranks[4:] > 0).all()
    with torch.no_grad():
        scores = model.eval()(torch.from_numpy(locs[4:])).numpy()
    np.testing.assert_array_equal(ranks[4:].numpy(), _reference_ranks(scores, classes[4:]))
    assert result["num_scored"] == N - 4 and result["splits"][0]["count"] == N


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream, chunk_rows, shown", [(_Terminal, 7, True), (_Terminal, N, False),
                                                       (io.StringIO, 7, False)])
def test_progress_bar_only_on_a_terminal_and_for_more_than_one_chunk(monkeypatch, stream, chunk_rows, shown):
    preds, classes, _ = _data()
    monkeypatch.setattr(sys, "stderr", stream())
    evaluation.evaluate_image_only(preds, classes, np.zeros(N), chunk_rows=chunk_rows)
    assert ("no_prior" in sys.stderr.getvalue()) == shown


class _FlatBaseline:
    """A fitted baseline as `baselines.make_baseline` returns it: name, log_header, prior(locs, device, dtype)."""

    def __init__(self, name, header):
        self.name, self.log_header = name, header

    def prior(self, locs, device="cpu", dtype=torch.float32):
        return torch.ones(len(locs), C, device=device, dtype=dtype)


def test_overall_top1_weights_the_splits_by_their_counts():
    result = {"splits": [{"count": 30, "top1": 10.0}, {"count": 10, "top1": 50.0}]}
    assert evaluation.overall_top1(result) == 20.0 and evaluation.overall_top1({"splits": []}) is None


def test_final_evaluation_runs_the_blocks_in_the_original_order(caplog):
    preds, classes, locs = _data(4)
    model = build_model(default_params(["--frequency_num", "4", "--hidden_dim", "16", "--num_filts", "8"]), C, 2)
    fitted = [_FlatBaseline("train_freq", "\nTrain frequency prior"), _FlatBaseline("grid", "\nDiscrete grid prior")]
    with caplog.at_level(logging.INFO, logger="csp.evaluation"):
        results, ranks = evaluation.run_final_evaluation(preds, classes, np.zeros(N), locs, model, fitted,
                                                         "gridcell")
    headers = [line for line in _messages(caplog) if line.startswith("\n")]
    assert headers == ["\nNo prior", "\nTrain frequency prior", "\nDiscrete grid prior",
                       "\nLocation encoder prior (image x location encoder)"]
    assert len(_messages(caplog)) == 4 * 5 + 4 + 1               # 4 blocks, 4 headers, one ({N},) line
    assert list(results) == ["no_prior", "train_freq", "grid", "gridcell"] == list(ranks)
    assert torch.equal(ranks["grid"], ranks["no_prior"])                 # a flat prior changes nothing
    with pytest.raises(ValueError, match="needs `locs`"):
        evaluation.evaluate_with_prior(preds, classes, np.zeros(N), model)
