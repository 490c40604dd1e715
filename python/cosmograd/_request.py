"""What the JAX and PyTorch front ends share: checking a request for simulation outputs before
any array is built (the configuration, the output names, the cosmological parameters, the shape
of the white noise)."""

import cosmograd as _cg

#: The differentiable outputs of a run, in the order the front ends return them.
NAMES = ("density", "positions", "velocities")


def check_request(config, cosmology, names):
    """Returns ``(Config, names as a tuple, cosmology as a dict)``; raises ``ValueError`` naming an
    unknown output or cosmological parameter."""
    cfg = config if isinstance(config, _cg.Config) else _cg.Config(config)
    names = tuple(names)
    for name in names:
        if name not in NAMES:
            raise ValueError(f"unknown output `{name}`: expected density, positions or velocities")
    cosmology = dict(cosmology or {})
    for key in cosmology:
        if key not in _cg.COSMOLOGY_PARAMETERS:
            raise ValueError(
                f"unknown cosmological parameter `{key}`: expected one of {', '.join(_cg.COSMOLOGY_PARAMETERS)}"
            )
    return cfg, names, cosmology


def check_white_noise_shape(shape, n):
    """Raises ``ValueError`` unless ``shape`` is ``(n, n, n)``, n = box.particles."""
    if tuple(shape) != (n, n, n):
        raise ValueError(f"white noise has shape {tuple(shape)}, expected shape {(n, n, n)} = (box.particles,)*3")
