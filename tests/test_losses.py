import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from csp import encoders
from csp import losses
from csp.arguments import default_params
from csp.checkpoints import load_checkpoint, load_state, model_file_names
from csp.models import build_model

B, K, C, U, IMG = 12, 2, 7, 3, 24
SMALL = ["--frequency_num", "4", "--hidden_dim", "32", "--num_filts", "16", "--dropout", "0",
         "--num_neg_rand_loc", str(K), "--rand_sample_weight", "0.7", "--simcse_weight", "0.3",
         "--unsuper_temp_inbatch", "2", "--unsuper_temp_negloc", "0.5", "--unsuper_temp_simcse", "0.8",
         "--neg_rand_type", "sphericalold"]


# ---------------------------------------------------------------------------------------------- golden parity

def _golden_model(golden_dir, params, loss):
    """The golden gridcell CSP model (eval mode); for l2regress with the `loc_dec` of its npz."""
    state = dict(load_checkpoint(str(golden_dir / "encoders" / "gridcell_inat_csp.pth.tar"))["state_dict"])
    if loss == "l2regress":
        state = {key: value for key, value in state.items() if not key.startswith("img_dec")}
        loc_dec = np.load(golden_dir / "losses_l2regress_loc_dec.npz")
        state.update({key: torch.from_numpy(loc_dec[key]) for key in loc_dec.files})
    model = build_model(params, 20, 5, cnn_feat_dim=2048)
    load_state(model, state)
    return model.eval()


@pytest.mark.parametrize("loss", ["contsoftmax", "contsoftmaxsym", "imgcontloss", "imgcontlossnolocneg",
                                  "imgcontlosssimcse", "l2regress", "full_loss", "full_loss_user"])
def test_losses_reproduce_the_original_values(golden_dir, loss):
    golden = json.loads((golden_dir / "losses.json").read_text())["losses"][loss]
    inputs = np.load(golden_dir / "losses_inputs.npz")
    loc, img, neg, cls, user = (torch.from_numpy(inputs[key]) for key in ("loc", "img", "neg", "cls", "user"))
    params = dict(load_checkpoint(str(golden_dir / "encoders" / "gridcell_inat_csp.pth.tar"))["params"])
    params.update({key: value for key, value in golden.items() if key != "value"})
    if loss.startswith("full"):
        params["train_loss"] = loss
        model = _golden_model(golden_dir, params, loss)
        value = losses.embedding_loss(model, loc, cls, user, params, neg_locs=neg[:len(loc)])
    else:
        params["unsuper_loss"] = loss
        model = _golden_model(golden_dir, params, loss)
        value = losses.unsuper_loss(model, loc, img, params, neg_locs=neg)
    assert value.item() == pytest.approx(golden["value"], rel=1e-5)


def _replay_dropout(monkeypatch, masks, dims):
    """Make every `encoders.Dropout` in train mode use the original's recorded keep-masks instead of drawing.

    masks: the original's masks in the order it drew them, (N, 1, d) each; the original ran one forward pass per
    location batch, the project runs one over their concatenation, so the masks of each layer width in `dims` are
    concatenated in draw order and handed out layer by layer."""
    queue = [torch.cat([torch.from_numpy(m).reshape(m.shape[0], -1) for m in masks if m.shape[-1] == d])
             for d in dims]

    def forward(self, x):
        keep = queue.pop(0)
        assert keep.shape == x.shape, f"recorded mask {tuple(keep.shape)} for a dropout input {tuple(x.shape)}"
        return x * keep / (1.0 - self.p)

    monkeypatch.setattr(encoders.Dropout, "forward", forward)
    return queue


