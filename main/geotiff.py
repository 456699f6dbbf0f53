"""A tiled GeoTIFF in EPSG:4326 (WGS 84 longitude / latitude degrees), written with tifffile, tile by tile.

Georeferencing as GeoTIFF 1.0 tags, which GDAL (QGIS, rasterio) and other GIS tools read: ModelPixelScale
(resolution, resolution, 0), ModelTiepoint (pixel (0, 0) = the north-west corner), GeoKeys GTModelType =
geographic, GTRasterType = PixelIsArea, GeographicType = EPSG 4326. Band names go into GDAL's metadata tag.
"""
from xml.sax.saxutils import escape

import numpy as np
import tifffile

from .paths import atomic_write

MODEL_PIXEL_SCALE, MODEL_TIEPOINT, GEO_KEY_DIRECTORY, GDAL_METADATA = 33550, 33922, 34735, 42112
GEOGRAPHIC, PIXEL_IS_AREA, WGS84 = 2, 1, 4326
TILE_BYTES = 2 ** 26         # at most 64 MiB per tile
MAX_TILE = 256
BIGTIFF_BYTES = 2 ** 32 - 2 ** 28


def tile_edge(bytes_per_pixel):
    """Tile edge in pixels: MAX_TILE, or less (a multiple of 16, at least 16) so that a tile stays within
    TILE_BYTES."""
    edge = int((TILE_BYTES / bytes_per_pixel) ** 0.5) // 16 * 16
    return max(16, min(MAX_TILE, edge))


def geo_tags(west, north, resolution):
    """tifffile `extratags` that place pixel (0, 0)'s north-west corner at (west, north), cells of `resolution`
    degrees, in EPSG:4326."""
    keys = [(1024, 0, 1, GEOGRAPHIC), (1025, 0, 1, PIXEL_IS_AREA), (2048, 0, 1, WGS84)]
    directory = [1, 1, 0, len(keys)] + [value for key in keys for value in key]
    return [(MODEL_PIXEL_SCALE, "d", 3, (resolution, resolution, 0.0), True),
            (MODEL_TIEPOINT, "d", 6, (0.0, 0.0, 0.0, west, north, 0.0), True),
            (GEO_KEY_DIRECTORY, "H", len(directory), directory, True)]


def band_names_tag(names):
    items = "".join(f'<Item name="DESCRIPTION" sample="{i}" role="description">{escape(name)}</Item>'
                    for i, name in enumerate(names))
    return (GDAL_METADATA, "s", 0, f"<GDALMetadata>{items}</GDALMetadata>", True)


def write_tiled(path, tiles, shape, dtype, edge, north_west, resolution, band_names, rgb=False):
    """Write (height, width, bands) `shape` of `dtype` from `tiles`, an iterator of (edge, edge, bands) arrays in
    row-major tile order (edge tiles zero-padded), to `path` (atomically; BigTIFF when large; zlib-compressed)."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    tags = geo_tags(north_west[0], north_west[1], resolution) + [band_names_tag(band_names)]

    single = shape[2] == 1      # one band: stored as a plain 2-d image
    if single:
        shape, tiles = shape[:2], (tile[:, :, 0] for tile in tiles)

    def write(handle):
        tifffile.imwrite(handle, tiles, shape=shape, dtype=dtype, tile=(edge, edge), bigtiff=size > BIGTIFF_BYTES,
                         photometric="rgb" if rgb else "minisblack", planarconfig=None if single else "contig",
                         compression="zlib", extratags=tags, metadata=None)

    atomic_write(path, write)
