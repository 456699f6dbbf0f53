"""Position encodings of the spherical location encoders after CSP, as torch functions: Sphere2Vec (Mai
et al., ISPRS J. 2023; its code's feature layout), TorchSpatial (Wu et al., NeurIPS 2024) `tile_ffn`, spherical
harmonics (Rußwurm et al., ICLR 2024). Each maps float32 (B, 2) (lon, lat) degrees to float32 (B, d); `freqs`:
float64 (F,), angles reduced modulo 2π in float64.
"""
import math

import torch

from .position_encodings import sin_cos

DEG = math.pi / 180.0


def _radians(coords):
    values = coords.double() * DEG
    return values[:, 0:1], values[:, 1:2]


def _scaled(angle, freqs):
    return sin_cos(angle * freqs)


def _single(angle):
    return torch.sin(angle).float(), torch.cos(angle).float()


def torchspatial_frequencies(frequency_num, max_radius):
    """float64 (F,): 1 / max_radius^(s/(F-1)), TorchSpatial's sphereM+ / dfs schedule."""
    steps = torch.arange(frequency_num, dtype=torch.float64)
    return torch.pow(torch.tensor(float(max_radius), dtype=torch.float64), -steps / max(frequency_num - 1, 1))


def _unit_point(coords):
    lon, lat = _radians(coords)
    return torch.cat((torch.cos(lat) * torch.cos(lon), torch.cos(lat) * torch.sin(lon), torch.sin(lat)), 1)


def xyz(coords):
    """(B, 3): [cos lat cos lon, cos lat sin lon, sin lat]."""
    return _unit_point(coords).float()


def nerf(coords, freqs):
    """(B, 6F): NeRF (Mildenhall et al. 2020, eq. 4) of p = xyz(coords): sin(p f_s) then cos(p f_s), f_s = π 2^s."""
    waves = sin_cos(_unit_point(coords).unsqueeze(-1) * freqs)      # (B, 3, F, 2)
    return waves.permute(0, 3, 1, 2).flatten(1)


def sphere_c(coords, freqs):
    """(B, 3F) sphereC: per scale [sin(f_s lat), cos(f_s lat) cos(f_s lon), cos(f_s lat) sin(f_s lon)]."""
    lon, lat = _radians(coords)
    lon_sc, lat_sc = _scaled(lon, freqs), _scaled(lat, freqs)     # (B, F, 2) [sin, cos]
    lat_sin, lat_cos = lat_sc[..., 0], lat_sc[..., 1]
    return torch.stack((lat_sin, lat_cos * lon_sc[..., 1], lat_cos * lon_sc[..., 0]), -1).flatten(1)


def sphere_c_plus(coords, freqs):
    """(B, 6F) sphereC+: per scale [sin, cos of f_s lat, sin, cos of f_s lon, then sphereC's two products]."""
    lon, lat = _radians(coords)
    lon_sc, lat_sc = _scaled(lon, freqs), _scaled(lat, freqs)
    lat_sin, lat_cos, lon_sin, lon_cos = lat_sc[..., 0], lat_sc[..., 1], lon_sc[..., 0], lon_sc[..., 1]
    return torch.stack((lat_sin, lat_cos, lon_sin, lon_cos, lat_cos * lon_cos, lat_cos * lon_sin), -1).flatten(1)


def _mixed_terms(lon, lat, lon_sc, lat_sc):
    lon_sin1, lon_cos1 = _single(lon)
    _, lat_cos1 = _single(lat)
    lat_cos, lon_sin, lon_cos = lat_sc[..., 1], lon_sc[..., 0], lon_sc[..., 1]
    return lat_cos * lon_cos1, lat_cos1 * lon_cos, lat_cos * lon_sin1, lat_cos1 * lon_sin


def sphere_m(coords, freqs):
    """(B, 5F) sphereM: per scale [sin(f lat), cos(f lat) cos lon, cos lat cos(f lon), cos(f lat) sin lon, cos lat sin(f
    lon)]."""
    lon, lat = _radians(coords)
    lon_sc, lat_sc = _scaled(lon, freqs), _scaled(lat, freqs)
    return torch.stack((lat_sc[..., 0], *_mixed_terms(lon, lat, lon_sc, lat_sc)), -1).flatten(1)


def sphere_m_plus(coords, freqs):
    """(B, 8F) sphereM+: per scale [sin, cos of f lat, sin, cos of f lon, then sphereM's four products]."""
    lon, lat = _radians(coords)
    lon_sc, lat_sc = _scaled(lon, freqs), _scaled(lat, freqs)
    return torch.stack((lat_sc[..., 0], lat_sc[..., 1], lon_sc[..., 0], lon_sc[..., 1],
                        *_mixed_terms(lon, lat, lon_sc, lat_sc)), -1).flatten(1)


