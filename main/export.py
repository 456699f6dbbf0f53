"""Take a trained location encoder out of Python: ONNX, safetensors, GeoTIFF maps, Parquet tables.

    python main/export.py --checkpoint CK --to onnx --out encoder.onnx
    python main/export.py --checkpoint CK --to safetensors --out encoder.safetensors
    python main/export.py --checkpoint CK --to geotiff --values prior --class NAME --bbox -180 -90 180 90 \
        --resolution 0.05 --out prior.tif
    python main/export.py --checkpoint CK --to parquet --values embedding --points points.csv --out emb.parquet

onnx: inputs `lonlat` (N, 2) float32 (lon, lat) degrees [and `date` (N,) fraction of the year, geo_net with
dates], outputs `embedding` (N, D) and `class_prior` (N, C) = sigmoid(embedding W^T), N dynamic; the file's metadata
holds `class_names` and `params` (JSON). After writing, onnxruntime is checked against PyTorch on PARITY_POINTS
points (poles and the antimeridian included) and the largest difference printed; a file that misses the tolerance
is removed. safetensors: see safetensors_file.py. geotiff / parquet: `--values prior` (P(class | x) of `--class`,
a name or id; parquet: every class when omitted), `embedding` (all D channels) or `pca` (the first three principal
components, fitted on a sample of the cells: an RGB uint8 GeoTIFF, or pc1..pc3 columns), at the centres of the
cells of `--bbox W S E N` at `--resolution` degrees (EPSG:4326, row 0 at the north edge; at most MAX_OUTPUT_BYTES
of values) or, for parquet, at the `lon`, `lat` of `--points` (its other columns carried through). Both are
computed and written tile by tile, so memory stays bounded at any size.
"""
import argparse
import io
import json
import logging
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA

if not __package__:  # run as a script (`python export.py`): its folder is imported as the package csp
    __package__ = __import__("as_package").PACKAGE
from . import geotiff
from . import safetensors_file
from .arguments import run_command
from .checkpoints import plain_value
from .table_reader import read_table
from .models import check_lonlat, eval_mode, load_location_encoder, run_batched
from .paths import atomic_write
from .checkpoints import check_class_head
from .predict import check_out, takes_dates
from .progress import LoggedBar

logger = logging.getLogger(__name__)

FORMATS = {"onnx": (".onnx",), "safetensors": (".safetensors",), "geotiff": (".tif", ".tiff"),
           "parquet": (".parquet",)}
VALUES = ("prior", "embedding", "pca")
PARITY_POINTS = 100_000
PARITY_TOLERANCE = 1e-5      # of max(1, largest |value|) of each output
OPSET = 17
BLOCK_BYTES = 2 ** 26        # float32 values computed at once (64 MiB)
PCA_SAMPLE = 65536
MAX_OUTPUT_BYTES = 2 ** 36   # the largest map or table written (uncompressed): 64 GiB


# ----------------------------------------------------------------------------------------------------------------
# ONNX

class OnnxLocationModel(torch.nn.Module):
    """(lonlat (N, 2)[, date (N,)]) -> (embedding (N, D), class_prior (N, C)), as `PretrainedLocationEncoder`."""

    def __init__(self, model):
        super().__init__()
        self.model = safetensors_file.location_model(model)

    def forward(self, lonlat, date=None):
        coords = lonlat if date is None else torch.cat((lonlat, date.unsqueeze(1)), dim=1)
        embedding = self.model(coords, return_feats=True)
        return embedding, torch.sigmoid(self.model.class_emb(embedding))


