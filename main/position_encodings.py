"""Position encodings of the CSP location encoders: float32 (B, 2) (lon, lat) degrees -> float32 (B, d).
Sinusoidal angles are formed in float64 and reduced modulo 2π before the float32 sin / cos.
"""
import math

import torch

TWO_PI = 2.0 * math.pi
HALF_SQRT3 = math.sqrt(3.0) / 2.0
FREQ_INITS = ("geometric", "random", "nerf")


def frequency_list(freq_init, frequency_num, max_radius, min_radius, generator=None):
    """float64 (F,) frequencies of `--freq_init`: geometric 1/λ_s, λ_s = min_radius ·
    (max_radius/min_radius)^(s/(F-1)); nerf π 2^s; random U[0, 1) · max_radius."""
    steps = torch.arange(frequency_num, dtype=torch.float64)
    if freq_init == "geometric":
        if frequency_num < 2:
            raise ValueError(f"--freq_init geometric needs --frequency_num >= 2, got {frequency_num}")
        _check_positive(max_radius=max_radius, min_radius=min_radius)
        if not math.isfinite(1.0 / min_radius):
            raise ValueError(f"--min_radius {min_radius} is too small: the highest frequency 1/--min_radius is "
                             f"infinite; give a --min_radius of at least 1e-300")
        ratio = float(max_radius) / float(min_radius)      # may overflow: then the difference of the logs
        log_ratio = math.log(ratio) if math.isfinite(ratio) else math.log(max_radius) - math.log(min_radius)
        increment = log_ratio / (frequency_num - 1.0)
        return 1.0 / (min_radius * torch.exp(steps * increment))
    if freq_init == "nerf":
        return math.pi * torch.exp2(steps)
    if freq_init == "random":
        return torch.rand(frequency_num, dtype=torch.float64, generator=generator) * max_radius
    raise ValueError(f"--freq_init must be one of {', '.join(FREQ_INITS)}, got {freq_init!r}")


def _check_positive(**scales):
    for flag, value in scales.items():
        if not value > 0:
            raise ValueError(f"--{flag} must be > 0 (a scale in degrees), got {value}")


def sin_cos(angles):
    """(..., n) float64 angles -> (..., n, 2) float32 [sin, cos]."""
    reduced = torch.remainder(angles, TWO_PI).float()
    return torch.stack((torch.sin(reduced), torch.cos(reduced)), dim=-1)


def gridcell(coords, freqs):
    """(B, 4F): for lon then lat, per frequency f_s: [sin(c f_s), cos(c f_s)] (degrees, no 2π)."""
    angles = coords.double().unsqueeze(-1) * freqs               # (B, 2, F)
    return sin_cos(angles).flatten(1)


def theory_angles(coords, freqs, radians=False):
    """(B, F, 3) float64: (lon, lat) projected on the three theory directions, times each frequency."""
    coords = coords.double()
    if radians:
        coords = coords * math.pi / 180.0
    lon, lat = coords[:, 0], coords[:, 1]
    # projections on the unit vectors at 0, 120 and 240 degrees
    projections = torch.stack((lon, -0.5 * lon + HALF_SQRT3 * lat, -0.5 * lon - HALF_SQRT3 * lat), dim=-1)
    return projections.unsqueeze(1) * freqs.unsqueeze(-1)        # (B, F, 3)


def theory(coords, freqs, radians=False):
    """(B, F, 6): per frequency [sin, cos] of the three projections."""
    return sin_cos(theory_angles(coords, freqs, radians)).flatten(-2)


def hexagridcell(coords, divisors):
    """(B, 6F): for lon then lat, per scale a = c / divisor_s: [sin a, sin(a + 2π/3), sin(a + 4π/3)]."""
    angles = coords.double().unsqueeze(-1) / divisors             # (B, 2, F)
    shifts = torch.arange(3, dtype=torch.float64, device=coords.device) * (TWO_PI / 3.0)
    shifted = torch.remainder(angles.unsqueeze(-1) + shifts, TWO_PI).float()   # (B, 2, F, 3)
    return torch.sin(shifted).flatten(1)


def hexagridcell_divisors(frequency_num, max_radius):
    """float64 (F,): max_radius^(s/(F-1))."""
    if frequency_num < 2:
        raise ValueError(f"--spa_enc_type hexagridcell needs --frequency_num >= 2, got {frequency_num}")
    _check_positive(max_radius=max_radius)
    steps = torch.arange(frequency_num, dtype=torch.float64)
    return torch.pow(torch.tensor(float(max_radius), dtype=torch.float64), steps / (frequency_num - 1))


def min_max_normalise(coords, extent):
    """(B, 2): lon and lat mapped linearly from `extent` (xmin, xmax, ymin, ymax) onto [-1, 1]."""
    xmin, xmax, ymin, ymax = extent
    lon = (coords[:, 0] - xmin) / (xmax - xmin)
    lat = (coords[:, 1] - ymin) / (ymax - ymin)
    return torch.stack((lon, lat), dim=1) * 2.0 - 1.0


def rbf(coords, anchors, kernel_size):
    """(B, K): exp(-|x - a_k|^2 / (2 σ^2)) for anchor points a_k, in degrees."""
    squared = (coords.unsqueeze(1) - anchors.unsqueeze(0)).square().sum(-1)
    return torch.exp(squared * (-1.0 / (2.0 * kernel_size ** 2)))


def random_fourier(coords, extent, dirvec, shift):
    """(B, F): sqrt(2/F) cos(x' W + b), x' = coords min-max normalised by `extent`, W (2, F), b (F)."""
    projected = min_max_normalise(coords, extent) @ dirvec + shift
    return torch.cos(projected) * math.sqrt(2.0 / dirvec.shape[1])


def global_normalise(coords):
    """(B, 2): (lon/180, lat/90)."""
    return torch.stack((coords[:, 0] / 180.0, coords[:, 1] / 90.0), dim=1)


def wrap(coords):
    """(B, 4): [sin πx, sin πy, cos πx, cos πy] of x = lon/180, y = lat/90 (Mac Aodha et al. 2019)."""
    scaled = global_normalise(coords) * math.pi
    return torch.cat((torch.sin(scaled), torch.cos(scaled)), dim=1)


def wrap_3d(coords):
    """(B, 3): the unit-sphere point [cos lon cos lat, sin lon cos lat, sin lat]."""
    scaled = global_normalise(coords) * math.pi
    lon, lat = scaled[:, 0:1], scaled[:, 1:2]
    return torch.cat((torch.cos(lon) * torch.cos(lat), torch.sin(lon) * torch.cos(lat), torch.sin(lat)), dim=1)