def dfs(coords, freqs):
    """(B, 4F^2 + 4F) double Fourier sphere: u v^T row-major, u = [sin(f_s lon), cos(f_s lon)] over s, v the same of
    lat, then per scale [sin(f lat), cos(f lat), sin(f lon), cos(f lon)]."""
    lon, lat = _radians(coords)
    lon_sc, lat_sc = _scaled(lon, freqs), _scaled(lat, freqs)
    u = lon_sc.transpose(1, 2).flatten(1)                          # (B, 2F): sines then cosines
    v = lat_sc.transpose(1, 2).flatten(1)
    products = (u.unsqueeze(2) * v.unsqueeze(1)).flatten(1)
    singles = torch.stack((lat_sc[..., 0], lat_sc[..., 1], lon_sc[..., 0], lon_sc[..., 1]), -1).flatten(1)
    return torch.cat((products, singles), 1)


def tile_index(coords, extent, cell_size, columns, rows):
    """(B,) int64 row * columns + column of each point's `cell_size`-degree cell of `extent` (xmin, xmax,
    ymin, ymax); outside points go to the nearest border cell."""
    xmin, _, ymin, _ = extent
    column = torch.floor((coords[:, 0].double() - xmin) / cell_size).clamp(0, columns - 1)
    row = torch.floor((coords[:, 1].double() - ymin) / cell_size).clamp(0, rows - 1)
    return (row * columns + column).long()


def legendre_tables(degrees):
    """float64 (L, L) recurrence factors (m <= l - 2): a_lm = sqrt((4l^2 - 1) / (l^2 - m^2)),
    b_lm = sqrt(((l-1)^2 - m^2) / (4(l-1)^2 - 1))."""
    l = torch.arange(degrees, dtype=torch.float64).unsqueeze(1)
    m = torch.arange(degrees, dtype=torch.float64).unsqueeze(0)
    valid = m <= l - 2
    a = torch.where(valid, torch.sqrt((4 * l * l - 1) / torch.where(valid, l * l - m * m, 1.0)), 0.0)
    b = torch.where(valid, torch.sqrt(((l - 1) ** 2 - m * m) / torch.where(valid, 4 * (l - 1) ** 2 - 1, 1.0)), 0.0)
    return a, b


def spherical_harmonics(coords, degrees):
    """(B, L^2) real orthonormal spherical harmonics Y_lm, l < L, m = -l..l, at θ = 90° - lat,
    φ = lon: Y_l0 = N_l0 P_l^0(cos θ), Y_l±m = √2 N_lm P_l^m(cos θ) (cos | sin)(m φ), N_lm = sqrt((2l+1)/(4π)
    (l-m)!/(l+m)!), Condon-Shortley phase; stable recurrence in l (float64)."""
    lon, lat = _radians(coords)
    x, sin_theta = torch.sin(lat), torch.cos(lat)                 # cos and sin of the colatitude, (B, 1)
    a, b = (t.to(coords.device) for t in legendre_tables(degrees))
    # diagonal N_mm P_m^m = (-1)^m sqrt((2m+1)!! / (4 pi (2m)!!)) sin^m theta, built up one m at a time
    diagonal = [torch.full_like(x, math.sqrt(1.0 / (4.0 * math.pi)))]
    for m in range(1, degrees):
        diagonal.append(-math.sqrt((2 * m + 1) / (2 * m)) * sin_theta * diagonal[-1])
    diagonal = torch.cat(diagonal, 1)                              # (B, L)
    azimuth = lon * torch.arange(1, degrees, dtype=torch.float64, device=coords.device)   # (B, L-1)
    cos_m, sin_m = torch.cos(azimuth) * math.sqrt(2.0), torch.sin(azimuth) * math.sqrt(2.0)
    features = []
    previous, current = torch.zeros_like(diagonal), torch.zeros_like(diagonal)
    for l in range(degrees):
        following = a[l] * (x * current - b[l] * previous)          # columns m <= l - 2
        if l >= 1:
            following[:, l - 1] = math.sqrt(2 * l + 1) * x[:, 0] * diagonal[:, l - 1]
        following[:, l] = diagonal[:, l]
        previous, current = current, following
        legendre = current[:, 1:l + 1]                              # m = 1..l
        features += [(legendre * sin_m[:, :l]).flip(1), current[:, 0:1], legendre * cos_m[:, :l]]
    return torch.cat(features, 1).float()