def export_onnx(encoder, path):
    """Write `encoder` (a PretrainedLocationEncoder) as ONNX to `path`; ValueError when it cannot be expressed."""
    import onnx
    module = OnnxLocationModel(encoder.model)
    inputs = ["lonlat", "date"] if takes_dates(encoder) else ["lonlat"]
    example = (torch.zeros(4, 2, device=encoder.device), torch.zeros(4, device=encoder.device))[:len(inputs)]
    axes = {name: {0: "n"} for name in inputs + ["embedding", "class_prior"]}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), eval_mode(module):
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)   # shape checks traced as constants
            # the TorchScript exporter: torch 2.14's dynamo exporter stores the float64 constant 2 pi of the
            # sinusoidal encodings as float32, which moves high-frequency angles by up to radians
            torch.onnx.export(module, example, buffer, input_names=inputs, output_names=["embedding", "class_prior"],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    except Exception as err:  # the exporter fails in many ways on an op it cannot express
        raise ValueError(f"--spa_enc_type {encoder.params['spa_enc_type']} (--spa_enc_net "
                         f"{encoder.params.get('spa_enc_net', 'ffn')}) cannot be expressed in ONNX: "
                         f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}; export it with "
                         f"--to safetensors and run it with PyTorch") from None
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, {"class_names": json.dumps(encoder.class_names),
                                        "params": json.dumps(plain_value(encoder.params)),
                                        "inputs": "lonlat: (N, 2) float32 (lon, lat) degrees"
                                                  + ("; date: (N,) float32 fraction of the year" if len(inputs) > 1
                                                     else "")})
    data = model.SerializeToString()
    atomic_write(path, lambda handle: handle.write(data))


def parity_points(count=PARITY_POINTS, seed=0):
    """(count, 2) float32 (lon, lat): both poles and the antimeridian (lon ±180) at 1000 points each, the corners,
    the rest uniform on the sphere."""
    rng = np.random.default_rng(seed)
    line = np.linspace(-180.0, 180.0, 1000)
    edges = [np.stack([line, np.full(1000, 90.0)], 1), np.stack([line, np.full(1000, -90.0)], 1),
             np.stack([np.full(1000, 180.0), line / 2], 1), np.stack([np.full(1000, -180.0), line / 2], 1),
             np.array([[-180.0, -90.0], [-180.0, 90.0], [180.0, -90.0], [180.0, 90.0], [0.0, 0.0]])]
    rest = count - sum(len(edge) for edge in edges)
    uniform = np.stack([rng.uniform(-180.0, 180.0, rest), np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, rest)))], 1)
    return np.concatenate(edges + [uniform]).astype(np.float32)


def check_onnx(path, encoder, count=PARITY_POINTS):
    """{output: (max |onnxruntime - PyTorch|, max |PyTorch|)} on `parity_points(count)` (dates uniform in [0, 1]
    where the model takes them)."""
    import onnxruntime
    points = parity_points(count)
    dates = np.random.default_rng(1).uniform(0.0, 1.0, len(points)).astype(np.float32) if takes_dates(encoder) \
        else None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"lonlat": points} if dates is None else {"lonlat": points, "date": dates}
    got = dict(zip(("embedding", "class_prior"), session.run(["embedding", "class_prior"], feeds)))
    coords = torch.from_numpy(points if dates is None else np.concatenate([points, dates[:, None]], axis=1))
    # the class head of the model itself: a pre-training checkpoint's is exported too (class_probabilities refuses)
    prior = run_batched(encoder.model, coords.to(encoder.device), encoder.batch_size)
    want = {"embedding": encoder.embed(points, dates), "class_prior": prior}
    return {name: (float(np.abs(got[name] - want[name].cpu().numpy()).max()),
                   float(want[name].abs().max())) for name in want}


def parity_ok(report):
    return all(diff <= PARITY_TOLERANCE * max(1.0, scale) for diff, scale in report.values())


def describe_parity(report, count=PARITY_POINTS):
    return (f"onnxruntime vs PyTorch on {count:,} points (poles and lon ±180 included): max |difference| "
            + ", ".join(f"{name} {diff:.1e} (values up to {scale:.3g})" for name, (diff, scale) in report.items())
            + f"; tolerance {PARITY_TOLERANCE:g} × max(1, largest value)")


