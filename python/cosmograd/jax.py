"""JAX wrappers: the simulation's outputs as differentiable JAX functions.

``density(white_noise, cosmology, config)`` (and :func:`positions`, :func:`velocities`,
:func:`outputs`) runs cosmograd on the host through :func:`jax.pure_callback` and differentiates
through :func:`jax.custom_vjp`, whose backward rule is cosmograd's reverse-time adjoint
(:func:`cosmograd.vjp`: one forward and one reverse-time pass, memory independent of the number
of steps). They work under :func:`jax.jit`, :func:`jax.grad`, :func:`jax.vjp` and
:func:`jax.vmap` (a batch runs as a loop of single runs on the host).

- ``white_noise``: the Gaussian white noise on the particle grid, shape (n, n, n), float32 or
  float64 (the outputs and its gradient come back in its dtype; the simulation itself runs in
  ``run.precision`` of the configuration: use ``"f64"``, and ``jax.config.update(
  "jax_enable_x64", True)``, for gradients exact to round-off).
- ``cosmology``: a dict of JAX scalars keyed by the names of :data:`cosmograd.COSMOLOGY_PARAMETERS`
  (e.g. ``{"omega_m": 0.31, "sigma8": 0.81}``); they replace the configuration's values and are
  differentiable; parameters left out keep the configuration's values. None or ``{}``: none.
- ``config``: anything :class:`cosmograd.Config` accepts (a Config, a dict of TOML sections, a
  TOML file path, None for the default run). Static: not traced.

Outputs (units as :func:`cosmograd.simulate`): ``density``, the CIC density contrast on the force
mesh (m, m, m); ``positions`` (n^3, 3) in Mpc/h in [0, L) (differentiated as if unwrapped: the
periodic wrap is locally the identity); ``velocities`` (n^3, 3) peculiar, in km/s.

Bad input raises ``ValueError`` when the function is traced (shapes, dtypes, parameter names);
an error found on the host while it runs (e.g. an invalid parameter value) reaches the caller
through JAX's runtime error, with cosmograd's one-line message.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

import cosmograd as _cg
from cosmograd._request import NAMES as _NAMES
from cosmograd._request import check_request as _check_request
from cosmograd._request import check_white_noise_shape as _check_white_noise_shape

__all__ = ["density", "positions", "velocities", "outputs"]



def density(white_noise, cosmology=None, config=None):
    """CIC density contrast delta on the force mesh at ``time.a_stop``, shape (m, m, m),
    dimensionless, in the dtype of ``white_noise``; differentiable in ``white_noise`` and in each
    parameter of ``cosmology`` (see the module's documentation)."""
    return outputs(white_noise, cosmology, config, ("density",))["density"]


def positions(white_noise, cosmology=None, config=None):
    """Particle positions at ``time.a_stop``, shape (n^3, 3), comoving Mpc/h in [0, L),
    Lagrangian (C) order; differentiable as :func:`density`."""
    return outputs(white_noise, cosmology, config, ("positions",))["positions"]


def velocities(white_noise, cosmology=None, config=None):
    """Peculiar velocities at ``time.a_stop``, shape (n^3, 3), km/s; differentiable as
    :func:`density`."""
    return outputs(white_noise, cosmology, config, ("velocities",))["velocities"]


def outputs(white_noise, cosmology=None, config=None, names=_NAMES):
    """Several outputs of one run: a dict with the requested ``names`` among "density",
    "positions", "velocities". One host run forward and one adjoint run backward for all of them
    (cheaper than calling :func:`density` and :func:`positions` apart)."""
    cfg, names, cosmology = _check_request(config, cosmology, names)
    w = jnp.asarray(white_noise)
    _check_white_noise_shape(w.shape, cfg.particles)
    if w.dtype not in (jnp.float32, jnp.float64):
        raise ValueError(f"white noise has dtype {w.dtype}, expected float32 or float64")
    cosmology = {k: jnp.asarray(v) for k, v in cosmology.items()}
    for k, v in cosmology.items():
        if v.shape != () or not jnp.issubdtype(v.dtype, jnp.floating):
            raise ValueError(f"cosmology[{k!r}] must be a float scalar, got shape {v.shape} and dtype {v.dtype}")
    return dict(zip(names, _function(cfg.to_toml(), names)(w, cosmology)))


@functools.lru_cache(maxsize=32)
def _function(toml_text, names):
    """The custom_vjp function of one configuration and output set (cached: built once)."""
    cfg = _cg.Config.from_toml(toml_text)
    n, m = cfg.particles, cfg.mesh
    shapes = {"density": (m, m, m), "positions": (n**3, 3), "velocities": (n**3, 3)}

    def at(cosmo):
        if not cosmo:
            return cfg
        return cfg.replace({"cosmology": {k: float(v) for k, v in cosmo.items()}})

    def host_forward(w, cosmo):
        w = np.asarray(w)
        out = _cg.simulate(at(cosmo), w)
        return tuple(np.asarray(out[k], dtype=w.dtype) for k in names)

    def host_backward(w, cosmo, cots):
        w = np.asarray(w)
        r = _cg.vjp(at(cosmo), w, **{k: np.asarray(c) for k, c in zip(names, cots)})
        gw = np.asarray(r["white_noise"], dtype=w.dtype)
        gc = {k: np.asarray(r["cosmology"][k], dtype=np.asarray(v).dtype) for k, v in cosmo.items()}
        return gw, gc

    def forward(w, cosmo):
        types = tuple(jax.ShapeDtypeStruct(shapes[k], w.dtype) for k in names)
        return jax.pure_callback(host_forward, types, w, cosmo, vmap_method="sequential")

    @jax.custom_vjp
    def f(w, cosmo):
        return forward(w, cosmo)

    def f_fwd(w, cosmo):
        return forward(w, cosmo), (w, cosmo)

    def f_bwd(res, cots):
        w, cosmo = res
        types = (
            jax.ShapeDtypeStruct(w.shape, w.dtype),
            {k: jax.ShapeDtypeStruct((), v.dtype) for k, v in cosmo.items()},
        )
        return jax.pure_callback(host_backward, types, w, cosmo, tuple(cots), vmap_method="sequential")

    f.defvjp(f_fwd, f_bwd)
    return f
