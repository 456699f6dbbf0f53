"""Draw the CSP model overview (`image/model_overview.png`) with matplotlib.

    python benchmarks/draw_overview.py [--out image/model_overview.png]
"""
import argparse
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

import checkout  # noqa: F401  (this checkout's main/ as the package csp)
from csp.arguments import run_command

WIDTH, HEIGHT = 16.0, 9.6
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "image" / "model_overview.png"
LOCATION, IMAGE, LOSS, FROZEN, STAGE, RESULT = "#d6eaf8", "#fdebd0", "#e8daef", "#e5e7e9", "#fbfcfc", "#d5f5e3"


def rounded(ax, x, y, w, h, face, edge, width=1.2, rounding=0.12, style="-"):
    """A rounded rectangle with its lower-left corner at (x, y)."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=f"round,pad=0.02,rounding_size={rounding}", facecolor=face,
                                edgecolor=edge, linewidth=width, linestyle=style))


def box(ax, x, y, w, h, text, colour, size=10.5, weight="normal"):
    """A rounded box with centred text; returns (x, y, w, h) for `left`, `right`, `top`, `bottom`."""
    rounded(ax, x, y, w, h, colour, "#34495e")
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight)
    return x, y, w, h


def frame(ax, x, y, w, h, title, title_x=None):
    """A dashed stage frame with its title at the top, from the left edge (or from `title_x`)."""
    rounded(ax, x, y, w, h, STAGE, "#7f8c8d", width=1.0, rounding=0.2, style="--")
    ax.text(x + 0.15 if title_x is None else title_x, y + h - 0.15, title, ha="left", va="top", fontsize=13,
            weight="bold", color="#2c3e50")


def arrow(ax, start, end, text=None, colour="#2c3e50", text_offset=(0.0, 0.15)):
    """A straight arrow from `start` to `end`, with an optional italic label beside its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=colour, linewidth=1.4,
                                 shrinkA=2, shrinkB=2))
    if text:
        ax.text((start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1], text,
                ha="center", va="bottom", fontsize=9, style="italic", color=colour)


def right(b):
    return b[0] + b[2], b[1] + b[3] / 2


def left(b):
    return b[0], b[1] + b[3] / 2


def top(b):
    return b[0] + b[2] / 2, b[1] + b[3]


def bottom(b):
    return b[0] + b[2] / 2, b[1]


def draw_pretraining(ax):
    frame(ax, 0.2, 4.75, 15.6, 4.65, "1. Contrastive spatial pre-training (all unlabelled location-image pairs)")
    # location side
    loc_in = box(ax, 0.5, 7.3, 1.7, 1.0, "location\nx = (lon, lat)", "white")
    enc = box(ax, 2.7, 7.05, 2.5, 1.5, "position encoding\nPE(x)\nsin / cos of lon, lat\nat S scales (grid)",
              LOCATION, size=9.5)
    ffn = box(ax, 5.7, 7.05, 2.2, 1.5, "FFN\n1 × 512, LeakyReLU\n(GELU for fMoW),\ndropout, LayerNorm",
              LOCATION, size=9.5)
    emb = box(ax, 8.4, 7.3, 1.4, 1.0, "e(x) ∈ ℝᵈ", LOCATION, size=11, weight="bold")
    rounded(ax, 2.55, 6.85, 5.5, 1.95, "none", "#2e86c1", width=1.6, rounding=0.15)
    ax.text(5.3, 8.87, "location encoder e(·)  (trained)", ha="center", va="bottom", fontsize=10, color="#2e86c1",
            weight="bold")
    arrow(ax, right(loc_in), left(enc))
    arrow(ax, right(enc), left(ffn))
    arrow(ax, right(ffn), left(emb))
    # image side
    img_in = box(ax, 0.5, 5.25, 1.7, 1.0, "image I", "white")
    backbone = box(ax, 2.7, 5.0, 2.5, 1.5, "image backbone F\nInceptionV3 (iNat) /\nGeo-SSL ResNet50 (fMoW)\n"
                   "frozen, features 2048-d", FROZEN, size=9.5)
    proj = box(ax, 5.7, 5.0, 2.2, 1.5, "projection W\nlinear 2048 → d\n(trained)", IMAGE, size=9.5)
    feat = box(ax, 8.4, 5.25, 1.4, 1.0, "f(I) = W F(I)", IMAGE, size=10.5, weight="bold")
    arrow(ax, right(img_in), left(backbone))
    arrow(ax, right(backbone), left(proj))
    arrow(ax, right(proj), left(feat))
    # the three contrastive terms, in one group that both embeddings feed
    rounded(ax, 10.75, 5.55, 4.9, 3.3, "none", "#6c3483", width=1.6, rounding=0.15)
    ax.text(13.2, 8.92, "contrastive objective", ha="center", va="bottom", fontsize=10, color="#6c3483",
            weight="bold")
    terms = [
        ("B  in-batch negatives", "e(xᵢ)·f(Iⱼ): the pair i = j positive,\nthe other images of the batch negative",
         7.75),
        ("L  random negative locations", "x′ drawn on the sphere each step:\ne(x′)·f(Iᵢ) negative", 6.7),
        ("D  SimCSE dropout positives", "e(xᵢ) twice with two dropout masks: positive;\nthe batch's other "
         "locations negative", 5.65),
    ]
    for title, text, y in terms:
        rounded(ax, 10.9, y, 4.6, 0.95, LOSS, "#6c3483", width=1.0)
        ax.text(11.05, y + 0.72, title, ha="left", va="center", fontsize=10, weight="bold", color="#4a235a")
        ax.text(11.05, y + 0.3, text, ha="left", va="center", fontsize=8.8)
    arrow(ax, right(emb), (10.7, 7.8), colour="#2e86c1")
    arrow(ax, right(feat), (10.7, 6.1), colour="#ca6f1e")
    ax.text(10.75, 4.88, "MC: softmax per term, temperatures τ₀, τ₁, τ₂:  ℓ = ℓ_B + α₁ ℓ_L + α₂ ℓ_D\n"
            "NCE: sigmoid version of each term.  MSE: regress F(I) from e(x)",
            ha="left", va="bottom", fontsize=8.8, color="#4a235a")


