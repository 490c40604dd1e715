"""cosmograd.reconstruct: the CLI's reconstruction (mock and observed data), bit for bit."""

import numpy as np
import pytest

import cosmograd
from conftest import rng, tiny


def loss_rows(path):
    return [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]


def rust_e(x, digits):
    """Rust's `{:.Ne}`: like "%.Ne" with the exponent unpadded and unsigned when positive."""
    mantissa, exponent = ("%.*e" % (digits, x)).split("e")
    return f"{mantissa}e{int(exponent)}"


def check_common(r, out):
    for name in ("white_noise", "linear_density", "final_density"):
        want = np.load(out / f"{name}.npy")
        assert r[name].dtype == want.dtype and r[name].shape == want.shape
        assert r[name].tobytes() == want.tobytes(), f"{name} differs from the CLI's"
    rows = loss_rows(out / "loss.txt")
    assert len(rows) == len(r["loss"]["loss"])
    for row, st, sm, it, lo, c2, pr in zip(rows, *(r["loss"][k] for k in
                                                     ("stage", "smoothing", "iteration", "loss", "chi2_half", "prior"))):
        assert row[:6] == [str(st), "%.4f" % sm, str(it), rust_e(lo, 10), rust_e(c2, 10), rust_e(pr, 10)]
    header = (out / "loss.txt").read_text().splitlines()[1]
    assert float(header.split(": ")[1].split(" ")[0]) == r["reversal_error"]


@pytest.mark.parametrize("precision", ["f32", "f64"])
def test_mock_reconstruction_equals_the_cli(cli, tmp_path, precision):
    cfg = cosmograd.Config(tiny(precision, steps=3))
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    out = tmp_path / "out"
    cli("reconstruct", "--config", tmp_path / "c.toml", "--iterations", 5, "--out", out, "--quiet")
    r = cosmograd.reconstruct(None, cfg, iterations=5)
    check_common(r, out)
    for name in ("true_white_noise", "observed"):
        assert r[name].tobytes() == np.load(out / f"{name}.npy").tobytes()
    rk = [line.split() for line in (out / "r_k.txt").read_text().splitlines() if not line.startswith("#")]
    for row, i in zip(rk, range(len(rk))):
        rk_i = r["r_k"]
        assert row == [rust_e(rk_i["k"][i], 8), rust_e(rk_i["r"][i], 8), rust_e(rk_i["T"][i], 8),
                       str(rk_i["n_modes"][i]), rust_e(rk_i["r_wiener"][i], 8), rust_e(rk_i["T_wiener"][i], 8)]
    # The reconstruction correlates with the truth on large scales and fits the data better.
    assert r["r_k"]["r"][0] > 0.5
    assert r["loss"]["chi2_half"][-1] < r["loss"]["chi2_half"][0]


def test_observed_reconstruction_equals_the_cli(cli, tmp_path):
    cfg = cosmograd.Config(tiny("f32", steps=3))
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    observed = cosmograd.simulate(cfg, rng(3).standard_normal((8, 8, 8)))["density"]
    observed = observed + np.float32(0.1) * rng(4).standard_normal(observed.shape).astype(np.float32)
    np.save(tmp_path / "obs.npy", observed)
    out = tmp_path / "out"
    cli("reconstruct", "--config", tmp_path / "c.toml", "--observed", tmp_path / "obs.npy", "--noise", 0.1,
        "--schedule", "4:2,0:3", "--preconditioner", "linear", "--out", out, "--quiet")
    r = cosmograd.reconstruct(observed, cfg, noise=0.1, schedule=[(4.0, 2), (0.0, 3)], preconditioner="linear")
    check_common(r, out)
    assert "r_k" not in r and "true_white_noise" not in r
    # Fortran order and float64 data read the same (float64 -> float32 rounds as the CLI reads it).
    r2 = cosmograd.reconstruct(np.asfortranarray(observed.astype(np.float64)), cfg, noise=0.1,
                               schedule=[(4.0, 2), (0.0, 3)], preconditioner="linear")
    assert r2["white_noise"].tobytes() == r["white_noise"].tobytes()


def test_cosmology_fit_equals_the_cli(cli, tmp_path):
    cfg = cosmograd.Config(tiny("f64", steps=3))
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    out = tmp_path / "out"
    cli("reconstruct", "--config", tmp_path / "c.toml", "--iterations", 4, "--fit-cosmology", "--out", out, "--quiet")
    r = cosmograd.reconstruct(None, cfg, iterations=4, fit_cosmology=True)
    check_common(r, out)
    rows = {line.split()[0]: line.split()[1:] for line in (out / "cosmology.txt").read_text().splitlines()
            if not line.startswith("#")}
    for i, name in enumerate(("omega_m", "sigma8")):
        c = r["cosmology"]
        assert rows[name][:3] == ["%.6f" % c["start"][i], "%.6f" % c["estimate"][i], "%.6f" % c["sigma"][i]]


def test_bad_reconstruction_input_raises_with_the_message():
    cfg = tiny()
    with pytest.raises(ValueError, match=r"invalid `noise` = None: expected the noise of the observed data"):
        cosmograd.reconstruct(np.zeros((16, 16, 16)), cfg)
    with pytest.raises(ValueError, match=r"observed density has shape \(4, 4\), expected a cube"):
        cosmograd.reconstruct(np.zeros((4, 4)), cfg, noise=0.1)
    with pytest.raises(ValueError, match=r"invalid `noise` = 0: expected a standard deviation"):
        cosmograd.reconstruct(None, cfg, noise=0.0)
    with pytest.raises(ValueError, match=r"invalid `noise power k\[1\]` = 0.1"):
        cosmograd.reconstruct(None, cfg, noise_power=([0.2, 0.1], [1.0, 1.0]))
    with pytest.raises(ValueError, match=r"invalid `schedule`"):
        cosmograd.reconstruct(None, cfg, schedule=[(-1.0, 3)])
    with pytest.raises(ValueError, match=r"invalid `preconditioner` = exact"):
        cosmograd.reconstruct(None, cfg, preconditioner="exact")
    with pytest.raises(ValueError, match=r"invalid `fit_start`"):
        cosmograd.reconstruct(None, cfg, fit_start=(0.3, 0.8))
    with pytest.raises(ValueError, match=r"invalid `iterations` = 0"):
        cosmograd.reconstruct(None, cfg, iterations=0)
