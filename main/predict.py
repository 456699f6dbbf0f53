"""Rerank your own image classifier's predictions with a CSP location prior.

    python main/predict.py --checkpoint CK --table obs.csv --image_predictions preds.csv --out top5.csv
    python main/predict.py ... --image_predictions preds.npy --classifier_classes classes.txt
    python main/predict.py ... --fusion tempered --fit_on fit.csv --fit_predictions fit_preds.csv [--fit_for top1]

`--table`: CSV / Parquet with `image`, `lon`, `lat` (degrees; empty = unknown), optional `label` (then Top-1/5 are
printed) and `date` (models trained with dates). `--image_predictions`: a `.npy` (one row per table row, columns in
the order of `--classifier_classes`, one class name per line) or a CSV / Parquet with `image` and one column per
class name, matched to the table by `image`; `--image_predictions_kind probabilities` (checked: finite, >= 0, rows
summing to 1 within image_predictions.SUM_TOLERANCE) or `logits` (softmax). Classes are matched with the checkpoint's by name; the
fusion is that of fusion.py. `--out` (CSV or Parquet): `image, rank, class, score, image_score, prior` for the
`--top_k` best classes of each row; `score` is the fused score normalised over the classifier's classes, `prior`
the location model's P(class | x) (empty where the location or the class is unknown to it).
Bad input stops with one line naming the file, the column and the rows (exit status 2); nothing is written then.
From Python: `predict(...)` (the command's work, returns a `Prediction`) or `fusion` with `load_location_encoder`.
"""
import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

if not __package__:  # run as a script (`python predict.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import fusion
from . import own_data
from .arguments import run_command
from .checkpoints import check_class_head
from .image_predictions import KINDS, read_image_predictions
from .table_reader import TABLE_SUFFIXES, read_label_set, write_table
from .models import load_location_encoder

logger = logging.getLogger(__name__)

FUSIONS = ("product", "tempered")
CHUNK_ROWS = 8192


class PredictionTable(own_data.Observations):
    """The rows to predict: own_data's table checks, with `label` optional (`label_names` (N,) str, '' = none)."""

    def _labels(self, column, label_set):
        if column is None or not column.fillna("").astype(str).str.strip().any():
            return [], np.full(len(self.ids), -1, np.int64)
        return super()._labels(column, None)

    @property
    def label_names(self):
        names = np.array(list(self.class_names) + [""], dtype=object)
        return names[self.classes]


def prior_class_names(encoder, path, prior_classes=None):
    """The checkpoint's class names, or those of `--prior_classes` (checkpoints of the original code have none);
    ValueError when both are there and differ."""
    count = encoder.model.class_emb.weight.shape[0]
    if prior_classes is None:
        if not encoder.class_names:
            raise ValueError(f"--checkpoint {path} stores no class names (a checkpoint of the original code); give "
                             f"--prior_classes, a text file with its {count} class names in class-id order")
        return list(encoder.class_names)
    names = read_label_set(prior_classes, "--prior_classes")
    if len(names) != count:
        raise ValueError(f"--prior_classes {prior_classes}: {len(names)} names for the {count} classes of "
                         f"--checkpoint {path}")
    stored = list(encoder.class_names or [])
    if stored and stored != names:
        first = next(i for i, (a, b) in enumerate(zip(stored, names)) if a != b)
        raise ValueError(f"--prior_classes {prior_classes} differs from the class names stored in --checkpoint "
                         f"{path} (class {first}: {names[first]!r} there, {stored[first]!r} in the checkpoint); "
                         f"leave out --prior_classes, which is for checkpoints that store no names")
    return names


def takes_dates(encoder):
    return encoder.params["spa_enc_type"] == "geo_net" and bool(encoder.params.get("use_date_feats"))


def check_dates_given(table, encoder, path):
    """ValueError when the model takes dates and no row of `table` has one."""
    if takes_dates(encoder) and np.isnan(table.dates).all():
        raise ValueError(f"{table.path}: no dates (column 'date' missing or empty), but --checkpoint {path} was "
                         f"trained with dates; add a 'date' column (ISO dates such as 2021-06-30, or fractions of "
                         f"the year in [0, 1])")


def located_rows(table, encoder):
    """(N,) bool: rows the prior can score (a location; and a date where the model takes dates)."""
    located = ~np.isnan(table.locs).any(axis=1)
    return located & ~np.isnan(table.dates) if takes_dates(encoder) else located


def _factors(encoder, table, match, rows):
    """(len(rows), C) float64 prior factors of the classifier's classes at the table rows `rows` (all located)."""
    prior = encoder.class_probabilities(table.locs[rows], table.dates[rows] if takes_dates(encoder) else None)
    return fusion.prior_factors(prior.cpu(), match)


def _label_columns(table, classes):
    """(N,) int64 classifier column of each row's label (-1 none or not a classifier class), and the count of
    labels that are not classifier classes."""
    position = {name: index for index, name in enumerate(classes)}
    names = table.label_names
    columns = np.array([position.get(name, -1) for name in names], np.int64)
    return columns, int(((names != "") & (columns < 0)).sum())


