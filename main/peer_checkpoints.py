"""Checkpoints of TorchSpatial (seai-lab/TorchSpatial, `pre_trained_models/`) read as this project's models.

TorchSpatial saves the same {'epoch', 'state_dict', 'optimizer', 'params'} dict as CSP, but
* `params['spa_enc_type']` holds the paper's names (`Space2Vec-grid`, `Sphere2Vec-sphereC+`, `NeRF`, ...);
* the kernel size is `params['rbf_kernel_size']` (CSP and Sphere2Vec spell it `rbf_kernal_size`);
* position encoders with weights sit in a `position_encoder` sub-module (`spa_enc.position_encoder.dirvec`,
  `spa_enc.position_encoder.embedding.weight`), where this project (as CSP) keeps them on the encoder itself;
* some encodings were computed differently from Sphere2Vec's code: NeRF always with 16 frequencies, sphereM+ and
  dfs with the schedule 1/max_radius^(s/(F-1)), tile_ffn with one cell. `params['encoding_source']` =
  'torchspatial' makes the encoders rebuild those (encoders.from_torchspatial), so that the stored weights see
  the encodings they were trained with. rff's extent is `params['map_range']`, which TorchSpatial defaulted to
  the US box (-162, -59, 20, 56) and stored; it is used as stored.
Numpy scalars in its params (rbf anchor ids) load through `checkpoints.NUMPY_SCALAR_GLOBALS`, an allow-list.
"""
from . import encoders

TORCHSPATIAL_NAMES = {
    "Space2Vec-grid": "gridcell",
    "Space2Vec-theory": "theory",
    "Sphere2Vec-sphereC": "sphere",
    "Sphere2Vec-sphereC+": "spheregrid",
    "Sphere2Vec-sphereM": "spheremixscale",
    "Sphere2Vec-sphereM+": "spheregridmixscale",
    "Sphere2Vec-dfs": "dft",
    "NeRF": "nerf",
}
SUBMODULE = ".position_encoder."


def is_torchspatial(params, state_dict):
    """True for a checkpoint written by TorchSpatial: a paper name in spa_enc_type, its `rbf_kernel_size`
    spelling, or a `position_encoder` sub-module in the weights."""
    return (params.get("spa_enc_type") in TORCHSPATIAL_NAMES
            or ("rbf_kernel_size" in params and "rbf_kernal_size" not in params)
            or any(SUBMODULE in key for key in state_dict))


def from_torchspatial(params, state_dict):
    """(params, state_dict) of a TorchSpatial checkpoint in this project's names; others are returned unchanged.

    The params get this project's `spa_enc_type`, `rbf_kernal_size` and `encoding_source` = 'torchspatial';
    the `position_encoder.` level is dropped from the weights' names.
    """
    if not is_torchspatial(params, state_dict):
        return params, state_dict
    params = dict(params)
    params["spa_enc_type"] = TORCHSPATIAL_NAMES.get(params["spa_enc_type"], params["spa_enc_type"])
    if "rbf_kernal_size" not in params:
        params["rbf_kernal_size"] = params.get("rbf_kernel_size", 1.0)
    params["encoding_source"] = encoders.TORCHSPATIAL
    state_dict = {key.replace(SUBMODULE, "."): value for key, value in state_dict.items()}
    return params, state_dict
