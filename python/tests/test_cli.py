"""The Python results are the CLI's, bit for bit, and the errors carry the CLI's messages."""

import numpy as np
import pytest

import cosmograd
from conftest import cli_error, rng, tiny


def read_power_txt(path):
    rows = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    return [list(col) for col in zip(*rows)]


@pytest.mark.parametrize("precision", ["f32", "f64"])
def test_simulate_equals_the_cli_bit_for_bit(cli, tmp_path, precision):
    cfg = cosmograd.Config(tiny(precision, steps=4, time={"snapshots": [0.5]}))
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    cli("simulate", "--config", tmp_path / "c.toml", "--out", tmp_path / "out", "--quiet")
    out = cosmograd.simulate(tmp_path / "c.toml")
    assert (tmp_path / "out" / "config.toml").read_text() == cfg.to_toml()
    for tag, got in (("", out), ("_a0.5000", out["snapshots"][0])):
        for name in ("positions", "velocities", "density"):
            want = np.load(tmp_path / "out" / f"{name}{tag}.npy")
            assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
            assert got[name].tobytes() == want.tobytes(), f"{name}{tag} differs from the CLI's"
        k, p, n_modes, p_lin = read_power_txt(tmp_path / "out" / f"power{tag}.txt")
        assert ["%.8e" % x for x in got["k"]] == k
        assert ["%.8e" % x for x in got["power"]] == p
        assert [str(x) for x in got["n_modes"]] == n_modes
        assert ["%.8e" % x for x in got["power_linear"]] == p_lin


@pytest.mark.parametrize("precision, noise_dtype", [("f32", np.float32), ("f64", np.float64), ("f32", np.float64)])
def test_gradient_equals_the_cli_bit_for_bit(cli, tmp_path, precision, noise_dtype):
    cfg = cosmograd.Config(tiny(precision, steps=3))
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    w = rng(1).standard_normal((8, 8, 8)).astype(noise_dtype)
    target = (0.1 * rng(2).standard_normal((16, 16, 16))).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    np.save(tmp_path / "t.npy", target)
    for loss in ("field-mse", "power"):
        out = tmp_path / f"out-{loss}"
        cli("gradient", "--config", tmp_path / "c.toml", "--white-noise", tmp_path / "w.npy",
            "--target", tmp_path / "t.npy", "--loss", loss, "--out", out, "--quiet")
        value, g = cosmograd.value_and_grad(cfg, w, loss=loss, target=target)
        assert float((out / "loss.txt").read_text()) == value
        want = np.load(out / "grad_white_noise.npy")
        assert g["white_noise"].dtype == want.dtype
        assert g["white_noise"].tobytes() == want.tobytes()
        lines = [line.split(" = ") for line in (out / "grad_cosmology.toml").read_text().splitlines()
                 if " = " in line and not line.startswith("#")]
        assert {k: float(v) for k, v in lines} == g["cosmology"]
        assert float((out / "reversal_error.txt").read_text()) == g["reversal_error"]


def test_seeded_gradient_equals_the_cli(cli, tmp_path):
    cfg = cosmograd.Config(tiny("f32", steps=3))
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    cli("gradient", "--config", tmp_path / "c.toml", "--out", tmp_path / "out", "--quiet", "--checkpoint-every", "2")
    value, g = cosmograd.value_and_grad(tmp_path / "c.toml", checkpoint_every=2)
    assert float((tmp_path / "out" / "loss.txt").read_text()) == value
    assert g["white_noise"].tobytes() == np.load(tmp_path / "out" / "grad_white_noise.npy").tobytes()


def test_errors_carry_the_cli_messages(cli, tmp_path):
    cfg = tiny()
    (tmp_path / "c.toml").write_text(cosmograd.Config(cfg).to_toml())
    # A white noise of the wrong shape: the CLI names the file, Python the argument.
    np.save(tmp_path / "w.npy", np.zeros((4, 4, 4)))
    msg = cli_error(cli("simulate", "--config", tmp_path / "c.toml", "--white-noise", tmp_path / "w.npy",
                        "--out", tmp_path / "o1", check=False))
    with pytest.raises(ValueError) as e:
        cosmograd.simulate(cfg, np.zeros((4, 4, 4)))
    assert str(e.value) == msg.replace(f"white noise file {tmp_path / 'w.npy'}", "white noise")
    # A white noise with NaN.
    w = np.zeros((8, 8, 8))
    w[1, 2, 3] = np.nan
    np.save(tmp_path / "nan.npy", w)
    msg = cli_error(cli("simulate", "--config", tmp_path / "c.toml", "--white-noise", tmp_path / "nan.npy",
                        "--out", tmp_path / "o2", check=False))
    with pytest.raises(ValueError) as e:
        cosmograd.simulate(cfg, w)
    assert str(e.value) == msg.replace(f"white noise file {tmp_path / 'nan.npy'}", "white noise")
    # Configuration files: the same message, word for word.
    for name, text in (("bad.toml", "[box]\nsizee = 3\n"), ("range.toml", "[box]\nmesh = 100\n"),
                       ("type.toml", "[time]\nsteps = \"ten\"\n")):
        (tmp_path / name).write_text(text)
        msg = cli_error(cli("simulate", "--config", tmp_path / name, "--out", tmp_path / "o3", check=False))
        with pytest.raises(ValueError) as e:
            cosmograd.simulate(tmp_path / name)
        assert str(e.value) == msg
    msg = cli_error(cli("simulate", "--config", tmp_path / "missing.toml", "--out", tmp_path / "o4", check=False))
    with pytest.raises(OSError) as e:
        cosmograd.Config(tmp_path / "missing.toml")
    assert str(e.value) == msg
    # The same values from a dict: the same message, without the line of a file.
    with pytest.raises(ValueError) as e:
        cosmograd.Config({"box": {"mesh": 100}})
    assert str(e.value) == cli_error(cli("simulate", "--config", tmp_path / "range.toml", "--out", tmp_path / "o5",
                                         check=False))
