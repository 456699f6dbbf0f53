"""The spherical position encodings: dimensions, hand-computed values, periodicity, spherical harmonics against
scipy, and the faults of the peer codebases that must not come back."""
import math

import numpy as np
import pytest
import torch
from scipy.special import sph_harm_y

from csp import position_encodings as pe
from csp import sphere_encodings as se
from csp.arguments import parse_flags
from csp.encoders import build_spatial_encoder

ORIGIN, NORTH, SOUTH, EAST, DATELINE = [0.0, 0.0], [0.0, 90.0], [0.0, -90.0], [90.0, 0.0], [180.0, 0.0]
MULTI_SCALE = {  # encoding: features per scale (None: 4F^2 + 4F)
    se.sphere_c: 3, se.sphere_c_plus: 6, se.sphere_m: 5, se.sphere_m_plus: 8, se.dfs: None}


def _points(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def _random_points(count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 2, generator=generator) * torch.tensor([360.0, 180.0]) - torch.tensor([180.0, 90.0])


@pytest.mark.parametrize("encoding, per_scale", MULTI_SCALE.items())
@pytest.mark.parametrize("frequency_num", [1, 3, 8])
def test_multi_scale_dimensions(encoding, per_scale, frequency_num):
    freqs = pe.frequency_list("geometric", max(frequency_num, 2), 1.0, 1e-3)[:frequency_num]
    out = encoding(_random_points(5), freqs)
    width = 4 * frequency_num ** 2 + 4 * frequency_num if per_scale is None else per_scale * frequency_num
    assert out.shape == (5, width) and out.dtype == torch.float32


def test_fixed_width_encodings():
    assert se.xyz(_random_points(4)).shape == (4, 3)
    assert se.nerf(_random_points(4), pe.frequency_list("nerf", 5, None, None)).shape == (4, 30)
    assert se.spherical_harmonics(_random_points(4), 7).shape == (4, 49)


def test_hand_computed_values():
    one, two = torch.tensor([1.0], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    torch.testing.assert_close(se.xyz(_points(ORIGIN, NORTH, EAST, DATELINE)),
                               torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0], [-1, 0, 0]]), atol=1e-7, rtol=0)
    torch.testing.assert_close(se.sphere_c(_points(ORIGIN, NORTH, DATELINE), one),
                               torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, -1, 0]]), atol=1e-7, rtol=0)
    torch.testing.assert_close(se.sphere_c_plus(_points(EAST), one), torch.tensor([[0.0, 1, 1, 0, 0, 1]]),
                               atol=1e-7, rtol=0)
    # sphereM at f = 2, (90, 0): sin 2lat, cos 2lat cos lon, cos lat cos 2lon, cos 2lat sin lon, cos lat sin 2lon
    torch.testing.assert_close(se.sphere_m(_points(EAST), two), torch.tensor([[0.0, 0, -1, 1, 0]]), atol=1e-7,
                               rtol=0)
    torch.testing.assert_close(se.sphere_m_plus(_points(EAST), two), torch.tensor([[0.0, 1, 0, -1, 0, -1, 1, 0]]),
                               atol=1e-7, rtol=0)
    # dfs at f = 1, (90, 0): [sin lon, cos lon] x [sin lat, cos lat] = [1, 0] x [0, 1], then lat, lon sin/cos
    torch.testing.assert_close(se.dfs(_points(EAST), one), torch.tensor([[0.0, 1, 0, 0, 0, 1, 1, 0]]), atol=1e-7,
                               rtol=0)
    # NeRF at f = pi: origin p = (1, 0, 0), north pole p = (0, 0, 1), antimeridian p = (-1, 0, 0)
    torch.testing.assert_close(se.nerf(_points(ORIGIN, NORTH, DATELINE), torch.tensor([math.pi], dtype=torch.float64)),
                               torch.tensor([[0.0, 0, 0, -1, 1, 1], [0, 0, 0, 1, 1, -1], [0, 0, 0, -1, 1, 1]]),
                               atol=1e-6, rtol=0)
    # north pole at f = 1: sin lat = 1, cos lat = 0, lon = 0
    torch.testing.assert_close(se.sphere_m(_points(NORTH), one), torch.tensor([[1.0, 0, 0, 0, 0]]), atol=1e-7, rtol=0)
    torch.testing.assert_close(se.sphere_m_plus(_points(NORTH), one), torch.tensor([[1.0, 0, 0, 1, 0, 0, 0, 0]]),
                               atol=1e-7, rtol=0)
    torch.testing.assert_close(se.dfs(_points(NORTH), one), torch.tensor([[0.0, 0, 1, 0, 1, 0, 0, 1]]), atol=1e-7,
                               rtol=0)


