"""cosmograd.jax: jax.grad against float64 central differences, jit, vmap, vjp."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import cosmograd  # noqa: E402
import cosmograd.jax as cj  # noqa: E402
from conftest import rng, tiny  # noqa: E402

CFG = cosmograd.Config(tiny("f64", steps=3))
EPS = 1e-6


def loss(w, cosmo):
    """Sigma delta^2 of the final density."""
    return jnp.sum(cj.density(w, cosmo, CFG) ** 2)


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b))


def test_density_equals_simulate():
    w = rng(1).standard_normal((8, 8, 8))
    d = cj.density(jnp.asarray(w), {"omega_m": 0.3}, CFG)
    want = cosmograd.simulate(CFG.replace({"cosmology": {"omega_m": 0.3}}), w)["density"]
    assert d.dtype == jnp.float64 and np.asarray(d).tobytes() == want.tobytes()
    p = cj.positions(w, None, CFG)
    assert np.asarray(p).tobytes() == cosmograd.simulate(CFG, w)["positions"].tobytes()


PARAMS = ("omega_m", "omega_b", "h", "n_s", "sigma8", "w0", "wa", "omega_k", "t_cmb")


def test_grad_matches_central_differences_in_the_white_noise_and_cosmology():
    # The bar: jax.grad of sum(delta^2) matches f64 central differences to 1e-6, in the
    # white noise (two random directions) and in every cosmological parameter.
    w = jnp.asarray(rng(2).standard_normal((8, 8, 8)))
    at = CFG.to_dict()["cosmology"]
    cosmo = {k: jnp.float64(at[k]) for k in PARAMS}
    gw, gc = jax.grad(loss, argnums=(0, 1))(w, cosmo)
    assert gw.shape == (8, 8, 8) and gw.dtype == jnp.float64
    for seed in (3, 4):
        d = jnp.asarray(rng(seed).standard_normal((8, 8, 8)))
        fd = (loss(w + EPS * d, cosmo) - loss(w - EPS * d, cosmo)) / (2 * EPS)
        assert rel(float(fd), float(jnp.vdot(gw, d))) < 1e-6
    for k in PARAMS:
        h = 1e-6 * abs(float(cosmo[k])) or 1e-6
        up = dict(cosmo, **{k: cosmo[k] + h})
        down = dict(cosmo, **{k: cosmo[k] - h})
        fd = (loss(w, up) - loss(w, down)) / (2 * h)
        assert rel(float(fd), float(gc[k])) < 1e-6, (k, float(fd), float(gc[k]))


def test_jit_grad_and_vjp_agree_with_the_numpy_api():
    w = jnp.asarray(rng(5).standard_normal((8, 8, 8)))
    cosmo = {"sigma8": 0.8}
    g_jit = jax.jit(jax.grad(loss))(w, cosmo)
    g = jax.grad(loss)(w, cosmo)
    assert np.array_equal(np.asarray(g_jit), np.asarray(g))
    delta = np.asarray(cj.density(w, cosmo, CFG))
    r = cosmograd.vjp(CFG.replace({"cosmology": cosmo}), np.asarray(w), density=2 * delta)
    assert np.asarray(g).tobytes() == r["white_noise"].tobytes()
    # Positions and velocities together: one run, cotangents of both.
    cot_p = jnp.asarray(rng(6).standard_normal((512, 3)))
    cot_v = jnp.asarray(rng(7).standard_normal((512, 3)))

    def f(w, c):
        out = cj.outputs(w, c, CFG, ("positions", "velocities"))
        return jnp.vdot(cot_p, out["positions"]) + jnp.vdot(cot_v, out["velocities"])

    gw, gc = jax.grad(f, argnums=(0, 1))(w, {"omega_m": 0.3})
    r = cosmograd.vjp(CFG.replace({"cosmology": {"omega_m": 0.3}}), np.asarray(w),
                      positions=np.asarray(cot_p), velocities=np.asarray(cot_v))
    np.testing.assert_allclose(np.asarray(gw), r["white_noise"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(float(gc["omega_m"]), r["cosmology"]["omega_m"], rtol=1e-12)


def test_vmap_runs_each_member_and_its_gradient():
    ws = jnp.asarray(rng(8).standard_normal((3, 8, 8, 8)))
    s8 = jnp.asarray([0.7, 0.8, 0.9])
    batched = jax.vmap(lambda w, s: cj.density(w, {"sigma8": s}, CFG))(ws, s8)
    assert batched.shape == (3, 16, 16, 16)
    for i in range(3):
        single = cj.density(ws[i], {"sigma8": s8[i]}, CFG)
        assert np.asarray(batched[i]).tobytes() == np.asarray(single).tobytes()
    grads = jax.vmap(jax.grad(loss, argnums=(0, 1)))(ws, {"sigma8": s8})
    for i in range(3):
        gw, gc = jax.grad(loss, argnums=(0, 1))(ws[i], {"sigma8": s8[i]})
        assert np.array_equal(np.asarray(grads[0][i]), np.asarray(gw))
        assert float(grads[1]["sigma8"][i]) == float(gc["sigma8"])


def test_float32_white_noise_gives_float32_outputs_and_gradients():
    w = jnp.asarray(rng(9).standard_normal((8, 8, 8)), dtype=jnp.float32)
    d = cj.density(w, None, CFG)
    assert d.dtype == jnp.float32
    g = jax.grad(lambda w: jnp.sum(cj.density(w, None, CFG) ** 2))(w)
    assert g.dtype == jnp.float32


def test_bad_input_raises_value_error_when_traced():
    with pytest.raises(ValueError, match=r"white noise has shape \(4, 4, 4\), expected shape \(8, 8, 8\)"):
        cj.density(jnp.zeros((4, 4, 4)), None, CFG)
    with pytest.raises(ValueError, match="unknown cosmological parameter `omega_x`"):
        cj.density(jnp.zeros((8, 8, 8)), {"omega_x": 0.3}, CFG)
    with pytest.raises(ValueError, match="dtype int32"):
        cj.density(jnp.zeros((8, 8, 8), dtype=jnp.int32), None, CFG)
    with pytest.raises(ValueError, match="unknown output"):
        cj.outputs(jnp.zeros((8, 8, 8)), None, CFG, ("power",))
    # A bad value is found on the host: JAX's runtime error carries cosmograd's message.
    with pytest.raises(Exception, match=r"invalid `cosmology.omega_m` = -0.3"):
        jax.block_until_ready(cj.density(jnp.zeros((8, 8, 8)), {"omega_m": -0.3}, CFG))
