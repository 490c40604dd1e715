"""cosmograd: differentiable cosmological particle-mesh N-body simulations.

The Rust library of the cosmograd repository, NumPy in and NumPy out. Units: lengths in Mpc/h
(comoving), wavenumbers in h/Mpc, power in (Mpc/h)^3, velocities in km/s (peculiar), density as
the contrast delta (dimensionless) on the force mesh. Arrays are float32 or float64 in any memory
order; results are C-order arrays in the run's precision (``run.precision``).

- :class:`Config`: a run configuration from a dict shaped like the TOML sections, a TOML file
  path or TOML text (every key and its unit: docs/config.md).
- :func:`simulate`: the forward run (positions, velocities, density, P(k), snapshots), the same
  numbers as ``cosmograd simulate``.
- :func:`power_spectrum`, :func:`cross_correlation`: binned P(k) and r(k) of meshes.
- :func:`value_and_grad`: a loss and its gradients with respect to the white noise and the
  cosmological parameters (``cosmograd gradient``).
- :func:`reconstruct`: the maximum-a-posteriori white noise of an observed density mesh
  (``cosmograd reconstruct``), with its diagnostics.
- :func:`vjp`: cotangents of the final density / positions / velocities pulled back to the white
  noise and the cosmological parameters (one forward and one reverse-time pass).
- :mod:`cosmograd.jax`, :mod:`cosmograd.torch`: differentiable ``density``, ``positions`` and
  ``velocities`` for JAX (``jax.custom_vjp``) and PyTorch (``autograd.Function``); imported on
  demand, so neither framework is needed otherwise.

Every function releases the GIL while it computes and raises ``ValueError`` (values, shapes,
dtypes, configuration keys) or ``OSError`` (files) with the one-line message of the CLI.
"""

from ._native import (
    Config,
    __version__,
    cross_correlation,
    power_spectrum,
    reconstruct,
    simulate,
    value_and_grad,
    vjp,
)

#: The cosmological parameters that can be set and differentiated, with their units:
#: the keys of the ``[cosmology]`` section and of ``grads["cosmology"]``.
COSMOLOGY_PARAMETERS = {
    "omega_m": "total matter density today (dimensionless); varied at fixed omega_k",
    "omega_b": "baryon density today (dimensionless)",
    "h": "H0 / (100 km/s/Mpc)",
    "n_s": "scalar spectral index",
    "sigma8": "rms linear overdensity in 8 Mpc/h top-hat spheres at a = 1",
    "a_s": "primordial curvature power at k = 0.05 /Mpc (instead of sigma8)",
    "w0": "dark-energy equation of state today",
    "wa": "dark-energy equation of state slope, w(a) = w0 + wa (1 - a)",
    "omega_k": "curvature density today",
    "t_cmb": "CMB temperature today in K (Eisenstein-Hu transfer only)",
}

__all__ = [
    "COSMOLOGY_PARAMETERS",
    "Config",
    "__version__",
    "cross_correlation",
    "power_spectrum",
    "reconstruct",
    "simulate",
    "value_and_grad",
    "vjp",
]
