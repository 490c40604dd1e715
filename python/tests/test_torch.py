"""cosmograd.torch: torch.autograd.gradcheck in float64 on a tiny box (opt-in: needs PyTorch,
which scripts/python-tests.sh installs with COSMOGRAD_TORCH=1)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cosmograd  # noqa: E402
import cosmograd.torch as ct  # noqa: E402
from conftest import rng, tiny  # noqa: E402

CFG = cosmograd.Config(tiny("f64", steps=3))


def test_gradcheck_white_noise_and_cosmology():
    w = torch.tensor(rng(1).standard_normal((8, 8, 8)), dtype=torch.float64, requires_grad=True)
    om = torch.tensor(0.3111, dtype=torch.float64, requires_grad=True)
    s8 = torch.tensor(0.8102, dtype=torch.float64, requires_grad=True)

    def f(w, om, s8):
        return ct.density(w, {"omega_m": om, "sigma8": s8}, CFG)

    # fast_mode: random projections of the Jacobian instead of all 16^3 x 8^3 entries.
    assert torch.autograd.gradcheck(f, (w, om, s8), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)

    def g(w, om):
        out = ct.outputs(w, {"omega_m": om}, CFG, ("positions", "velocities"))
        return out["positions"], out["velocities"]

    assert torch.autograd.gradcheck(g, (w, om), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


def test_forward_equals_simulate_and_backward_equals_vjp():
    wn = rng(2).standard_normal((8, 8, 8))
    w = torch.tensor(wn, requires_grad=True)
    d = ct.density(w, None, CFG)
    assert d.dtype == torch.float64
    assert d.detach().numpy().tobytes() == cosmograd.simulate(CFG, wn)["density"].tobytes()
    (d**2).sum().backward()
    r = cosmograd.vjp(CFG, wn, density=2 * d.detach().numpy())
    assert w.grad.numpy().tobytes() == r["white_noise"].tobytes()


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match=r"white noise has shape \(4, 4, 4\)"):
        ct.density(torch.zeros(4, 4, 4), None, CFG)
    with pytest.raises(ValueError, match="unknown cosmological parameter"):
        ct.density(torch.zeros(8, 8, 8), {"omega_x": 0.3}, CFG)
    with pytest.raises(ValueError, match=r"invalid `cosmology.omega_m` = -0.3"):
        ct.density(torch.zeros(8, 8, 8, dtype=torch.float64), {"omega_m": -0.3}, CFG)
    assert np.isfinite(ct.velocities(torch.zeros(8, 8, 8), None, CFG).numpy()).all()
