"""TorchSpatial (seai-lab/TorchSpatial) checkpoints read as this project's models: the papers' encoder
names, `rbf_kernel_size` and `position_encoder` renamed; `params['encoding_source']` = 'torchspatial' rebuilds its
encodings.
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
    return (params.get("spa_enc_type") in TORCHSPATIAL_NAMES
            or ("rbf_kernel_size" in params and "rbf_kernal_size" not in params)
            or any(SUBMODULE in key for key in state_dict))


def from_torchspatial(params, state_dict):
    """(params, state_dict) of a TorchSpatial checkpoint in this project's names; others unchanged."""
    if not is_torchspatial(params, state_dict):
        return params, state_dict
    params = dict(params)
    params["spa_enc_type"] = TORCHSPATIAL_NAMES.get(params["spa_enc_type"], params["spa_enc_type"])
    if "rbf_kernal_size" not in params:
        params["rbf_kernal_size"] = params.get("rbf_kernel_size", 1.0)
    params["encoding_source"] = encoders.TORCHSPATIAL
    state_dict = {key.replace(SUBMODULE, "."): value for key, value in state_dict.items()}
    return params, state_dict
