"""PyTorch wrappers: the simulation's outputs as differentiable PyTorch functions.

``density(white_noise, cosmology, config)`` (and :func:`positions`, :func:`velocities`,
:func:`outputs`) is a :class:`torch.autograd.Function` whose forward runs :func:`cosmograd.simulate`
and whose backward is cosmograd's reverse-time adjoint (:func:`cosmograd.vjp`: one forward and
one reverse-time pass, memory independent of the number of steps); the same semantics as
:mod:`cosmograd.jax`.

- ``white_noise``: a CPU tensor (n, n, n), float32 or float64 (outputs and gradients come back in
  its dtype; the run itself is in ``run.precision``: use ``"f64"`` for gradients exact to
  round-off, e.g. for :func:`torch.autograd.gradcheck`).
- ``cosmology``: a dict of scalar tensors (or floats) keyed by the names of
  :data:`cosmograd.COSMOLOGY_PARAMETERS`, replacing the configuration's values; differentiable.
- ``config``: anything :class:`cosmograd.Config` accepts.

Outputs (units as :func:`cosmograd.simulate`): ``density`` (m, m, m) CIC density contrast;
``positions`` (n^3, 3) Mpc/h in [0, L) (differentiated as if unwrapped); ``velocities`` (n^3, 3)
km/s. Bad input raises ``ValueError`` with cosmograd's one-line message.
"""

import numpy as np
import torch

import cosmograd as _cg
from cosmograd._request import NAMES as _NAMES
from cosmograd._request import check_request as _check_request
from cosmograd._request import check_white_noise_shape as _check_white_noise_shape

__all__ = ["density", "positions", "velocities", "outputs"]



def density(white_noise, cosmology=None, config=None):
    """CIC density contrast delta on the force mesh at ``time.a_stop``, (m, m, m), dimensionless;
    differentiable in ``white_noise`` and each parameter of ``cosmology``."""
    return outputs(white_noise, cosmology, config, ("density",))["density"]


def positions(white_noise, cosmology=None, config=None):
    """Particle positions at ``time.a_stop``, (n^3, 3), comoving Mpc/h in [0, L)."""
    return outputs(white_noise, cosmology, config, ("positions",))["positions"]


def velocities(white_noise, cosmology=None, config=None):
    """Peculiar velocities at ``time.a_stop``, (n^3, 3), km/s."""
    return outputs(white_noise, cosmology, config, ("velocities",))["velocities"]


def outputs(white_noise, cosmology=None, config=None, names=_NAMES):
    """Several outputs of one run: a dict with the requested ``names`` among "density",
    "positions", "velocities" (one forward run, one adjoint run for all of them)."""
    cfg, names, cosmology = _check_request(config, cosmology, names)
    w = torch.as_tensor(white_noise)
    _check_white_noise_shape(w.shape, cfg.particles)
    if w.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"white noise has dtype {w.dtype}, expected float32 or float64")
    if w.device.type != "cpu":
        raise ValueError(f"white noise is on {w.device}, expected a CPU tensor")
    keys = tuple(cosmology)
    values = []
    for k in keys:
        v = cosmology[k]
        v = v if isinstance(v, torch.Tensor) else torch.tensor(float(v), dtype=torch.float64)
        if v.shape != () or not v.is_floating_point():
            raise ValueError(f"cosmology[{k!r}] must be a float scalar, got shape {tuple(v.shape)} and dtype {v.dtype}")
        values.append(v)
    outs = _Outputs.apply(cfg, names, keys, w, *values)
    return dict(zip(names, outs))


def _at(cfg, keys, values):
    if not keys:
        return cfg
    return cfg.replace({"cosmology": {k: float(v) for k, v in zip(keys, values)}})


class _Outputs(torch.autograd.Function):
    """Forward: cosmograd.simulate; backward: cosmograd.vjp of the output cotangents."""

    @staticmethod
    def forward(ctx, cfg, names, keys, w, *values):
        wn = w.detach().numpy()
        out = _cg.simulate(_at(cfg, keys, values), wn)
        ctx.save_for_backward(w, *values)
        ctx.cfg, ctx.names, ctx.keys = cfg, names, keys
        return tuple(torch.from_numpy(np.asarray(out[k], dtype=wn.dtype)) for k in names)

    @staticmethod
    def backward(ctx, *cots):
        w, *values = ctx.saved_tensors
        wn = w.detach().numpy()
        given = {k: g.detach().cpu().numpy() for k, g in zip(ctx.names, cots) if g is not None}
        if not given:
            return (None, None, None, None, *([None] * len(values)))
        r = _cg.vjp(_at(ctx.cfg, ctx.keys, values), wn, **given)
        gw = torch.from_numpy(np.asarray(r["white_noise"], dtype=wn.dtype))
        gv = [torch.tensor(r["cosmology"][k], dtype=v.dtype) for k, v in zip(ctx.keys, values)]
        return (None, None, None, gw, *gv)
