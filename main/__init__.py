"""CSP: contrastive spatial pre-training of location encoders (Mai et al., ICML 2023), reimplemented.

    from csp import load_location_encoder
    encoder = load_location_encoder("model.pth.tar")    # a checkpoint of this project or of the original code
    encoder.embed(lonlat)                # (N, 2) (lon, lat) degrees -> (N, d) float32 location embeddings
    encoder.class_probabilities(lonlat)  # (N, C) P(y | x), independent sigmoids
"""
from .models import PretrainedLocationEncoder, load_location_encoder

__all__ = ["PretrainedLocationEncoder", "load_location_encoder"]
