"""CSP: contrastive spatial pre-training of location encoders (Mai et al., ICML 2023), reimplemented.

The importable API (`pip install -e .` from the repository root, or a wheel):

    from csp import load_location_encoder
    encoder = load_location_encoder("model.pth.tar")    # a checkpoint of this project or of the original code
    encoder.embed(lonlat)                # (N, 2) (lon, lat) degrees -> (N, d) float32 location embeddings
    encoder.class_probabilities(lonlat)  # (N, C) P(y | x), independent sigmoids (rows do not sum to 1)

Every module of the project is a submodule (`csp.datasets`, `csp.models`, `csp.trainer`, ...); the scripts in the
repository's `main/` folder run as before (`cd main && python train_unsuper.py ...`), see `as_package.py`.
"""
from .models import PretrainedLocationEncoder, load_location_encoder

__all__ = ["PretrainedLocationEncoder", "load_location_encoder"]