@pytest.mark.parametrize("name", ["contsoftmax", "full_loss", "full_loss_user"])
def test_one_train_mode_step_reproduces_the_original_loss_gradients_and_adam_update(golden_dir, monkeypatch, name):
    """train_step.npz: one step of the original in train mode with its dropout masks and negative locations fed
    from outside (see the golden README); replayed here through the project's model, loss and Adam."""
    meta = json.loads((golden_dir / "train_step.json").read_text())[name]
    data = np.load(golden_dir / "train_step.npz")
    step = {key[len(name) + 1:]: data[key] for key in data.files if key.startswith(name + "/")}
    params = default_params(meta["argv"])
    params.update(num_classes=meta["num_classes"], num_users=meta["num_users"])
    model = build_model(params, meta["num_classes"], meta["num_users"], cnn_feat_dim=meta["cnn_feat_dim"])
    load_state(model, {key[len("before/"):]: torch.from_numpy(value) for key, value in step.items()
                       if key.startswith("before/")})
    masks = [step[f"mask{i:02d}"] for i in range(len(meta["mask_shapes"]))]
    assert [list(m.shape) for m in masks] == meta["mask_shapes"]
    queue = _replay_dropout(monkeypatch, masks, dims=(params["hidden_dim"], params["num_filts"]))
    loc, img, cls, user = (torch.from_numpy(data[key]) for key in ("loc", "img", "cls", "user"))
    neg = torch.from_numpy(step["neg"])
    model.train()
    if name == "contsoftmax":
        loss = losses.unsuper_loss(model, loc, img, params, neg_locs=neg)
    else:
        params["train_loss"] = name
        loss = losses.embedding_loss(model, loc, cls, user, params, neg_locs=neg[:len(loc)])
    assert queue == []
    assert loss.item() == pytest.approx(meta["loss"], rel=1e-6)
    assert loss.item() == pytest.approx(float(step["loss"]), rel=1e-6)

    optimizer = torch.optim.Adam(model.parameters(), lr=meta["lr"], weight_decay=0, foreach=True)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    named = model.state_dict(keep_vars=True)
    with_grad = {id(value) for value in named.values() if getattr(value, "grad", None) is not None}
    assert with_grad == {id(named[key]) for key in meta["grad_keys"]}   # the state_dict names shared tensors twice
    for key in meta["grad_keys"]:
        np.testing.assert_allclose(named[key].grad.numpy(), step[f"grad/{key}"], rtol=0, atol=1e-6, err_msg=key)
    optimizer.step()
    after = model.state_dict()
    for key in (key[len("after/"):] for key in step if key.startswith("after/")):
        np.testing.assert_allclose(after[key].numpy(), step[f"after/{key}"], rtol=0, atol=1e-6, err_msg=key)


# ---------------------------------------------------------------------------------------------- rand_samples

def test_spherical_negatives_are_uniform_on_the_sphere():
    gen = torch.Generator().manual_seed(0)
    lonlat = losses.rand_samples(200_000, "cpu", "spherical", generator=gen)
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    assert lonlat.shape == (200_000, 2) and lonlat.dtype == torch.float32
    assert lon.min() >= -180 and lon.max() < 180 and lat.min() >= -90 and lat.max() <= 90
    assert abs(torch.sin(torch.deg2rad(lat)).mean().item()) < 0.01       # E[sin lat] = 0 (area-uniform)
    assert (lat.abs() < 30).float().mean().item() == pytest.approx(0.5, abs=0.01)  # sin 30° = 1/2
    for east in (True, False):
        for north in (True, False):
            quadrant = ((lon >= 0) == east) & ((lat >= 0) == north)
            assert quadrant.float().mean().item() == pytest.approx(0.25, abs=0.01)


def test_sphericalold_is_the_original_projected_disk_sampler_with_one_draw():
    n = 1000
    torch.manual_seed(3)
    lonlat = losses.rand_samples(n, "cpu", "sphericalold")
    after = torch.rand(1)
    torch.manual_seed(3)
    u = torch.rand(n, 3).double().numpy() * 2 - 1
    assert torch.rand(1) == after                          # exactly one (n, 3) draw was consumed
    theta = (u[:, 1] + 1) * math.pi
    radius = np.sqrt(1 - u[:, 0] ** 2)
    np.testing.assert_allclose(lonlat.numpy(), np.stack([180 * radius * np.cos(theta),
                                                         90 * radius * np.sin(theta)], 1), atol=1e-3)
    assert ((lonlat[:, 0] / 180) ** 2 + (lonlat[:, 1] / 90) ** 2 <= 1 + 1e-6).all()


