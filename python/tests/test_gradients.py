"""value_and_grad and vjp against float64 central finite differences (tiny box, f64)."""

import numpy as np
import pytest

import cosmograd
from conftest import rng, tiny

EPS = 1e-6
TOL = 1e-6


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b))


def loss_at(cfg, w, **kw):
    return cosmograd.value_and_grad(cfg, w, **kw)[0]


@pytest.mark.parametrize("lpt", [1, 2])
def test_white_noise_gradient_matches_finite_differences(lpt):
    cfg = cosmograd.Config(tiny("f64", steps=4, time={"lpt": lpt}))
    w = rng(10).standard_normal((8, 8, 8))
    target = 0.3 * rng(11).standard_normal((16, 16, 16))
    loss, g = cosmograd.value_and_grad(cfg, w, target=target)
    assert g["reversal_error"] < 1e-10
    for seed in (12, 13):
        d = rng(seed).standard_normal((8, 8, 8))
        fd = (loss_at(cfg, w + EPS * d, target=target) - loss_at(cfg, w - EPS * d, target=target)) / (2 * EPS)
        assert rel(fd, np.vdot(g["white_noise"], d)) < TOL, (fd, np.vdot(g["white_noise"], d))


# Every parameter, for a sigma8-normalised LCDM run and an A_s-normalised w0waCDM run with
# curvature (as pm-adjoint's own test; Omega_k and wa at 0 take an absolute step).
NORMALISED = {
    "sigma8": {},
    "a_s": {"sigma8": None, "a_s": 2.1e-9, "w0": -0.9, "wa": 0.1, "omega_k": 0.01},
}


@pytest.mark.parametrize("norm", sorted(NORMALISED))
@pytest.mark.parametrize("param", ["omega_m", "omega_b", "h", "n_s", "amplitude", "w0", "wa", "omega_k", "t_cmb"])
def test_cosmology_gradient_matches_finite_differences(param, norm):
    cfg = cosmograd.Config(tiny("f64", steps=3)).replace({"cosmology": NORMALISED[norm]})
    param = norm if param == "amplitude" else param
    w = rng(20).standard_normal((8, 8, 8))
    _, g = cosmograd.value_and_grad(cfg, w)
    assert ("sigma8" in g["cosmology"]) == (norm == "sigma8") and ("a_s" in g["cosmology"]) == (norm == "a_s")
    v = cfg.to_dict()["cosmology"][param]
    h = 1e-6 * abs(v) or 1e-6

    def at(x):
        return loss_at(cfg.replace({"cosmology": {param: x}}), w)

    fd = (at(v + h) - at(v - h)) / (2 * h)
    assert rel(fd, g["cosmology"][param]) < TOL, (fd, g["cosmology"][param])


def test_power_loss_gradient_matches_finite_differences():
    cfg = cosmograd.Config(tiny("f64", steps=3))
    target = cosmograd.simulate(cfg.replace({"run": {"seed": 99}}))["density"]
    w = rng(30).standard_normal((8, 8, 8))
    _, g = cosmograd.value_and_grad(cfg, w, loss="power", target=target)
    d = rng(31).standard_normal((8, 8, 8))
    kw = dict(loss="power", target=target)
    fd = (loss_at(cfg, w + EPS * d, **kw) - loss_at(cfg, w - EPS * d, **kw)) / (2 * EPS)
    assert rel(fd, np.vdot(g["white_noise"], d)) < TOL


def test_checkpoints_give_the_same_gradient():
    cfg = cosmograd.Config(tiny("f64", steps=6))
    l0, g0 = cosmograd.value_and_grad(cfg)
    l1, g1 = cosmograd.value_and_grad(cfg, checkpoint_every=2)
    assert l0 == l1
    np.testing.assert_allclose(g1["white_noise"], g0["white_noise"], rtol=0, atol=1e-10 * np.abs(g0["white_noise"]).max())


