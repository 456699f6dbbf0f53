"""predict.py on the demo: its linear probe as "your classifier", its CSP-MC-BLD checkpoint as the prior.

    python benchmarks/benchmark_prior.py --demo_dir demo --out_dir /tmp/prior-bench [--repeats 3]

Rebuilds the probe's predictions exactly as the demo's run made them (`own_data`: the probe trained on the
few-shot subset of the labelled training rows) for the val rows (the demo's evaluation rows) and for the other
labelled training rows (used neither by the probe nor by fine-tuning: the rows α is fitted on), writes them as
predict.py's inputs, and prints Top-1 / Top-5 of the probe alone, with the product prior (checked against the demo
run's "image x location prior" Top-1) and with the tempered prior (α fitted for Top-1, and for the likelihood);
also α fitted (for Top-1) on half the val rows and scored on the other half (both ways). Wall time of one
predict.py call: median and range of `--repeats`, with the load.
"""
import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

import checkout  # (this checkout's main/ as the package csp)
from csp import own_data, predict, sampling
from csp.table_reader import read_table
from csp.arguments import run_command


def demo_run(demo_dir, seed):
    """The CSP-MC-BLD results document of the demo in `demo_dir`."""
    runs = sorted((Path(demo_dir) / "runs" / f"seed{seed}").glob("*_contsoftmax_ratio*.results.json"))
    if not runs:
        raise FileNotFoundError(f"no CSP-MC-BLD results in {demo_dir}/runs/seed{seed}: run `python main/demo.py "
                                f"--out_dir {demo_dir}` first")
    return json.loads(runs[-1].read_text())


def probe_inputs(results, out_dir):
    """Write val.csv / val.npy, heldout.csv / heldout.npy and classes.txt into `out_dir`."""
    params = {**results["params"], "model_dir": str(Path(results["files"]["model_file_name"]).parent),
              "feature_storage": "auto"}
    data = own_data.load_own_dataset(params, "val", True, False)
    obs = own_data.Observations(params["data_table"], params["label_set"])
    features = own_data.FeatureFile(params["features"], obs)
    labelled = np.flatnonzero(data.train.classes >= 0)
    subset, _ = sampling.train_sample_indices(params, data.train.classes[labelled])
    heldout = data.train.inds[np.setdiff1d(labelled, labelled[subset])]
    val = np.flatnonzero(obs.splits == "val")
    table = read_table(params["data_table"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "classes.txt").write_text("\n".join(obs.class_names) + "\n")
    for name, rows in (("val", val), ("heldout", heldout)):
        preds = own_data._probe_predictions(params, features, data.train, rows, len(obs.class_names))
        table.iloc[rows][["image", "lon", "lat", "label"]].to_csv(out_dir / f"{name}.csv", index=False)
        np.save(out_dir / f"{name}.npy", preds)
    return len(val), len(heldout)


def halves(out_dir):
    """val rows split in two (even / odd rows): tables and predictions a.csv/.npy, b.csv/.npy."""
    table, preds = pd.read_csv(out_dir / "val.csv"), np.load(out_dir / "val.npy")
    for name, rows in (("a", slice(0, None, 2)), ("b", slice(1, None, 2))):
        table.iloc[rows].to_csv(out_dir / f"{name}.csv", index=False)
        np.save(out_dir / f"{name}.npy", preds[rows])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demo_dir", type=Path, default=Path(__file__).resolve().parents[1] / "demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out_dir", type=Path, required=True, help="scratch folder for predict.py's inputs")
    p.add_argument("--repeats", type=checkout.count, default=3)
    args = p.parse_args(argv)
    results = demo_run(args.demo_dir, args.seed)
    checkpoint = results["files"]["model_file_name"]
    demo_top1 = [e for e in results["evaluations"] if e["method"] == "location_prior" and e["epoch"] is None][-1]
    num_val, num_heldout = probe_inputs(results, args.out_dir)
    out = args.out_dir
    classes = out / "classes.txt"

    def run(table, preds, **kwargs):
        return predict.predict(checkpoint, out / table, out / preds, classes, **kwargs)

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        product = run("val.csv", "val.npy")
        times.append(time.perf_counter() - start)
    tempered = [run("val.csv", "val.npy", fusion_kind="tempered", fit_on=out / "heldout.csv",
                    fit_predictions=out / "heldout.npy", fit_for=objective) for objective in ("top1", "likelihood")]
    print(f"Demo {args.demo_dir} seed {args.seed}: {num_val} val rows; α fitted on {num_heldout} labelled training "
          f"rows that neither the probe nor fine-tuning used")
    print(f"  the demo run's image x location prior Top-1: {demo_top1['splits'][0]['top1']:.2f} "
          f"({demo_top1['num_rows']} rows); predict.py --fusion product: {product.accuracy['with prior'][1]:.2f} "
          f"({product.num_labelled} rows)")
    for line in [*product.report[1:], *tempered[0].report[1:], *tempered[1].report[1:]]:
        print("  " + line)
    halves(out)
    for fit, score in (("a", "b"), ("b", "a")):
        crossed = run(f"{score}.csv", f"{score}.npy", fusion_kind="tempered", fit_on=out / f"{fit}.csv",
                      fit_predictions=out / f"{fit}.npy")
        plain = run(f"{score}.csv", f"{score}.npy")
        print(f"  α fitted on val half {fit}, scored on half {score} ({crossed.num_labelled} rows): α = "
              f"{crossed.alpha:.3f}; Top-1 probe {crossed.accuracy['classifier'][1]:.2f}, product "
              f"{plain.accuracy['with prior'][1]:.2f}, tempered {crossed.accuracy['with prior'][1]:.2f}")
    print(f"  predict.py on the {num_val} val rows: median {statistics.median(times):.2f} s (range "
          f"{min(times):.2f}-{max(times):.2f}, {args.repeats} runs); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    run_command(main)
