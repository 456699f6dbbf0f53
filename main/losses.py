"""CSP's pre-training losses (Mai et al. 2023; contsoftmax = CSP-MC-BLD, imgcontlossnolocneg / imgcontloss /
imgcontlosssimcse = CSP-NCE-B / -BL / -BLD) and the presence-only loss (Mac Aodha et al. 2019). Locations: (B, 2)
float32 (lon, lat) degrees [+ a date in [0, 1] for geo_net]; under torchrun the in-batch terms use the global batch.
"""
import math

import torch
import torch.nn.functional as F

from . import distributed
from .models import eval_mode

BCE_EPS = 1e-5
NEG_RAND_TYPES = ("spherical", "sphericalold", "uniform")
UNSUPER_LOSSES = ("l2regress", "imgcontloss", "imgcontlossnolocneg", "imgcontlosssimcse", "contsoftmax",
                  "contsoftmaxsym")
# the pre-training losses with a random-location term and with a SimCSE (second dropout view) term
RANDOM_LOCATION_LOSSES = ("imgcontloss", "imgcontlosssimcse", "contsoftmax", "contsoftmaxsym")
SIMCSE_LOSSES = ("imgcontlosssimcse", "contsoftmax", "contsoftmaxsym")
TRAIN_LOSSES = ("full_loss", "full_loss_user")
# CPU row blocks of the dense (rows, classes) terms: temporaries stay below glibc's mmap threshold
CPU_BLOCK_ELEMENTS = 4 * 2 ** 20


def rand_samples(n, device, neg_rand_type, use_date_feats=False, generator=None):
    """`n` random locations (n, 2) float32 (lon, lat) degrees [+ a date in [0, 1) with `use_date_feats`]
    from u = 2·U[0, 1) − 1: `sphericalold` (the original's) (180·r·cos θ, 90·r·sin θ), θ = π(u₁ + 1), r = √(1 − u₀²);
    `spherical` (180·u₀, asin u₁); `uniform` (180·u₀, 90·u₁)."""
    drawn = {"generator": generator} if generator is not None else {}  # torch.compile: no generator=None with a
    u = torch.rand(n, 3, device=device, **drawn) * 2 - 1                # symbolic n
    if neg_rand_type == "sphericalold":
        theta = ((u[:, 1] + 1) / 2.0) * (2 * math.pi)
        radius = torch.sqrt(1.0 - u[:, 0] ** 2)
        lon, lat = radius * torch.cos(theta) * 180, radius * torch.sin(theta) * 90
    elif neg_rand_type == "spherical":
        lon, lat = u[:, 0] * 180, torch.rad2deg(torch.asin(u[:, 1]))
    elif neg_rand_type == "uniform":
        lon, lat = u[:, 0] * 180, u[:, 1] * 90
    else:
        raise ValueError(f"--neg_rand_type {neg_rand_type!r} is unknown; use one of {', '.join(NEG_RAND_TYPES)}")
    columns = [lon, lat, (u[:, 2] + 1) / 2] if use_date_feats else [lon, lat]
    return torch.stack(columns, dim=1)


def _bce(p):
    return -torch.log(p + BCE_EPS)