def test_spherical_harmonics_hand_values():
    """Origin: Y_00 = 1/(2 sqrt(pi)), Y_1-1 = Y_10 = 0, Y_11 = sqrt(2) N_11 P_1^1(0) = -sqrt(3/(4 pi)).
    Poles: only m = 0 is non-zero, Y_l0 = (+-1)^l sqrt((2l+1)/(4 pi))."""
    origin = se.spherical_harmonics(_points(ORIGIN), 2)[0]
    expected = torch.tensor([0.5 / math.sqrt(math.pi), 0.0, 0.0, -math.sqrt(3 / (4 * math.pi))])
    torch.testing.assert_close(origin, expected, atol=1e-7, rtol=0)
    degrees = 6
    poles = se.spherical_harmonics(_points(NORTH, SOUTH, [123.0, 90.0]), degrees)
    zonal = [l * l + l for l in range(degrees)]                   # index of m = 0 in each degree
    expected = torch.tensor([math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(degrees)])
    torch.testing.assert_close(poles[0, zonal], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(poles[1, zonal], expected * torch.tensor([(-1.0) ** l for l in range(degrees)]),
                               atol=1e-6, rtol=0)
    others = [i for i in range(degrees ** 2) if i not in zonal]
    assert poles[:, others].abs().max() < 1e-6
    torch.testing.assert_close(poles[2], poles[0], atol=1e-6, rtol=0)    # the pole is one point, whatever lon


def _scipy_real_harmonics(coords, degrees):
    theta = np.radians(90.0 - coords[:, 1].double().numpy())
    phi = np.radians(coords[:, 0].double().numpy())
    columns = []
    for l in range(degrees):
        for m in range(-l, l + 1):
            complex_y = sph_harm_y(l, abs(m), theta, phi)
            if m == 0:
                columns.append(complex_y.real)
            else:
                columns.append(math.sqrt(2.0) * (complex_y.real if m > 0 else complex_y.imag))
    return np.stack(columns, 1)


def test_spherical_harmonics_match_scipy_up_to_degree_40():
    coords = torch.cat((_random_points(300), _points(NORTH, SOUTH, DATELINE, [-180.0, 0.0], ORIGIN, [17.0, 89.99])))
    ours = se.spherical_harmonics(coords, 40)
    assert ours.shape == (len(coords), 1600) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), _scipy_real_harmonics(coords, 40), rtol=0, atol=1e-5)


def test_spherical_harmonics_stay_finite_and_normalised_at_high_degree():
    """SatCLIP's analytic tables become NaN above L ~ 30; the recurrence does not. Orthonormality shows as the mean
    of Y_lm^2 over uniform points on the sphere being 1 / (4 pi)."""
    generator = torch.Generator().manual_seed(1)
    count = 5000
    lon = torch.rand(count, generator=generator) * 360 - 180
    lat = torch.rad2deg(torch.asin(torch.rand(count, generator=generator) * 2 - 1))
    out = se.spherical_harmonics(torch.stack((lon, lat), 1), 50)
    assert torch.isfinite(out).all()
    mean_square = out.double().square().mean(0) * 4 * math.pi
    assert (mean_square - 1).abs().median() < 0.05


def test_peer_fault_satclip_factors():
    """SatCLIP's analytic tables multiply m = 0 by pi and carry an extra (-1)^m: here Y_00 is 1/(2 sqrt pi) and
    every m > 0 column has scipy's (Condon-Shortley) sign, e.g. Y_11 < 0 and Y_22 > 0 at the origin."""
    values = se.spherical_harmonics(_points(ORIGIN), 3)[0]
    assert values[0].item() == pytest.approx(1 / (2 * math.sqrt(math.pi)), abs=1e-7)
    assert values[3].item() < 0 and values[8].item() > 0


