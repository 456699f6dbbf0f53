"""Batched evaluation, logged as the original's lines: per split, top-k = 100 · #(rank ≤ k) / N (2
decimals) and MRR = mean 1/rank (0: not scored). Rank = 1 + #(higher scores) + #(equal scores of a higher class
index); a NaN true-class score ranks last.
"""
import logging
import sys
from functools import partial

import numpy as np
import torch
from tqdm import tqdm

from .models import eval_mode

logger = logging.getLogger(__name__)

TOP_K = (1, 3, 5, 10)
# headings of the blocks the original logged without one (the image × location-encoder block follows "No prior"
# and is the paper's number; the location-only block is "LocEnc")
LOCATION_PRIOR_HEADER = "\nLocation encoder prior (image x location encoder)"
LOCATION_ONLY_HEADER = "\nLocation encoder alone (LocEnc)"


def label_ranks(scores, labels):
    """(N,) int64 rank (1 = best) of labels[i] in scores[i] (N, C)."""
    labels = labels.to(device=scores.device, dtype=torch.long).view(-1, 1)
    true_score = scores.gather(1, labels)
    later_class = torch.arange(scores.shape[1], device=scores.device) > labels
    ahead = (scores > true_score).sum(dim=1, dtype=torch.int32)
    ahead += (scores == true_score).logical_and_(later_class).sum(dim=1, dtype=torch.int32)
    return (ahead.long() + 1).masked_fill_(true_score.isnan().squeeze(1), scores.shape[1])


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.long: np.int64}


def _as_tensor(array, device, dtype):
    if torch.is_tensor(array):
        return array.to(device=device, dtype=dtype)
    return torch.from_numpy(np.array(array, dtype=_NUMPY_DTYPES[dtype])).to(device)