def fit_tempered_alpha(encoder, match, fit_table, fit_predictions, objective):
    """(α, description line) fitted for `objective` (fusion.OBJECTIVES) on the labelled, located rows of
    `fit_table`."""
    labels, _ = _label_columns(fit_table, fit_predictions.classes)
    rows = np.flatnonzero(located_rows(fit_table, encoder) & (labels >= 0))
    if len(rows) == 0:
        raise ValueError(f"--fit_on {fit_table.path}: no rows with a location and a label among the classifier's "
                         f"classes; α is fitted on such rows")
    factors = _factors(encoder, fit_table, match, rows)
    alpha, values = fusion.fit_alpha(fit_predictions.probabilities(rows), factors, labels[rows], objective)
    what = "Top-1 (%)" if objective == "top1" else "mean log-likelihood"
    return alpha, (f"tempered fusion: α = {alpha:.3f} fitted for {objective} on {len(rows)} rows of {fit_table.path} "
                   f"({what} {values[alpha]:.4g}; product α = 1: {values[1.0]:.4g}; classifier alone: "
                   f"{values[0.0]:.4g})")


@dataclass
class Prediction:
    """What `predict` computed: `top` (DataFrame, the --out rows), `accuracy` {"classifier" | "with prior":
    {1: Top-1 %, 5: Top-5 %}} (None without labels), `num_labelled`, `alpha`, `match` (fusion.ClassMatch),
    `report` (the printed lines), `top_k` (classes per row: --top_k, at most the classifier's classes)."""
    top: pd.DataFrame
    accuracy: dict
    num_labelled: int
    alpha: float
    match: fusion.ClassMatch
    report: list
    top_k: int