# ----------------------------------------------------------------------------------------------------------------
# values on a grid or at points

class Values:
    """What a map or table holds: `names` (one per channel) and `compute(lonlat)`: (n, 2) float32 valid (lon, lat)
    -> (n, channels) float32 numpy array (`as_rgb` turns pca components into uint8 colours)."""

    def __init__(self, encoder, kind, class_ids=None, date=None, pca_sample=None):
        self.encoder, self.kind, self.date = encoder, kind, date
        names = encoder.class_names or [str(c) for c in range(encoder.model.class_emb.weight.shape[0])]
        if kind == "prior":
            self.class_ids = class_ids
            self.names = [names[c] for c in class_ids] if class_ids is not None else list(names)
        elif kind == "embedding":
            self.names = [f"e{i}" for i in range(encoder.model.class_emb.weight.shape[1])]
        else:
            self.names = ["pc1", "pc2", "pc3"]
            self.pca, self.low, self.high = self._fit_pca(pca_sample)

    def _model_input(self, lonlat):
        coords = torch.as_tensor(lonlat, dtype=torch.float32)
        if takes_dates(self.encoder):
            coords = torch.cat((coords, torch.full((len(coords), 1), float(self.date))), dim=1)
        return coords.to(self.encoder.device)

    def _run(self, lonlat, **kwargs):
        return run_batched(self.encoder.model, self._model_input(lonlat), self.encoder.batch_size, **kwargs).cpu()

    def _fit_pca(self, sample):
        distinct = len(np.unique(sample, axis=0))
        if distinct < 4:
            raise ValueError(f"--values pca fits 3 principal components, which needs at least 4 distinct locations; "
                             f"these cells or --points have {distinct}: give a larger --bbox, a finer --resolution "
                             f"or more --points, or use --values embedding")
        embeddings = self._run(sample, return_feats=True).double().numpy()
        pca = PCA(n_components=3).fit(embeddings)
        components = pca.transform(embeddings)
        return pca, np.percentile(components, 1, axis=0), np.percentile(components, 99, axis=0)

    def compute(self, lonlat):
        if self.kind == "prior":
            if self.class_ids is not None and len(self.class_ids) == 1:
                return self._run(lonlat, class_of_interest=self.class_ids[0]).numpy()[:, None]
            prior = self._run(lonlat).numpy()
            return prior if self.class_ids is None else prior[:, self.class_ids]
        embeddings = self._run(lonlat, return_feats=True).numpy()
        return embeddings if self.kind == "embedding" else self.pca.transform(embeddings).astype(np.float32)

    def as_rgb(self, components):
        """pca components (n, 3) -> uint8 (n, 3), the 1st..99th percentiles of the sample spread over 0..255."""
        scaled = (components - self.low) / np.maximum(self.high - self.low, 1e-12) * 255.0
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