def test_uniform_negatives_fill_the_lon_lat_rectangle_and_dates_are_fractions_of_the_year():
    lonlat = losses.rand_samples(20_000, torch.device("cpu"), "uniform", use_date_feats=True)
    assert lonlat.shape == (20_000, 3)
    assert (lonlat[:, 1].abs() > 85).float().mean().item() == pytest.approx(10 / 180, abs=0.01)
    assert lonlat[:, 2].min() >= 0 and lonlat[:, 2].max() < 1


def test_same_generator_seed_gives_the_same_negatives():
    draw = [losses.rand_samples(5, "cpu", "spherical", generator=torch.Generator().manual_seed(7)) for _ in "ab"]
    assert torch.equal(*draw)


def test_unknown_sampler_lists_the_valid_ones():
    with pytest.raises(ValueError, match="--neg_rand_type 'sphere' is unknown; use one of spherical, sphericalold"):
        losses.rand_samples(3, "cpu", "sphere")


# ------------------------------------------------------- reference: the formulas of the spec, one pass per batch

def _bce(p):
    return -torch.log(p + 1e-5)


def _dense_nce(m):
    """Binary in-batch term with the diagonal replaced, as a dense matrix (the spec's formula)."""
    n = m.shape[0]
    terms = _bce(1.0 - torch.sigmoid(m))
    eye = torch.eye(n, dtype=torch.bool)
    terms = torch.where(eye, (n - 1) * _bce(torch.sigmoid(m)), terms)
    return (terms.sum(dim=1) / (n - 1)).mean()


def _reference_unsuper(model, name, locs, img, neg, p):
    """Separate forward passes of x, the negatives and x again (the original's order)."""
    a = F.normalize(model(locs, return_feats=True), dim=-1)
    g = F.normalize(model.img_dec(img), dim=-1)
    r = F.normalize(model(neg, return_feats=True), dim=-1).view(K, B, -1)
    a2 = F.normalize(model(locs, return_feats=True), dim=-1)
    labels = torch.arange(B)
    if name.startswith("contsoftmax"):
        sims = a @ g.t() / p["unsuper_temp_inbatch"]
        loss = F.cross_entropy(sims, labels)
        if name == "contsoftmaxsym":
            loss = loss + F.cross_entropy(sims.t(), labels)
        logits = torch.cat([(a * g).sum(1, keepdim=True), (r * g).sum(-1).t()], 1) / p["unsuper_temp_negloc"]
        loss = loss + p["rand_sample_weight"] * F.cross_entropy(logits, torch.zeros(B, dtype=torch.long))
        return loss + p["simcse_weight"] * F.cross_entropy(a @ a2.t() / p["unsuper_temp_simcse"], labels)
    loss = _dense_nce(a @ g.t())
    if name != "imgcontlossnolocneg":
        loss = loss + p["rand_sample_weight"] * _bce(1.0 - torch.sigmoid((r * g).sum(-1))).mean()
    if name == "imgcontlosssimcse":
        loss = loss + p["simcse_weight"] * _dense_nce(a @ a2.t())
    return loss


def _dense_presence(emb, weight, classes, pos_weight):
    terms = _bce(1.0 - torch.sigmoid(emb @ weight.t()))
    rows = torch.arange(len(classes))
    positive = pos_weight * _bce(torch.sigmoid(emb @ weight.t())[rows, classes])
    return terms.index_put((rows, classes), positive).mean()


def _reference_embedding(model, locs, classes, users, neg, p):
    e, e_rand = model(locs, return_feats=True), model(neg, return_feats=True)
    weight = model.class_emb.weight
    loss_pos = _dense_presence(e, weight, classes, p["num_classes"])
    loss_bg = _bce(1.0 - torch.sigmoid(e_rand @ weight.t())).mean()
    if p["train_loss"] == "full_loss":
        return loss_pos + p["rand_sample_weight"] * loss_bg
    user = model.user_emb.weight[users]
    return (loss_pos + loss_bg + _bce(torch.sigmoid((user * e).sum(1))).mean()
            + _bce(1.0 - torch.sigmoid((user * e_rand).sum(1))).mean()
            + _dense_presence(user, weight, classes, p["num_classes"]))


