"""Position encodings of the original CSP location encoders, as torch functions.

Every function takes `coords`, a float32 tensor (B, 2) of (lon, lat) in degrees, and returns the float32 (B, d)
vector that the encoder's network reads, computed on the tensor's device; none changes its input.

The sinusoidal encodings multiply degrees by frequencies of up to 1/min_radius, so their angles reach thousands
(or millions) of radians. As in the original, which did this in numpy float64, the angle is formed in float64;
here it is then reduced modulo 2*pi, and only the reduced angle is cast to float32 for sin/cos, which keeps the
result within ~1e-7 of the float64 value at float32 speed.
"""
import math

import torch

TWO_PI = 2.0 * math.pi
HALF_SQRT3 = math.sqrt(3.0) / 2.0
FREQ_INITS = ("geometric", "random", "nerf")


def frequency_list(freq_init, frequency_num, max_radius, min_radius, generator=None):
    """The float64 frequencies (frequency_num,) of the sinusoidal encodings (`--freq_init`).

    geometric: 1/lambda_s for the scales lambda_s = min_radius * (max_radius/min_radius)^(s/(F-1)), s = 0..F-1;
    nerf: pi * 2^s; random: U[0, 1) * max_radius, drawn from `generator` (a seeded torch.Generator).
    """
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
    """(..., n) float64 angles -> (..., n, 2) float32 [sin, cos], reduced modulo 2*pi in float64 first."""
    reduced = torch.remainder(angles, TWO_PI).float()
    return torch.stack((torch.sin(reduced), torch.cos(reduced)), dim=-1)


def gridcell(coords, freqs):
    """(B, 4F): for lon then lat, for each frequency f_s: [sin(c*f_s), cos(c*f_s)] (degrees, no 2*pi)."""
    angles = coords.double().unsqueeze(-1) * freqs               # (B, 2, F)
    return sin_cos(angles).flatten(1)


def theory_angles(coords, freqs, radians=False):
    """(B, F, 3) float64: the projections of (lon, lat) on the three theory directions, times each frequency."""
    coords = coords.double()
    if radians:
        coords = coords * math.pi / 180.0
    lon, lat = coords[:, 0], coords[:, 1]
    # projections on the unit vectors at 0, 120 and 240 degrees
    projections = torch.stack((lon, -0.5 * lon + HALF_SQRT3 * lat, -0.5 * lon - HALF_SQRT3 * lat), dim=-1)
    return projections.unsqueeze(1) * freqs.unsqueeze(-1)        # (B, F, 3)


def theory(coords, freqs, radians=False):
    """(B, F, 6): for each frequency f_s, [sin, cos] of f_s times the projection on each of the 3 directions.

    Flattened to (B, 6F) it is the frequency-major input of the `theory` network.
    """
    return sin_cos(theory_angles(coords, freqs, radians)).flatten(-2)


def hexagridcell(coords, divisors):
    """(B, 6F): for lon then lat, for each scale s, a = c / divisor_s and [sin a, sin(a + 2pi/3), sin(a + 4pi/3)]."""
    angles = coords.double().unsqueeze(-1) / divisors             # (B, 2, F)
    shifts = torch.arange(3, dtype=torch.float64, device=coords.device) * (TWO_PI / 3.0)
    shifted = torch.remainder(angles.unsqueeze(-1) + shifts, TWO_PI).float()   # (B, 2, F, 3)
    return torch.sin(shifted).flatten(1)


def hexagridcell_divisors(frequency_num, max_radius):
    """float64 (F,): max_radius^(s/(F-1)), the hexagridcell scale rule (ignores min_radius and --freq_init)."""
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
    """(B, K): exp(-|x - a_k|^2 / (2 sigma^2)) for anchor points a_k, in raw degrees."""
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
    """(B, 4): [sin pi x, sin pi y, cos pi x, cos pi y] of x = lon/180, y = lat/90 (Mac Aodha et al. 2019)."""
    scaled = global_normalise(coords) * math.pi
    return torch.cat((torch.sin(scaled), torch.cos(scaled)), dim=1)


def wrap_3d(coords):
    """(B, 3): the point on the unit sphere, [cos lon cos lat, sin lon cos lat, sin lat].

    The angles are pi*(lon/180, lat/90), i.e. (lon, lat) in radians.
    """
    scaled = global_normalise(coords) * math.pi
    lon, lat = scaled[:, 0:1], scaled[:, 1:2]
    return torch.cat((torch.cos(lon) * torch.cos(lat), torch.sin(lon) * torch.cos(lat), torch.sin(lat)), dim=1)
