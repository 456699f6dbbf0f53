"""What a run writes besides its checkpoints and log: the results document (JSON), the per-sample ranks (npz)
and the closing Summary line.
"""
import json
import logging

import numpy as np

from . import checkpoints
from .evaluation import overall_top1
from .paths import atomic_write

logger = logging.getLogger(__name__)

RESULTS_FORMAT = "csp-results/1"
# params that say where and on what a run happened, not what it computed (kept out of the results' "params")
MACHINE_PARAMS = ("device", "model_dir", "unsuper_model_file_name", "model_file_name", "log_file_name", "op_dir",
                  "train_sample_idx_file", "feature_storage", "compile")
FILE_PARAMS = ("unsuper_model_file_name", "model_file_name", "log_file_name", "train_sample_idx_file")


def output_file_names(model_file_name):
    """(log, results JSON, ranks npz) of a run whose fine-tuned checkpoint is `model_file_name`."""
    stem = checkpoints.log_file_name(model_file_name)[:-len(".log")]
    return stem + ".log", stem + ".results.json", stem + ".ranks.npz"


def results_document(params, device, phases, evaluations, records=None):
    """{format: "csp-results/1", params (less MACHINE_PARAMS), device, files, phases: {phase:
    {epochs_done, epochs_run}}, evaluations: [{method, flag, epoch (null: final), eval_set, num_rows, num_scored,
    splits: [{id, name, count, top1, top3, top5, top10, mrr}]}]}, top-k in %, plus `records`."""
    _, results_file, ranks_file = output_file_names(params["model_file_name"])
    files = {key: params.get(key) for key in FILE_PARAMS}
    files.update(results=results_file, ranks=ranks_file)
    return {
        "format": RESULTS_FORMAT,
        "params": checkpoints.plain_value({key: value for key, value in params.items() if key not in MACHINE_PARAMS}),
        "device": str(device),
        "files": files,
        "phases": phases,
        "evaluations": evaluations,
        **(records or {}),
    }


def write_results(document):
    """Write `document` as JSON to its results file, atomically."""
    text = json.dumps(document, indent=1).encode()
    atomic_write(document["files"]["results"], lambda handle: handle.write(text))


def read_results(path):
    """The results document at `path`; None if absent or (with a warning) unreadable."""
    try:
        with open(path) as handle:
            results = json.load(handle)
        if not all({"method", "epoch"} <= entry.keys() for entry in results["evaluations"]):
            raise ValueError("an evaluation without its method or epoch")
        return results
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        logger.warning("%s is not a readable results file (%s); treated as missing", path, err)
        return None


def write_ranks(path, final=None, location_only=None):
    """Write the final evaluations' ranks to `path` (npz, atomically): `locs` (N, 2) (lon,
    lat) degrees, `labels`, `split_ids`, `ranks_{method}` (1 = best); location_only as `locenc_*` and
    `ranks_location_only` (0: not scored)."""
    arrays = {}
    if final is not None:
        locs, labels, split_ids, ranks = final
        arrays.update(locs=_numpy(locs)[:, :2], labels=_numpy(labels), split_ids=np.asarray(split_ids))
        arrays.update({f"ranks_{name}": _numpy(values) for name, values in ranks.items()})
    if location_only is not None:
        locs, labels, split_ids, ranks = location_only
        arrays.update(locenc_locs=_numpy(locs)[:, :2], locenc_labels=_numpy(labels),
                      locenc_split_ids=np.asarray(split_ids), ranks_location_only=_numpy(ranks))
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def _numpy(values):
    return values.cpu().numpy() if hasattr(values, "cpu") else np.asarray(values)


def log_summary(evaluations, eval_split):
    """Log and return the final Top-1s (%) line: image × prior, image alone, location encoder alone."""
    final = {entry["method"]: entry for entry in evaluations if entry["epoch"] is None}
    labels = {"no_prior": "image alone", "location_only": "location encoder alone (LocEnc)",
              "location_prior": "image x location encoder prior"}
    order = [m for m in final if m not in ("no_prior", "location_only")] + ["no_prior", "location_only"]
    parts = [f"{labels.get(method, f'image x {method} prior')} {overall_top1(final[method]):.2f}"
             for method in order if method in final and overall_top1(final[method]) is not None]
    if not parts:
        return None
    line = f"Summary: Top-1 (%) on {eval_split}: " + ", ".join(parts)
    logger.info(line)
    return line