def test_force_correction_parameters_gradient():
    cfg = cosmograd.Config(tiny("f64", steps=3))
    theta = np.array([0.1, -0.2, 0.05, 0.0, 0.1, 0.0, -0.1, 0.2])
    fc = lambda t: {"n_k": 4, "n_a": 2, "k_max": 1.36, "params": t}  # noqa: E731
    w = rng(40).standard_normal((8, 8, 8))
    loss, g = cosmograd.value_and_grad(cfg, w, force_correction=fc(theta))
    assert g["force_params"].shape == (8,)
    assert loss != cosmograd.value_and_grad(cfg, w)[0]
    scale = np.abs(g["force_params"]).max()
    for j in (0, 5):
        e = np.zeros(8)
        e[j] = EPS
        fd = (loss_at(cfg, w, force_correction=fc(theta + e)) - loss_at(cfg, w, force_correction=fc(theta - e))) / (2 * EPS)
        assert abs(fd - g["force_params"][j]) < TOL * scale
    # The forward run sees the correction too.
    assert not np.array_equal(
        cosmograd.simulate(cfg, w, force_correction=fc(theta))["density"], cosmograd.simulate(cfg, w)["density"]
    )
    with pytest.raises(ValueError, match="force_correction.n_k"):
        cosmograd.value_and_grad(cfg, w, force_correction={"n_k": 1, "n_a": 1, "k_max": 1.0, "params": [0.0]})


def outputs_dot(cfg, w, cots):
    out = cosmograd.simulate(cfg, w)
    return sum(float(np.vdot(c, out[k])) for k, c in cots.items())


@pytest.mark.parametrize("which", [("density",), ("positions",), ("velocities",), ("density", "positions", "velocities")])
def test_vjp_matches_finite_differences(which):
    cfg = cosmograd.Config(tiny("f64", steps=3))
    w = rng(50).standard_normal((8, 8, 8))
    shapes = {"density": (16, 16, 16), "positions": (512, 3), "velocities": (512, 3)}
    cots = {k: rng(51 + i).standard_normal(shapes[k]) for i, k in enumerate(which)}
    r = cosmograd.vjp(cfg, w, **cots)
    np.testing.assert_allclose(r["value"], outputs_dot(cfg, w, cots), rtol=1e-12)
    d = rng(60).standard_normal((8, 8, 8))
    fd = (outputs_dot(cfg, w + EPS * d, cots) - outputs_dot(cfg, w - EPS * d, cots)) / (2 * EPS)
    assert rel(fd, np.vdot(r["white_noise"], d)) < TOL, (fd, np.vdot(r["white_noise"], d))
    for param in ("omega_m", "sigma8"):
        v = cfg.to_dict()["cosmology"][param]
        h = 1e-6 * v
        fd = (
            outputs_dot(cfg.replace({"cosmology": {param: v + h}}), w, cots)
            - outputs_dot(cfg.replace({"cosmology": {param: v - h}}), w, cots)
        ) / (2 * h)
        assert rel(fd, r["cosmology"][param]) < TOL, (param, fd, r["cosmology"][param])


def test_vjp_of_the_field_mse_is_its_gradient():
    # L = mean(delta^2): dL/d delta = 2 delta / M; the VJP of that cotangent is value_and_grad's.
    cfg = cosmograd.Config(tiny("f64", steps=3))
    w = rng(70).standard_normal((8, 8, 8))
    loss, g = cosmograd.value_and_grad(cfg, w)
    delta = cosmograd.simulate(cfg, w)["density"]
    r = cosmograd.vjp(cfg, w, density=2 * delta / delta.size)
    np.testing.assert_allclose(r["white_noise"], g["white_noise"], rtol=1e-10, atol=1e-14)
    for k, v in g["cosmology"].items():
        np.testing.assert_allclose(r["cosmology"][k], v, rtol=1e-10, atol=1e-14)