def _batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    locs = losses.rand_samples(B, "cpu", "uniform", generator=gen)
    neg = losses.rand_samples(K * B, "cpu", "spherical", generator=gen)
    img = torch.randn(B, IMG, generator=gen)
    classes = torch.randint(0, C, (B,), generator=gen)
    users = torch.randint(0, U, (B,), generator=gen)
    return locs, img, neg, classes, users


def _gradients(model, loss):
    model.zero_grad()
    loss.backward()
    return {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}


def _assert_same_value_and_gradients(model, ours, reference):
    value, grads = ours.item(), _gradients(model, ours)
    expected, expected_grads = reference.item(), _gradients(model, reference)
    assert value == pytest.approx(expected, rel=1e-5)
    assert grads.keys() == expected_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("name", ["contsoftmax", "contsoftmaxsym", "imgcontloss", "imgcontlossnolocneg",
                                  "imgcontlosssimcse"])
def test_one_concatenated_pass_in_train_mode_equals_separate_passes_without_dropout(name):
    params = default_params(SMALL + ["--unsuper_loss", name])
    torch.manual_seed(0)
    model = build_model(params, C, U, cnn_feat_dim=IMG).train()
    locs, img, neg, _, _ = _batch()
    calls = []
    model.loc_enc.register_forward_hook(lambda *args: calls.append(1))
    ours = losses.unsuper_loss(model, locs, img, params, neg_locs=neg)
    assert len(calls) == 1                                # x, negatives and the SimCSE view in one pass
    _assert_same_value_and_gradients(model, ours, _reference_unsuper(model, name, locs, img, neg, params))


@pytest.mark.parametrize("train_loss", ["full_loss", "full_loss_user"])
def test_presence_loss_equals_the_dense_formula_with_its_gradients(train_loss, monkeypatch):
    monkeypatch.setattr(losses, "CPU_BLOCK_ELEMENTS", 3 * C)   # several row blocks, also a partial one
    params = default_params(SMALL + ["--train_loss", train_loss])
    params["num_classes"] = C
    torch.manual_seed(1)
    model = build_model(params, C, U).train()
    locs, _, neg, classes, users = _batch(1)
    ours = losses.embedding_loss(model, locs, classes, users, params, neg_locs=neg[:B])
    _assert_same_value_and_gradients(model, ours, _reference_embedding(model, locs, classes, users, neg[:B],
                                                                       params))


def test_zero_weight_terms_are_left_out_and_change_nothing():
    params = default_params(SMALL + ["--unsuper_loss", "contsoftmax", "--rand_sample_weight", "0",
                                     "--simcse_weight", "0"])
    torch.manual_seed(0)
    model = build_model(params, C, U, cnn_feat_dim=IMG).eval()
    locs, img, _, _, _ = _batch()
    a = F.normalize(model(locs, return_feats=True), dim=-1)
    g = F.normalize(model.img_dec(img), dim=-1)
    expected = F.cross_entropy(a @ g.t() / params["unsuper_temp_inbatch"], torch.arange(B))
    assert losses.unsuper_loss(model, locs, img, params).item() == pytest.approx(expected.item(), rel=1e-6)


def test_train_mode_dropout_draws_a_separate_mask_for_each_view():
    params = default_params(SMALL + ["--unsuper_loss", "contsoftmax", "--dropout", "0.5"])
    model = build_model(params, C, U, cnn_feat_dim=IMG).train()
    locs, img, neg, _, _ = _batch()
    outputs = []
    model.loc_enc.register_forward_hook(lambda module, args, output: outputs.append(output))
    losses.unsuper_loss(model, locs, img, params, neg_locs=neg)
    (emb,) = outputs
    assert emb.shape[0] == (2 + K) * B
    assert not torch.allclose(emb[:B], emb[-B:])           # the SimCSE view of x has its own dropout masks


def test_fused_bce_gradient_matches_autograd_in_float64():
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(losses._NegativeBCERowSums.apply, (emb, weight))