@pytest.mark.parametrize("encoding", [
    se.xyz,
    lambda c: se.nerf(c, pe.frequency_list("nerf", 6, None, None)),
    lambda c: se.spherical_harmonics(c, 12),
    *(lambda c, fn=fn: fn(c, torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64)) for fn in MULTI_SCALE),
    pe.wrap,
])
def test_periodic_encodings_are_continuous_across_the_antimeridian(encoding):
    """The encodings of the point on the sphere (and the sphere family at whole-number frequencies, the only ones
    at which they are periodic in longitude) agree at lon = +-180 and change little across it."""
    lat = torch.linspace(-80, 80, 9)
    east = encoding(torch.stack((torch.full_like(lat, 180.0), lat), 1))
    west = encoding(torch.stack((torch.full_like(lat, -180.0), lat), 1))
    torch.testing.assert_close(east, west, atol=1e-5, rtol=0)
    near_east = encoding(torch.stack((torch.full_like(lat, 179.999), lat), 1))
    near_west = encoding(torch.stack((torch.full_like(lat, -179.999), lat), 1))
    assert (near_east - near_west).abs().max() < 1e-2


def test_tile_index_cells_and_clamping():
    extent = (-180.0, 180.0, -90.0, 90.0)
    index = se.tile_index(_points([-180.0, -90.0], [179.9, 89.9], ORIGIN, [180.0, 90.0], [-500.0, 0.0]), extent,
                          90.0, 4, 2)
    assert index.tolist() == [0, 7, 6, 7, 4]


def _encoder(*flags):
    return build_spatial_encoder(parse_flags(["--num_filts", "8", "--hidden_dim", "8", *flags])).eval()


def test_peer_fault_tile_ffn_gets_its_cell_size():
    """TorchSpatial's tile_ffn never received its cell size, so every point fell in one cell."""
    encoder = _encoder("--spa_enc_type", "tile_ffn", "--min_radius", "45")
    assert encoder.embedding.num_embeddings == 8 * 4
    codes = encoder.encode(_points(ORIGIN, [100.0, 50.0], [-100.0, -50.0]))
    assert not torch.equal(codes[0], codes[1]) and not torch.equal(codes[1], codes[2])
    with pytest.raises(ValueError, match="tile_ffn.*cells.*larger --min_radius"):
        _encoder("--spa_enc_type", "tile_ffn", "--min_radius", "0.01")


@pytest.mark.parametrize("frequency_num", [4, 9])
def test_peer_fault_nerf_follows_frequency_num(frequency_num):
    """TorchSpatial's NeRF always used 16 frequencies, whatever --frequency_num said."""
    encoder = _encoder("--spa_enc_type", "nerf", "--frequency_num", str(frequency_num))
    assert encoder.ffn.input_dim == 6 * frequency_num
    assert encoder.encode(_random_points(3)).shape == (3, 6 * frequency_num)


@pytest.mark.parametrize("name", ["spheregridmixscale", "dft"])
def test_peer_fault_schedule_spans_min_to_max_radius(name):
    """TorchSpatial's sphereM+ and dfs used 1/max_radius^(s/(F-1)): with --max_radius 1 every frequency was 1."""
    encoder = _encoder("--spa_enc_type", name, "--frequency_num", "4", "--max_radius", "1", "--min_radius", "0.001")
    np.testing.assert_allclose(encoder.freqs.numpy(), [1000.0, 100.0, 10.0, 1.0], rtol=1e-12)
    assert torch.equal(se.torchspatial_frequencies(4, 1.0), torch.ones(4, dtype=torch.float64))


def test_peer_fault_spherical_harmonics_are_there():
    """TorchSpatial lists spherical_harmonics but its module is missing; here it builds and encodes."""
    encoder = _encoder("--spa_enc_type", "spherical_harmonics", "--legendre_poly_num", "5")
    assert encoder.ffn.input_dim == 25 and encoder(_random_points(3)).shape == (3, 8)