def predict(checkpoint, table, image_predictions, classifier_classes=None, kind="probabilities",
            fusion_kind="product", fit_on=None, fit_predictions=None, top_k=5, device="cpu", prior_classes=None,
            fit_for="top1"):
    """The command's work (module doc) on file paths; returns a `Prediction` (nothing is written)."""
    if kind not in KINDS or fusion_kind not in FUSIONS:
        raise ValueError(f"--image_predictions_kind is one of {', '.join(KINDS)} and --fusion one of "
                         f"{', '.join(FUSIONS)}; got {kind!r}, {fusion_kind!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"--top_k must be an integer >= 1, got {top_k!r}")
    if (fusion_kind == "tempered") != (fit_on is not None and fit_predictions is not None):
        raise ValueError("--fusion tempered needs --fit_on (a labelled table) and --fit_predictions (the "
                         "classifier's output for it); --fusion product takes neither")
    classes = read_label_set(classifier_classes, "--classifier_classes") if classifier_classes else None
    rows = PredictionTable(table)
    preds = read_image_predictions(image_predictions, rows, kind, classes)
    fit = None
    if fit_on is not None:
        fit_table = PredictionTable(fit_on)
        fit = (fit_table, read_image_predictions(fit_predictions, fit_table, kind, classes, "--fit_predictions"))
        if fit[1].classes != preds.classes:
            raise ValueError(f"--fit_predictions {fit_predictions}: its classes differ from those of "
                             f"--image_predictions {image_predictions}; give the same classifier's output")
    encoder = load_location_encoder(str(checkpoint), device)
    check_class_head(encoder.params, checkpoint)
    for checked in (rows,) + ((fit[0],) if fit else ()):
        check_dates_given(checked, encoder, checkpoint)
    match = fusion.match_classes(preds.classes, prior_class_names(encoder, checkpoint, prior_classes))
    report = [match.describe()]
    alpha = 1.0
    if fit is not None:
        alpha, line = fit_tempered_alpha(encoder, match, *fit, fit_for)
        report.append(line)
    if top_k > len(preds.classes):
        report.append(f"--top_k {top_k} is more than the classifier's {len(preds.classes)} classes: all are written")
        top_k = len(preds.classes)
    if preds.unused:
        report.append(f"{preds.unused} rows of --image_predictions {image_predictions} are for images not in --table "
                      f"{table}: ignored")
    labels, foreign = _label_columns(rows, preds.classes)
    top, ranks, image_ranks, located = _rerank(encoder, rows, preds, labels, match, alpha, top_k)
    report.append(f"{located} of {len(rows)} rows have a location{' and a date' if takes_dates(encoder) else ''} "
                  f"and get the prior; the others keep the classifier's ranking")
    labelled = rows.label_names != ""
    accuracy = None
    if labelled.any():
        accuracy = {name: {k: float(np.round(np.count_nonzero((r[labelled] >= 1) & (r[labelled] <= k)) * 100
                                             / labelled.sum(), 2)) for k in (1, 5)}
                    for name, r in (("classifier", image_ranks), ("with prior", ranks))}
        report.append(f"Top-1 / Top-5 (%) on {labelled.sum()} labelled rows: classifier alone "
                      f"{accuracy['classifier'][1]:.2f} / {accuracy['classifier'][5]:.2f}, with the prior "
                      f"({fusion_kind}{f', α = {alpha:.3f}' if fit is not None else ''}) "
                      f"{accuracy['with prior'][1]:.2f} / {accuracy['with prior'][5]:.2f}")
        if foreign:
            report.append(f"{foreign} labels are not among the classifier's classes: counted as misses")
    return Prediction(top, accuracy, int(labelled.sum()), alpha, match, report, top_k)


def _rerank(encoder, table, preds, labels, match, alpha, top_k):
    """(top DataFrame, ranks with the prior, ranks of the classifier alone, number of located rows); `labels`: the
    rows' label columns (-1: none)."""
    located = located_rows(table, encoder)
    classes = np.array(preds.classes, dtype=object)
    ranks = np.zeros(len(table), np.int64)
    image_ranks = np.zeros(len(table), np.int64)
    parts = []
    for start in range(0, len(table), CHUNK_ROWS):
        stop = min(start + CHUNK_ROWS, len(table))
        probs = preds.probabilities(slice(start, stop))
        here = located[start:stop]
        factors = _factors(encoder, table, match, start + np.flatnonzero(here))
        scores = fusion.fuse(probs, factors, here, alpha)
        chunk_ranks, top = fusion.ranks_and_top(scores, labels[start:stop], top_k)
        ranks[start:stop] = chunk_ranks.numpy()
        image_ranks[start:stop] = fusion.ranks_of(probs, labels[start:stop]).numpy()
        prior = torch.full(probs.shape, float("nan"), dtype=torch.float64)
        prior[torch.from_numpy(here)] = factors.masked_fill(torch.from_numpy(match.prior_index < 0), float("nan"))
        normalised = scores / scores.sum(dim=1, keepdim=True)
        parts.append(pd.DataFrame({
            "image": np.repeat(table.ids[start:stop], top_k),
            "rank": np.tile(np.arange(1, top_k + 1), stop - start),
            "class": classes[top.numpy()].reshape(-1),
            "score": normalised.gather(1, top).reshape(-1).numpy(),
            "image_score": probs.gather(1, top).reshape(-1).numpy(),
            "prior": prior.gather(1, top).reshape(-1).numpy()}))
    return pd.concat(parts, ignore_index=True), ranks, image_ranks, int(located.sum())


def check_out(path, overwrite, suffixes=TABLE_SUFFIXES, flag="--out"):
    """ValueError for an output path of another kind, or one that exists (unless `overwrite`)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{flag} {path}: give a file name ending in {' or '.join(suffixes)}")
    if path.exists() and not overwrite:
        raise ValueError(f"{flag} {path} exists and is not overwritten; give another {flag} or add --overwrite")
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name")


def make_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a fine-tuned checkpoint (.pth.tar or .safetensors)")
    p.add_argument("--table", required=True, help="CSV / Parquet: image, lon, lat [, label, date]")
    p.add_argument("--image_predictions", required=True,
                   help=".npy (with --classifier_classes) or CSV / Parquet (image + one column per class)")
    p.add_argument("--out", required=True, help="CSV / Parquet: image, rank, class, score, image_score, prior")
    p.add_argument("--classifier_classes", help="text file: the .npy's class names, one per line, in column order")
    p.add_argument("--image_predictions_kind", default="probabilities", choices=KINDS)
    p.add_argument("--fusion", default="product", choices=FUSIONS,
                   help="product: p(y|I) p(y|x); tempered: p(y|I) p(y|x)^alpha, alpha fitted on --fit_on")
    p.add_argument("--fit_on", help="labelled table (as --table) to fit alpha on (--fusion tempered)")
    p.add_argument("--fit_predictions", help="the classifier's output for --fit_on (as --image_predictions)")
    p.add_argument("--fit_for", default="top1", choices=fusion.OBJECTIVES,
                   help="what alpha maximises on --fit_on: Top-1, or the mean log-likelihood of the labels")
    p.add_argument("--top_k", type=int, default=5, help="classes written per row")
    p.add_argument("--prior_classes", help="text file: the checkpoint's class names (when it stores none)")
    p.add_argument("--device", default="cpu", help="cpu, cuda:0 or auto")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def main(argv=None):
    args = make_parser().parse_args(sys.argv[1:] if argv is None else argv)
    check_out(args.out, args.overwrite)
    done = predict(args.checkpoint, args.table, args.image_predictions, args.classifier_classes,
                   args.image_predictions_kind, args.fusion, args.fit_on, args.fit_predictions, args.top_k,
                   args.device, args.prior_classes, args.fit_for)
    write_table(done.top, args.out)
    print("\n".join(done.report + [f"Wrote the top {done.top_k} classes of each row to {os.fspath(args.out)}"]))
    return done


if __name__ == "__main__":
    run_command(main, output_flag="--out")