class Grid:
    """Cells of `resolution` degrees over bbox (W, S, E N): `width` x `height`, row 0 at the north edge."""

    def __init__(self, bbox, resolution):
        west, south, east, north = (float(v) for v in bbox)
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise ValueError(f"--bbox {' '.join(f'{v:g}' for v in bbox)}: give W S E N degrees with -180 <= W < E <= "
                             f"180 and -90 <= S < N <= 90")
        if not (math.isfinite(resolution) and resolution > 0):
            raise ValueError(f"--resolution {resolution}: give the cell size in degrees, > 0")
        width, height = (east - west) / resolution, (north - south) / resolution
        if abs(width - round(width)) > 1e-6 * max(1.0, width) or abs(height - round(height)) > 1e-6 * max(1.0, height):
            raise ValueError(f"--resolution {resolution:g} does not divide the --bbox ({east - west:g} x "
                             f"{north - south:g} degrees) into whole cells; choose a resolution that does")
        self.west, self.south, self.east, self.north, self.resolution = west, south, east, north, resolution
        self.width, self.height = int(round(width)), int(round(height))

    def check_size(self, channels):
        """ValueError when `channels` float32 values per cell exceed MAX_OUTPUT_BYTES."""
        size = self.width * self.height * channels * 4
        if size > MAX_OUTPUT_BYTES:
            raise ValueError(f"--bbox {self.west:g} {self.south:g} {self.east:g} {self.north:g} at --resolution "
                             f"{self.resolution:g} is {self.width:,} x {self.height:,} cells x {channels} channels = "
                             f"{size / 2 ** 30:,.0f} GiB, more than the {MAX_OUTPUT_BYTES // 2 ** 30} GiB written at "
                             f"most; give a coarser --resolution or a smaller --bbox")

    def centres(self, row0, row1, col0, col1):
        """(n, 2) float32 (lon, lat) of the cell centres of rows [row0, row1) x columns [col0, col1), row-major."""
        lon = self.west + (np.arange(col0, col1) + 0.5) * self.resolution
        lat = self.north - (np.arange(row0, row1) + 0.5) * self.resolution
        return np.stack(np.meshgrid(lon, lat), axis=-1).reshape(-1, 2).astype(np.float32)

    def sample(self, count, seed=0):
        """(count, 2) cell centres drawn uniformly from the grid."""
        rng = np.random.default_rng(seed)
        rows, cols = rng.integers(0, self.height, count), rng.integers(0, self.width, count)
        lon = self.west + (cols + 0.5) * self.resolution
        lat = self.north - (rows + 0.5) * self.resolution
        return np.stack([lon, lat], 1).astype(np.float32)


def write_geotiff(path, values, grid):
    """The map of `values` over `grid` as a tiled GeoTIFF (geotiff.write_tiled), with a progress bar."""
    rgb = values.kind == "pca"
    channels = len(values.names)
    edge = geotiff.tile_edge(channels * 4)
    count = math.ceil(grid.height / edge) * math.ceil(grid.width / edge)

    def tile_values(bar):
        for row0 in range(0, grid.height, edge):
            for col0 in range(0, grid.width, edge):
                row1, col1 = min(row0 + edge, grid.height), min(col0 + edge, grid.width)
                block = values.compute(grid.centres(row0, row1, col0, col1))
                block = values.as_rgb(block) if rgb else block
                tile = np.zeros((edge, edge, channels), block.dtype)
                tile[:row1 - row0, :col1 - col0] = block.reshape(row1 - row0, col1 - col0, channels)
                bar.update(1)
                yield tile

    with LoggedBar(total=count, desc="GeoTIFF tiles", unit="tile") as bar:
        geotiff.write_tiled(path, tile_values(bar), (grid.height, grid.width, channels),
                            np.uint8 if rgb else np.float32, edge, (grid.west, grid.north), grid.resolution,
                            values.names, rgb)