class _NegativeBCERowSums(torch.autograd.Function):
    """s_i = Σ_c bce(1 − σ(E_i·W_c)), E (N, D), W (C, D); saves only σ for backward; float32 under
    bf16 autocast too (ε = 1e-5 would vanish)."""

    @staticmethod
    def forward(ctx, emb, weight):
        dtype = torch.promote_types(torch.promote_types(emb.dtype, weight.dtype), torch.float32)
        with torch.autocast(emb.device.type, enabled=False):
            return _NegativeBCERowSums._forward(ctx, emb.to(dtype), weight.to(dtype))

    @staticmethod
    def _forward(ctx, emb, weight):
        if emb.device.type == "cpu":
            rows = max(1, CPU_BLOCK_ELEMENTS // max(1, weight.shape[0]))
        else:
            rows = max(1, emb.shape[0])
        sigmoids, sums = [], []
        work = None
        for block in emb.split(rows):
            s = torch.mm(block, weight.t()).sigmoid_()
            work = _one_minus_plus_eps(s, work)
            sums.append(work.log_().sum(dim=1).neg_())
            sigmoids.append(s)
        ctx.save_for_backward(emb, weight, *sigmoids)
        return torch.cat(sums)

    @staticmethod
    def backward(ctx, grad_sums):
        emb, weight, *sigmoids = ctx.saved_tensors
        grad_emb = emb.new_empty(emb.shape) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        start = 0
        work = None
        for s in sigmoids:
            stop = start + s.shape[0]
            work = _one_minus_plus_eps(s, work)
            grad = torch.addcdiv(s, s, work, value=-BCE_EPS, out=work).mul_(grad_sums[start:stop, None])
            if grad_emb is not None:
                torch.mm(grad, weight, out=grad_emb[start:stop])
            if grad_weight is not None:
                grad_weight.addmm_(grad.t(), emb[start:stop])
            start = stop
        return grad_emb, grad_weight


def _one_minus_plus_eps(s, work):
    """(1 − s) + 1e-5 in two float32 steps (the original's rounding), into `work` if large enough."""
    work = torch.empty_like(s) if work is None or work.shape[0] < s.shape[0] else work[:s.shape[0]]
    return torch.neg(s, out=work).add_(1.0).add_(BCE_EPS)


def _presence_sum(emb, weight, labels, pos_weight, negative_sums):
    """Σ over (B, C) of bce(1 − σ(e·Wᵀ)), entry (i, y_i) replaced by pos_weight · bce(σ(e_i·W_{y_i}));
    `negative_sums` (B,): the row sums before the replacement."""
    z = (emb * weight[labels]).sum(dim=1)
    p = torch.sigmoid(z)
    return negative_sums.sum() + (pos_weight * _bce(p) - _bce(1.0 - p)).sum()


def _negatives(locs, count, neg_rand_type, neg_locs):
    if neg_locs is None:
        return rand_samples(count, locs.device, neg_rand_type, use_date_feats=locs.shape[1] == 3)
    if neg_locs.shape != (count, locs.shape[1]):
        raise ValueError(f"neg_locs has shape {tuple(neg_locs.shape)}, expected ({count}, {locs.shape[1]}): "
                         f"rows k·B + i = negative k of sample i")
    return neg_locs.to(device=locs.device, dtype=locs.dtype)


def _embed_views(model, locs, neg_locs, simcse):
    """Normalised embeddings (x, negatives or None, second dropout view or None) from one forward pass."""
    second_view = simcse and model.training
    parts = [locs] + ([neg_locs] if neg_locs is not None else []) + ([locs] if second_view else [])
    emb = F.normalize(model(torch.cat(parts) if len(parts) > 1 else locs, return_feats=True), dim=-1)
    batch = locs.shape[0]
    a = emb[:batch]
    r = emb[batch:batch + neg_locs.shape[0]] if neg_locs is not None else None
    a2 = (emb[-batch:] if second_view else a) if simcse else None
    return a, r, a2


def _nce(m_emb, m_weight, masked=None):
    """Binary in-batch term of M = E·Wᵀ (B, B), B ≥ 2: mean_i [(B−1)·bce(σ(M_ii)) + Σ_{j≠i} bce(1 − σ(M_ij))]
    / (B − 1); `masked` (B, B) bool: pairs whose negative term is left out."""
    batch = m_emb.shape[0]
    diag = (m_emb * m_weight).sum(dim=1)
    p = torch.sigmoid(diag)
    rows = _NegativeBCERowSums.apply(m_emb, m_weight) - _bce(1.0 - p) + (batch - 1) * _bce(p)
    if masked is not None:
        rows = rows - (_bce(1.0 - torch.sigmoid(m_emb @ m_weight.t())) * masked).sum(dim=1)
    return rows.mean() / (batch - 1)


@torch.compiler.disable
def _row_ids(values):
    """(B,) int64: equal ids for bit-equal rows of `values` (B, ...)."""
    return torch.unique(values.reshape(len(values), -1), dim=0, return_inverse=True)[1]


def duplicate_pairs(locs, img_feats):
    """(same location, same location or same image features): (B, B) bool masks of pairs i ≠ j with
    equal rows, each other's false negatives."""
    def same(values):
        ids = _row_ids(values)
        return (ids[:, None] == ids[None, :]).fill_diagonal_(False)
    same_location = same(locs)
    return same_location, same_location | same(img_feats)


def unsuper_loss(model, locs, img_feats, params, neg_locs=None):
    """Pre-training loss `params['unsuper_loss']` of one batch (scalar tensor).

    locs (B, 2|3); img_feats (B, cnn_feat_dim); neg_locs (K·B, 2|3), row k·B + i for sample i (default: drawn,
    K = num_neg_rand_loc). `params['mask_duplicate_negatives']` leaves `duplicate_pairs` out of the in-batch terms."""
    name = params["unsuper_loss"]
    if name == "l2regress":
        return F.mse_loss(model.loc_dec(model(locs, return_feats=True)), img_feats)
    batch = locs.shape[0]
    w_rand = params["rand_sample_weight"] if name in RANDOM_LOCATION_LOSSES else 0.0
    w_simcse = params["simcse_weight"] if name in SIMCSE_LOSSES else 0.0
    num_neg = params["num_neg_rand_loc"]
    negs = _negatives(locs, num_neg * batch, params["neg_rand_type"], neg_locs) if w_rand != 0 else None
    a, r, a2 = _embed_views(model, locs, negs, simcse=w_simcse != 0)
    g = F.normalize(model.img_dec(img_feats), dim=-1)
    r = distributed.gather(r.view(num_neg, batch, -1), dim=1) if r is not None else None
    a, g = distributed.gather(a), distributed.gather(g)
    a2 = distributed.gather(a2) if a2 is not None else None
    masks = (duplicate_pairs(distributed.gather(locs), distributed.gather(img_feats))
             if params.get("mask_duplicate_negatives") else (None, None))
    if name.startswith("contsoftmax"):
        return _softmax_terms(name, a, g, r, a2, w_rand, w_simcse, params, masks)
    return _sigmoid_terms(a, g, r, a2, w_rand, w_simcse, masks)


def _softmax_terms(name, a, g, r, a2, w_rand, w_simcse, params, masks=(None, None)):
    """contsoftmax(sym): a, g (B, D) location and image embeddings, r (K, B, D) negatives or None, a2
    (B, D) second view or None; cross-entropies of the temperature-scaled similarities; `masks` as `duplicate_pairs`."""
    same_location, same_pair = masks
    labels = torch.arange(a.shape[0], device=a.device)
    sims = _masked(a @ (g / params["unsuper_temp_inbatch"]).t(), same_pair)
    loss = F.cross_entropy(sims, labels)
    if name == "contsoftmaxsym":
        loss = loss + F.cross_entropy(sims.t(), labels)
    if r is not None:
        logits = torch.cat([(a * g).sum(dim=1, keepdim=True), (r * g).sum(dim=-1).t()], dim=1)
        loss = loss + w_rand * F.cross_entropy(logits / params["unsuper_temp_negloc"], torch.zeros_like(labels))
    if a2 is not None:
        sims = _masked(a @ (a2 / params["unsuper_temp_simcse"]).t(), same_location)
        loss = loss + w_simcse * F.cross_entropy(sims, labels)
    return loss


def _masked(logits, pairs):
    return logits if pairs is None else logits.masked_fill(pairs, float("-inf"))


def _sigmoid_terms(a, g, r, a2, w_rand, w_simcse, masks=(None, None)):
    """imgcontloss family (arguments as `_softmax_terms`)."""
    same_location, same_pair = masks
    loss = _nce(a, g, same_pair)
    if r is not None:
        loss = loss + w_rand * _bce(1.0 - torch.sigmoid((r * g).sum(dim=-1))).mean()
    if a2 is not None:
        loss = loss + w_simcse * _nce(a, a2, same_location)
    return loss


def embedding_loss(model, locs, classes, users, params, neg_locs=None):
    """Presence-only fine-tuning loss `params['train_loss']` of one batch (scalar tensor).

    locs (B, 2|3), classes (B,), users (B,) int64; neg_locs (B, 2|3) or drawn. With p = σ(e·Wᵀ): L_pos = mean over
    (B, C) of bce(1 − p), (i, y_i) replaced by C·bce(p_{i,y_i}); L_bg the same at the random locations, unreplaced.
    full_loss = L_pos + rand_sample_weight·L_bg; full_loss_user adds the user terms of Mac Aodha et al. (2019)."""
    name = params["train_loss"]
    batch = locs.shape[0]
    negs = _negatives(locs, batch, params["neg_rand_type"], neg_locs)
    emb = model(torch.cat([locs, negs]), return_feats=True)
    e, e_rand = emb[:batch], emb[batch:]
    weight = model.class_emb.weight
    pos_weight = params["num_classes"]
    cells = batch * weight.shape[0]
    if name == "full_loss":
        sums = _NegativeBCERowSums.apply(emb, weight)
        loss_pos = _presence_sum(e, weight, classes, pos_weight, sums[:batch]) / cells
        return loss_pos + params["rand_sample_weight"] * sums[batch:].sum() / cells
    # the dense user-class terms depend on the user only: compute them once per distinct user of the batch
    distinct_users, user_index = torch.unique(users, return_inverse=True)
    sums = _NegativeBCERowSums.apply(torch.cat([emb, model.user_emb.weight[distinct_users]]), weight)
    user = model.user_emb.weight[users]
    loss_pos = _presence_sum(e, weight, classes, pos_weight, sums[:batch]) / cells
    loss_bg = sums[batch:2 * batch].sum() / cells
    loss_user_loc = (_bce(torch.sigmoid((user * e).sum(dim=1))).mean()
                     + _bce(1.0 - torch.sigmoid((user * e_rand).sum(dim=1))).mean())
    loss_user_class = _presence_sum(user, weight, classes, pos_weight, sums[2 * batch:][user_index]) / cells
    return loss_pos + loss_bg + loss_user_loc + loss_user_class


def val_loss(model, locs, classes, batch_size=4096):
    """The "Test loss" line's value: mean over samples of bce(σ(e_i·W_{y_i})) in eval mode (float); locs (N, 2|3),
    classes (N,) int64 on the model's device."""
    if len(locs) == 0:
        raise ValueError("val_loss needs at least one validation sample")
    weight = model.class_emb.weight
    total = torch.zeros((), dtype=torch.float64, device=weight.device)   # one host read at the end, not per batch
    with eval_mode(model):
        for start in range(0, len(locs), batch_size):
            e = model(locs[start:start + batch_size], return_feats=True)
            z = (e * weight[classes[start:start + batch_size]]).sum(dim=1)
            total += _bce(torch.sigmoid(z)).sum()
    return total.item() / len(locs)