def test_negatives_are_drawn_when_not_given_with_a_date_column_for_dated_models():
    params = default_params(SMALL + ["--spa_enc_type", "geo_net", "--use_date_feats", "T",
                                     "--train_loss", "full_loss"])
    params["num_classes"] = C
    model = build_model(params, C, U).train()
    inputs = []
    model.register_forward_hook(lambda module, args, output: inputs.append(args[0]))
    locs = torch.cat([_batch()[0], torch.rand(B, 1)], dim=1)
    loss = losses.embedding_loss(model, locs, torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long),
                                 params)
    assert torch.isfinite(loss)
    (coords,) = inputs
    assert coords.shape == (2 * B, 3) and torch.equal(coords[:B], locs)
    assert (coords[B:, 2] >= 0).all() and (coords[B:, 2] < 1).all()


def test_val_loss_is_the_mean_positive_bce_in_eval_mode_and_keeps_the_mode():
    params = default_params(SMALL + ["--dropout", "0.5"])
    model = build_model(params, C, U).train()
    locs, _, _, classes, _ = _batch()
    value = losses.val_loss(model, locs, classes, batch_size=5)
    assert model.training
    with torch.no_grad():
        expected = _bce(model.eval()(locs)[torch.arange(B), classes]).mean().item()
    assert value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("flags, message", [
    (["--unsuper_loss", "contrastive"], "--unsuper_loss 'contrastive' is unknown; valid values: none, l2regress"),
    (["--unsuper_temp_negloc", "0"], "--unsuper_temp_negloc must be a finite number > 0"),
    (["--num_neg_rand_loc", "0"], "--num_neg_rand_loc must be >= 1"),
    (["--unsuper_loss", "imgcontloss", "--batch_size", "1"], "at least 2 samples"),
])
def test_bad_pre_training_settings_are_clear_errors(flags, message):
    """Checked with the flags, once, not in every training step."""
    with pytest.raises(ValueError, match=message):
        default_params(SMALL + ["--unsuper_loss", "contsoftmax"] + flags)


def test_given_negatives_of_the_wrong_shape_are_a_clear_error():
    params = default_params(SMALL + ["--unsuper_loss", "imgcontloss"])
    model = build_model(params, C, U, cnn_feat_dim=IMG)
    locs, img, neg, _, _ = _batch()
    with pytest.raises(ValueError, match=r"neg_locs has shape \(12, 2\), expected \(24, 2\)"):
        losses.unsuper_loss(model, locs, img, params, neg_locs=neg[:B])


@pytest.mark.parametrize("loss", ["contsoftmax", "imgcontlosssimcse", "full_loss_user"])
def test_bf16_autocast_stays_near_float32_with_float32_gradients(loss):
    params = default_params(SMALL + (["--unsuper_loss", loss] if loss in losses.UNSUPER_LOSSES
                                     else ["--train_loss", loss]))
    params["num_classes"] = C
    torch.manual_seed(0)
    model = build_model(params, C, U, cnn_feat_dim=IMG).train()
    locs, img, neg, classes, users = _batch()

    def value():
        if loss in losses.UNSUPER_LOSSES:
            return losses.unsuper_loss(model, locs, img, params, neg_locs=neg)
        return losses.embedding_loss(model, locs, classes, users, params, neg_locs=neg[:B])

    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = value()
    grads = _gradients(model, low)
    assert low.dtype == torch.float32 and low.item() == pytest.approx(value().item(), rel=2e-2)
    assert all(grad.dtype == torch.float32 and grad.isfinite().all() for grad in grads.values())


# ------------------------------------------------------------------------------ in-batch false negatives

class _Lookup(torch.nn.Module):
    """A stand-in encoder: location (k, 0) has the trainable embedding row k; images pass through `img_dec`."""

    def __init__(self, num_locations, dim):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(num_locations, dim, generator=torch.Generator().manual_seed(0)))
        self.img_dec = torch.nn.Identity()

    def forward(self, coords, class_of_interest=None, return_feats=False):
        return self.table[coords[:, 0].long()]


def _pretraining_params(loss, mask, **extra):
    params = default_params(["--unsuper_loss", loss, "--rand_sample_weight", "0", "--simcse_weight", "0",
                             "--mask_duplicate_negatives", "T" if mask else "F"])
    params.update(extra)
    return params