def write_parquet(path, values, lonlat_blocks, total, carried=None):
    """Rows lon, lat, the columns of `carried` (a DataFrame, one row per point, or None), one column per channel of
    `values`, written block by block (one row group each)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(handle):
        writer, done = None, 0
        try:
            with LoggedBar(total=total, desc="Parquet rows", unit="row", unit_scale=True) as bar:
                for lonlat in lonlat_blocks:
                    columns = {"lon": lonlat[:, 0], "lat": lonlat[:, 1]}
                    if carried is not None:
                        rows = carried.iloc[done:done + len(lonlat)]
                        columns.update({name: pa.Array.from_pandas(rows[name]) for name in carried.columns})
                    block = values.compute(lonlat)
                    columns.update({name: block[:, i] for i, name in enumerate(values.names)})
                    table = pa.table(columns)
                    writer = writer or pq.ParquetWriter(handle, table.schema)
                    writer.write_table(table)
                    bar.update(len(lonlat))
                    done += len(lonlat)
        finally:
            if writer is not None:
                writer.close()

    atomic_write(path, write)


def block_rows(channels):
    return max(4096, BLOCK_BYTES // (4 * (channels + 2)))


def grid_blocks(grid, rows_per_block):
    """Cell centres, row-major, in blocks of at most `rows_per_block` cells (whole grid rows where they fit)."""
    step = max(1, rows_per_block // grid.width)
    width = min(grid.width, rows_per_block)
    for row0 in range(0, grid.height, step):
        for col0 in range(0, grid.width, width):
            yield grid.centres(row0, min(row0 + step, grid.height), col0, min(col0 + width, grid.width))


def read_points(path):
    """((N, 2) float32 (lon, lat) degrees from the `lon`, `lat` columns of a CSV / Parquet table, its other columns
    as a DataFrame (carried into the output))."""
    table = read_table(path, columns=["lon", "lat"])
    if len(table) == 0:
        raise ValueError(f"--points {path} has no rows; give one row of lon, lat (degrees) per point")
    lonlat = np.stack([pd.to_numeric(table[c], errors="coerce").to_numpy(np.float64) for c in ("lon", "lat")], 1)
    try:
        return check_lonlat(lonlat).numpy(), table.drop(columns=["lon", "lat"])
    except ValueError as err:
        raise ValueError(f"--points {path}: {err} (0-based data rows; an empty or non-numeric cell is NaN)") from None


def read_anchors(path):
    """The `--anchors` .npy array (not checked further here: the model checks shape and range)."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as err:
        raise ValueError(f"--anchors {path} is not a .npy array of numbers ({str(err).split('. ')[0]}); save the "
                         f"(K, 2) (lon, lat) training locations with numpy.save") from None


def class_ids(encoder, names):
    """Class ids of `--class` values (names, or ids where the checkpoint stores no names)."""
    known = encoder.class_names or []
    count = encoder.model.class_emb.weight.shape[0]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"--class {', '.join(map(repr, repeated))} is given more than once; give each class once")
    ids = []
    for name in names:
        if name in known:
            ids.append(known.index(name))
        elif name.isdigit() and int(name) < count:
            ids.append(int(name))
        else:
            shown = ", ".join(known[:5]) + (", …" if len(known) > 5 else "")
            raise ValueError(f"--class {name!r} is not a class of the checkpoint ({count} classes"
                             + (f": {shown})" if known else f", ids 0..{count - 1})"))
    return ids


# ----------------------------------------------------------------------------------------------------------------
# the command

def make_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint (.pth.tar) or .safetensors file")
    p.add_argument("--to", required=True, choices=list(FORMATS))
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--values", choices=VALUES, default="prior", help="geotiff / parquet: what the cells hold")
    p.add_argument("--class", dest="classes", action="append", default=[],
                   help="--values prior: a class name (or id); parquet takes several, or every class when omitted")
    p.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"), default=[-180.0, -90.0, 180.0, 90.0])
    p.add_argument("--resolution", type=float, default=1.0, help="cell size in degrees")
    p.add_argument("--points", help="parquet: a CSV / Parquet table with lon, lat (degrees) instead of the grid")
    p.add_argument("--date", type=float, help="fraction of the year in [0, 1] (models trained with dates)")
    p.add_argument("--anchors", help=".npy (K, 2) (lon, lat) rbf anchor points (rbf .pth.tar checkpoints)")
    p.add_argument("--device", default="cpu", help="cpu, cuda:0 or auto")
    p.add_argument("--batch_size", type=int, default=65536, help="points per forward pass")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return p