def _chunk_rows(device, num_classes):
    return max(1, (2 ** 21 if device.type == "cpu" else 2 ** 25) // max(1, num_classes))


def _split_blocks(split_ids):
    split_ids = np.asarray(split_ids.cpu() if torch.is_tensor(split_ids) else split_ids).reshape(-1)
    values = np.unique(split_ids)
    names = {False: "Public", True: "Private"} if split_ids.dtype == bool else {}
    return [(i, names.get(v.item(), str(v.item())), np.flatnonzero(split_ids == v)) for i, v in enumerate(values)]


def summarize(ranks, split_ids, method, flag="", num_scored=None):
    """Log the top-k lines of each split and return {method, flag, num_rows, num_scored, splits: [{id, name,
    count, top1, top3, top5, top10, mrr}]}; ranks (N,) int64, 0 = not scored (a miss)."""
    ranks = np.asarray(ranks.cpu() if torch.is_tensor(ranks) else ranks)
    if len(ranks) != len(split_ids):
        raise ValueError(f"{len(ranks)} ranks but {len(split_ids)} split ids")
    splits = []
    for block_id, name, rows in _split_blocks(split_ids):
        block = ranks[rows]
        scored = block > 0
        entry = {"id": block_id, "name": name, "count": int(len(rows))}
        logger.info(" Split ID: %d", block_id)
        for k in TOP_K:
            value = float(np.round(np.count_nonzero(scored & (block <= k)) * 100 / len(rows), 2))
            logger.info(" Top %d\t%sacc (%%):   %s", k, flag, value)
            entry[f"top{k}"] = value
        entry["mrr"] = float((1.0 / block[scored]).sum() / len(rows))
        splits.append(entry)
    return {"method": method, "flag": flag, "num_rows": int(len(ranks)),
            "num_scored": int(np.count_nonzero(ranks > 0) if num_scored is None else num_scored), "splits": splits}


def overall_top1(result):
    """Top-1 (%) of a `summarize` result over all splits; None without rows."""
    total = sum(split["count"] for split in result["splits"])
    return round(sum(split["top1"] * split["count"] for split in result["splits"]) / total, 2) if total else None


def _ranks_in_chunks(classes, num_classes, scores_of, chunk_rows, device, desc):
    """Ranks (N,) int64 on the CPU; `scores_of(start, stop)` gives (scores, rows or None)."""
    ranks = torch.zeros(len(classes), dtype=torch.long)
    chunk_rows = chunk_rows or _chunk_rows(device, num_classes)
    starts = range(0, len(classes), chunk_rows)
    for start in tqdm(starts, desc=desc, unit="chunk", leave=False,
                      disable=len(starts) <= 1 or not sys.stderr.isatty()):
        stop = min(start + chunk_rows, len(classes))
        scores, rows = scores_of(start, stop)
        if rows is None:
            ranks[start:stop] = label_ranks(scores, classes[start:stop]).cpu()
        elif len(rows):
            ranks[rows.cpu()] = label_ranks(scores, classes[rows]).cpu()
    return ranks


def _valid_rows(locs, start, stop):
    valid = ~torch.isnan(locs[start:stop]).any(dim=1)
    return None if bool(valid.all()) else valid.nonzero().squeeze(1) + start


def _device_of(*candidates):
    for candidate in candidates:
        if isinstance(candidate, torch.nn.Module):
            return next(candidate.parameters()).device
        if torch.is_tensor(candidate):
            return candidate.device
    return torch.device("cpu")


def evaluate_image_only(preds, classes, split_ids, flag="", chunk_rows=None, device=None):
    """"No prior": rank by preds (N, C); returns (`summarize` result, ranks (N,))."""
    device = device or _device_of(preds)
    classes = _as_tensor(classes, device, torch.long)
    logger.info("\nNo prior")
    logger.info("(%d,)", len(classes))

    def scores_of(start, stop):
        return _as_tensor(preds[start:stop], device, torch.float32), None

    ranks = _ranks_in_chunks(classes, preds.shape[1], scores_of, chunk_rows, device, "no_prior")
    return summarize(ranks, split_ids, "no_prior", flag), ranks


def evaluate_with_prior(preds, classes, split_ids, prior, locs=None, method="location_prior", header=None,
                        flag="", chunk_rows=None, device=None):
    """Rank by p_img,c · prior_c (float64, not renormalised); returns (`summarize` result, ranks).

    preds (N, C); locs (N, 2|3) (lon, lat) degrees [+ date], NaN if unknown. prior: a location encoder (rows without a
    location keep the image prediction), a callable on (n, 2|3) chunks giving (n, C), an (N, C) array, or a (C,)
    vector (`locs` may be None)."""
    device = device or _device_of(prior, preds, locs)
    classes = _as_tensor(classes, device, torch.long)
    encoder = isinstance(prior, torch.nn.Module)
    constant = not callable(prior) and np.ndim(prior) == 1
    if constant:
        prior_row = _as_tensor(prior, device, torch.float64)
    elif locs is None and callable(prior):
        raise ValueError(f"evaluate_with_prior({method}): a location prior needs `locs` (N, 2) lon/lat degrees")
    elif locs is not None:
        locs = _as_tensor(locs, device, torch.float32)
    if header is not None:
        logger.info(header)

    def scores_of(start, stop):
        pred = _as_tensor(preds[start:stop], device, torch.float64)
        if constant:
            return pred.mul_(prior_row), None
        if not encoder:
            values = prior(locs[start:stop]) if callable(prior) else prior[start:stop]
            return pred.mul_(_as_tensor(values, device, torch.float64)), None
        valid = _valid_rows(locs, start, stop)
        if valid is None:
            pred.mul_(prior(locs[start:stop]))
        elif len(valid):
            pred[valid - start] *= prior(locs[valid])
        return pred, None

    with eval_mode(prior) if encoder else torch.no_grad():
        ranks = _ranks_in_chunks(classes, preds.shape[1], scores_of, chunk_rows, device, method)
    return summarize(ranks, split_ids, method, flag), ranks


def evaluate_location_only(model, locs, classes, split_ids, flag="LocEnc ", chunk_rows=None):
    """"LocEnc": rank by σ(e(x)·Wᵀ) alone; rows without a location get rank 0. Returns
    (`summarize` result, ranks (N,))."""
    device = _device_of(model)
    locs = _as_tensor(locs, device, torch.float32)
    classes = _as_tensor(classes, device, torch.long)
    num_scored = int((~torch.isnan(locs).any(dim=1)).sum())
    logger.info(LOCATION_ONLY_HEADER)
    logger.info("(%d,)", num_scored)

    def scores_of(start, stop):
        valid = _valid_rows(locs, start, stop)
        if valid is None:
            return model(locs[start:stop]), None
        return (model(locs[valid]) if len(valid) else None), valid

    with eval_mode(model):
        ranks = _ranks_in_chunks(classes, model.class_emb.weight.shape[0], scores_of, chunk_rows, device,
                                 "location_only")
    return summarize(ranks, split_ids, "location_only", flag, num_scored), ranks


def run_final_evaluation(preds, classes, split_ids, locs, model=None, baselines=(), method="location_prior",
                         flag="", chunk_rows=None):
    """"No prior", image × each baseline, then image × `model`; returns
    ({method: result}, {method: ranks})."""
    results, ranks = {}, {}
    results["no_prior"], ranks["no_prior"] = evaluate_image_only(preds, classes, split_ids, flag, chunk_rows)
    device = _device_of(preds, locs)
    for baseline in baselines:
        prior = partial(baseline.prior, device=device, dtype=torch.float64)
        results[baseline.name], ranks[baseline.name] = evaluate_with_prior(
            preds, classes, split_ids, prior, locs, baseline.name, baseline.log_header, flag, chunk_rows, device)
    if model is not None:
        results[method], ranks[method] = evaluate_with_prior(preds, classes, split_ids, model, locs, method,
                                                             LOCATION_PRIOR_HEADER, flag, chunk_rows)
    return results, ranks