@pytest.mark.parametrize("mask", [False, True])
def test_a_duplicate_location_floors_the_in_batch_loss_at_2_log_2_over_b_unless_masked(mask):
    """Rows 0 and 1 of a batch of 8 share a location (one embedding) but not an image: unmasked, each is the other's
    negative and the in-batch cross-entropy cannot go below 2·log 2 / B; masked, it goes to 0."""
    batch = 8
    locs = torch.tensor([[0.0, 0.0]] + [[float(k), 0.0] for k in range(batch - 1)])
    images = torch.eye(batch)
    model = _Lookup(batch - 1, batch)
    params = _pretraining_params("contsoftmax", mask, unsuper_temp_inbatch=0.05)
    floor = 2 * math.log(2) / batch
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(300):
        loss = losses.unsuper_loss(model, locs, images, params)
        if not mask:
            assert loss.item() >= floor - 1e-6
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() == (pytest.approx(0.0, abs=1e-3) if mask else pytest.approx(floor, abs=1e-3))


def test_duplicate_images_and_locations_leave_exactly_their_pairs_out_of_every_in_batch_term():
    """imgcontlosssimcse: a repeated image (rows 2, 5) leaves its pairs out of the location-image term only, a
    repeated location (rows 0, 3) out of both; masked = the dense formula without those terms. contsoftmaxsym
    likewise; without duplicates, or with the flag F, the loss is the original's."""
    torch.manual_seed(3)
    batch, dim = 6, 5
    locs = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
    images = torch.randn(batch, dim)
    images[5] = images[2]
    model = _Lookup(5, dim)
    a = F.normalize(model.table[locs[:, 0].long()], dim=1)
    g = F.normalize(images, dim=1)
    same_location, same_pair = losses.duplicate_pairs(locs, images)
    expected_pairs = {(0, 3), (3, 0), (2, 5), (5, 2)}
    assert {tuple(p) for p in same_pair.nonzero().tolist()} == expected_pairs
    assert {tuple(p) for p in same_location.nonzero().tolist()} == {(0, 3), (3, 0)}

    def dense_nce(m, left_out):
        bce = -torch.log(torch.sigmoid(m) + 1e-5), -torch.log(1 - torch.sigmoid(m) + 1e-5)
        terms = torch.where(torch.eye(batch, dtype=torch.bool), (batch - 1) * bce[0], bce[1])
        return terms.masked_fill(left_out, 0).sum(dim=1).mean() / (batch - 1)

    params = _pretraining_params("imgcontlosssimcse", True, simcse_weight=0.5)
    expected = dense_nce(a @ g.t(), same_pair) + 0.5 * dense_nce(a @ a.t(), same_location)
    assert losses.unsuper_loss(model.eval(), locs, images, params).item() == pytest.approx(expected.item(), rel=1e-5)

    params = _pretraining_params("contsoftmaxsym", True, unsuper_temp_inbatch=0.5)
    sims = (a @ g.t() / 0.5).masked_fill(same_pair, float("-inf"))
    labels = torch.arange(batch)
    expected = F.cross_entropy(sims, labels) + F.cross_entropy(sims.t(), labels)
    assert losses.unsuper_loss(model, locs, images, params).item() == pytest.approx(expected.item(), rel=1e-5)

    distinct = torch.stack([torch.arange(batch, dtype=torch.float32), torch.zeros(batch)], dim=1) % 5
    distinct[5, 1] = 1.0
    images[5] += 1.0
    for loss in ("contsoftmaxsym", "imgcontlosssimcse"):
        on, off = (losses.unsuper_loss(model, distinct, images, _pretraining_params(loss, mask, simcse_weight=0.5))
                   for mask in (True, False))
        assert on.item() == off.item()


def test_masked_runs_have_their_own_checkpoint_names_and_the_default_keeps_the_original_names():
    flags = ["--unsuper_loss", "contsoftmax", "--model_dir", "m"]
    default = model_file_names(default_params(flags))
    masked = model_file_names(default_params(flags + ["--mask_duplicate_negatives", "T"]))
    assert all("MASKDUP" not in name for name in default)
    assert [name.replace("_MASKDUP", "") for name in masked] == list(default)