def _checked_values(args, encoder):
    """The Values of the flags, checked before anything is written."""
    if takes_dates(encoder) and (args.date is None or not 0.0 <= args.date <= 1.0):
        raise ValueError(f"--checkpoint {args.checkpoint} was trained with dates: give --date, a fraction of the "
                         f"year in [0, 1]")
    if args.date is not None and not takes_dates(encoder):
        raise ValueError(f"--date is for models trained with dates; --checkpoint {args.checkpoint} was not: leave "
                         f"out --date")
    if args.values == "prior":
        check_class_head(encoder.params, args.checkpoint)
    if args.classes and args.values != "prior":
        raise ValueError(f"--class is for --values prior, not {args.values}")
    if args.to == "geotiff" and args.values == "prior" and len(args.classes) != 1:
        raise ValueError("--to geotiff --values prior draws one class: give --class NAME once")
    if args.points is not None and args.to != "parquet":
        raise ValueError("--points is for --to parquet; a GeoTIFF covers --bbox at --resolution")
    points, carried = read_points(args.points) if args.points is not None else (None, None)
    grid = Grid(args.bbox, args.resolution) if points is None else None
    if grid is not None:
        grid.check_size(3 if args.values == "pca" else len(args.classes) if args.classes else
                        encoder.model.class_emb.weight.shape[1 if args.values == "embedding" else 0])
    sample = None
    if args.values == "pca":
        sample = grid.sample(PCA_SAMPLE) if grid is not None else \
            points[np.random.default_rng(0).permutation(len(points))[:PCA_SAMPLE]]
    ids = class_ids(encoder, args.classes) if args.classes else None
    values = Values(encoder, args.values, ids, args.date, sample)
    clash = [name for name in values.names if carried is not None and name in carried.columns]
    if clash:
        raise ValueError(f"--points {args.points}: column(s) {', '.join(map(repr, clash))} would also name output "
                         f"channels; rename them")
    return values, grid, points, carried


def main(argv=None):
    args = make_parser().parse_args(sys.argv[1:] if argv is None else argv)
    check_out(args.out, args.overwrite, FORMATS[args.to])
    if isinstance(args.batch_size, bool) or args.batch_size < 1:
        raise ValueError(f"--batch_size must be >= 1, got {args.batch_size}")
    anchors = read_anchors(args.anchors) if args.anchors else None
    encoder = load_location_encoder(args.checkpoint, args.device, anchors, args.batch_size)
    if args.to in ("onnx", "safetensors"):
        try:
            check_class_head(encoder.params, args.checkpoint)
        except ValueError as err:
            print(f"Note: {err}; the embedding is what this file is good for")
        if args.to == "safetensors":
            safetensors_file.save(args.out, encoder.model, encoder.params, encoder.class_names)
            print(f"Wrote {args.out}: the weights of {args.checkpoint} with its flags and class names")
            return None
        export_onnx(encoder, args.out)
        report = check_onnx(args.out, encoder)
        if not parity_ok(report):
            Path(args.out).unlink()
            raise ValueError(f"{args.out} was removed: its outputs differ from PyTorch's: {describe_parity(report)}")
        print(f"Wrote {args.out}; {describe_parity(report)}")
        return report
    values, grid, points, carried = _checked_values(args, encoder)
    _show_progress()
    if args.to == "geotiff":
        write_geotiff(args.out, values, grid)
        size = f"{grid.width} x {grid.height} cells of {grid.resolution:g} degrees"
    else:
        rows = block_rows(len(values.names))
        blocks = (points[start:start + rows] for start in range(0, len(points), rows)) if points is not None \
            else grid_blocks(grid, rows)
        total = len(points) if points is not None else grid.width * grid.height
        write_parquet(args.out, values, blocks, total, carried)
        size = f"{total:,} points"
    print(f"Wrote {args.out}: {args.values} ({len(values.names)} channels) at {size}")
    return None


def _show_progress():
    """Progress lines of the tiles on stderr (after the inputs are checked, so a bad input stays one line)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s - %(message)s"))
    progress = logging.getLogger(LoggedBar.__module__)
    if not progress.handlers:
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)


if __name__ == "__main__":
    run_command(main, output_flag="--out")