def draw_finetuning(ax):
    frame(ax, 0.2, 0.2, 9.9, 4.35, "2. Fine-tuning on λ % labelled locations", title_x=3.0)
    ax.text(3.0, 3.95, "λ = 5, 10, 20 or 100 % of the training labels (stratified per class)", ha="left",
            va="top", fontsize=9.5, color="#566573")
    emb = box(ax, 0.5, 2.0, 2.3, 1.3, "pre-trained\nlocation encoder e(x)\n(all weights fine-tuned)",
              LOCATION, size=9.5)
    arrow(ax, (1.65, 4.73), top(emb), text="e(·) from 1.", colour="#2e86c1", text_offset=(0.55, -0.1))
    classes = box(ax, 3.4, 2.1, 2.4, 1.1, "class embeddings T\nP(y|x) = σ(e(x)·T_y)", LOCATION, size=9.5)
    loss = box(ax, 6.4, 1.8, 3.4, 1.7, "presence-only loss\npositive: class y at x, weight C\nnegatives: the other "
               "classes at x,\nand every class at a random\nlocation on the sphere", LOSS, size=9.2)
    arrow(ax, right(emb), left(classes))
    arrow(ax, right(classes), left(loss))
    ax.text(0.5, 0.55, "The image side is not trained here: the image classifier g(F(I)) comes as fixed\n"
            "predictions of a model trained on the same λ % (full predictions at 100 %).", ha="left",
            va="bottom", fontsize=9, color="#566573")


def draw_inference(ax):
    frame(ax, 10.3, 0.2, 5.5, 4.35, "3. Inference")
    prior = box(ax, 10.6, 2.55, 2.3, 1.15, "location prior\nP(y | x) = σ(e(x)·T_y)\n(fine-tuned)", LOCATION,
                size=9.5)
    image = box(ax, 13.3, 2.55, 2.2, 1.15, "image classifier\nP(y | I) = g(F(I))\n(fixed predictions)", IMAGE,
                size=9.5)
    box(ax, 11.3, 0.75, 3.5, 1.2, "P(y | I, x) ∝ P(y | x) · P(y | I)\n→ top-1 class", RESULT, size=10.5,
        weight="bold")
    arrow(ax, bottom(prior), (12.3, 1.98))
    arrow(ax, bottom(image), (13.7, 1.98))


def draw(out):
    """Draw the overview into `out` (PNG, 2400 x 1440 pixels)."""
    fig = plt.figure(figsize=(WIDTH, HEIGHT), dpi=150)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.set_axis_off()
    draw_pretraining(ax)
    draw_finetuning(ax)
    draw_inference(ax)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description="Draw the CSP model overview",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="PNG to write (overwrites the README's figure)")
    draw(p.parse_args(argv).out)


if __name__ == "__main__":
    run_command(main)
