"""An image classifier's class probabilities fused with the location prior, classes matched by name.

    product:  s_c = p(c | I) · P(c | x)        (the paper's; the evaluation's "image x location prior")
    tempered: s_c = p(c | I) · P(c | x)^α      (α >= 0 fitted on labelled rows for Top-1 or likelihood, `fit_alpha`)

P(c | x) = σ(e(x) · W_c) is the location encoder's prior of the classifier's class c, found by name among the
checkpoint's classes. A class the prior does not know gets the neutral factor: the mean of the prior over the
matched classes at x (what a uniform prior over them would give after normalising), so it keeps its place among
classes of average prior. Rows without a location keep the classifier's scores. Scores are float64 and not
normalised; ranks and top-k follow the evaluation's rule (among equal scores the higher column ranks first).
"""
import logging
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from .evaluation import label_ranks

logger = logging.getLogger(__name__)

ALPHA_BOUNDS = (0.0, 10.0)
ALPHA_GRID = np.round(np.concatenate([np.arange(0.0, 3.0, 0.05), np.arange(3.0, 10.001, 0.25)]), 4)
OBJECTIVES = ("top1", "likelihood")
LOG_FLOOR = 1e-30   # probabilities below are taken as this (log scores of `fit_alpha`)


@dataclass
class ClassMatch:
    """`prior_index` (C,) int64: for each classifier class (column) its class id in the prior, -1 when unknown."""
    classifier_classes: list
    prior_classes: list
    prior_index: np.ndarray

    @property
    def num_matched(self):
        return int((self.prior_index >= 0).sum())

    @property
    def unknown(self):
        """Classifier classes the prior does not know (they get the neutral factor)."""
        return [name for name, index in zip(self.classifier_classes, self.prior_index) if index < 0]

    def describe(self):
        unknown = self.unknown
        shown = ", ".join(unknown[:5]) + (", …" if len(unknown) > 5 else "")
        return (f"{self.num_matched} of the classifier's {len(self.classifier_classes)} classes matched by name with "
                f"the prior's {len(self.prior_classes)}"
                + (f"; {len(unknown)} unknown to the prior get a neutral factor ({shown})" if unknown else "")
                + (f"; {len(self.prior_classes) - self.num_matched} known only to the prior are ignored"
                   if len(self.prior_classes) > self.num_matched else ""))


def match_classes(classifier_classes, prior_classes):
    """ClassMatch of two lists of class names (each without repeats); ValueError when none matches."""
    position = {name: index for index, name in enumerate(prior_classes)}
    index = np.array([position.get(name, -1) for name in classifier_classes], np.int64)
    match = ClassMatch(list(classifier_classes), list(prior_classes), index)
    if match.num_matched == 0:
        raise ValueError(f"none of the classifier's {len(classifier_classes)} classes (e.g. "
                         f"{', '.join(map(repr, classifier_classes[:3]))}) is among the prior's "
                         f"{len(prior_classes)} (e.g. {', '.join(map(repr, prior_classes[:3]))}); the names must be "
                         f"the same strings")
    return match


def prior_factors(prior, match):
    """(n, C) float64 factors P(c | x) of the classifier's columns from the prior (n, K) (the neutral factor, the
    row's mean over the matched classes, for classes unknown to the prior)."""
    prior = torch.as_tensor(prior).double()
    known = torch.from_numpy(match.prior_index)
    factors = prior[:, known.clamp(min=0)]
    unknown = known < 0
    if unknown.any():
        neutral = prior[:, known[~unknown]].mean(dim=1, keepdim=True)
        factors[:, unknown] = neutral.expand(-1, int(unknown.sum()))
    return factors


def fuse(image_probs, factors, located, alpha=1.0):
    """(n, C) float64 scores p(c | I) · factor^α (module doc); rows where `located` (n,) bool is False keep
    `image_probs`. `factors` (m, C) holds the located rows only, in order."""
    scores = torch.as_tensor(image_probs).double().clone()
    located = torch.as_tensor(located, dtype=torch.bool)
    if located.any():
        factors = torch.as_tensor(factors).double()
        scores[located] *= factors if alpha == 1.0 else factors.pow(alpha)
    return scores


def ranks_and_top(scores, labels, top_k):
    """(ranks (n,) int64 of `labels` (int64, -1 = no label, rank 0), top (n, k) int64 columns best first) of
    (n, C) scores, by the evaluation's rank rule."""
    scores = torch.as_tensor(scores)
    order = torch.sort(scores.flip(1), dim=1, descending=True, stable=True).indices[:, :top_k]
    return ranks_of(scores, labels), scores.shape[1] - 1 - order


def ranks_of(scores, labels):
    """Ranks (n,) int64 of `labels` (int64, -1 = no label, rank 0) under (n, C) scores, by the evaluation's rule."""
    scores = torch.as_tensor(scores)
    labels = torch.as_tensor(labels, dtype=torch.long)
    ranks = torch.zeros(len(labels), dtype=torch.long)
    labelled = labels >= 0
    if labelled.any():
        ranks[labelled] = label_ranks(scores[labelled], labels[labelled])
    return ranks


def fit_alpha(image_probs, factors, labels, objective="top1"):
    """α >= 0 of the tempered fusion fitted on rows with a label (`labels` (n,) int64 column, -1 = skip) and a
    location (`factors` (n, C) those rows'). objective "top1": the α of ALPHA_GRID with the most rows whose label
    ranks first (among equals the one nearest 1, the product); "likelihood": the α in ALPHA_BOUNDS maximising the
    mean log-likelihood of the label under the normalised scores. Returns (α, {α, 1.0, 0.0: objective value})."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    rows = labels >= 0
    if not rows.any():
        raise ValueError("fitting α needs labelled rows with a location")
    log_image = torch.as_tensor(image_probs)[rows].double().clamp_min(LOG_FLOOR).log()
    log_prior = torch.as_tensor(factors)[rows].double().clamp_min(LOG_FLOOR).log()
    true = labels[rows]

    def top1(alpha):
        return 100.0 * float((label_ranks(log_image + alpha * log_prior, true) == 1).double().mean())

    def mean_log_likelihood(alpha):
        logits = log_image + alpha * log_prior
        return float((logits.gather(1, true.unsqueeze(1)).squeeze(1) - torch.logsumexp(logits, dim=1)).mean())

    if objective == "top1":
        scores = np.array([top1(alpha) for alpha in ALPHA_GRID])
        best = ALPHA_GRID[scores == scores.max()]
        alpha, value = float(best[np.abs(best - 1.0).argmin()]), top1
    elif objective == "likelihood":
        found = minimize_scalar(lambda a: -mean_log_likelihood(a), bounds=ALPHA_BOUNDS, method="bounded",
                                options={"xatol": 1e-4})
        alpha, value = float(found.x), mean_log_likelihood
    else:
        raise ValueError(f"the objective of fitting α is one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return alpha, {alpha: value(alpha), 1.0: value(1.0), 0.0: value(0.0)}
