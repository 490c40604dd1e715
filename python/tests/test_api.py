"""The NumPy API: configurations, outputs, dtypes and memory orders, errors, threads."""

import pickle
import threading
import time

import numpy as np
import pytest

import cosmograd
from conftest import rng, tiny


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def test_config_from_dict_path_and_text_agree(tmp_path, cfg64):
    path = tmp_path / "c.toml"
    path.write_text(cfg64.to_toml())
    assert cosmograd.Config(path) == cfg64
    assert cosmograd.Config(str(path)) == cfg64
    assert cosmograd.Config.from_toml(cfg64.to_toml()) == cfg64
    assert cosmograd.Config(cfg64.to_dict()) == cfg64
    assert cosmograd.Config(cfg64) == cfg64
    assert pickle.loads(pickle.dumps(cfg64)) == cfg64
    assert (cfg64.particles, cfg64.mesh, cfg64.box_size, cfg64.precision, cfg64.steps) == (8, 16, 64.0, "f64", 3)
    assert cosmograd.Config() == cosmograd.Config(None) == cosmograd.Config({})
    assert cosmograd.Config().particles == 64


def test_config_replace_merges_and_removes_keys(cfg64):
    c = cfg64.replace({"cosmology": {"omega_m": 0.3, "sigma8": None, "a_s": 2.1e-9}})
    d = c.to_dict()["cosmology"]
    assert d["omega_m"] == 0.3 and d["a_s"] == 2.1e-9 and "sigma8" not in d
    assert c.to_dict()["box"] == cfg64.to_dict()["box"]
    # NumPy scalars are accepted as values.
    assert cfg64.replace({"cosmology": {"omega_m": np.float64(0.3)}}).to_dict()["cosmology"]["omega_m"] == 0.3
    assert cfg64.replace({"time": {"steps": np.int64(4)}}).steps == 4


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"box": {"sizee": 1.0}}, "config dict: unknown field `sizee`, expected one of `size`, `particles`, `mesh`"),
        ({"box": {"particles": "a"}}, "config dict: box.particles: invalid type: string \"a\", expected usize"),
        ({"box": {"mesh": 12}}, "invalid `box.mesh` = 12"),
        ({"cosmology": {"omega_m": -0.1}}, "invalid `cosmology.omega_m` = -0.1"),
        ({"time": {"a_start": 2.0}}, "invalid `time.a_start` = 2"),
    ],
)
def test_bad_config_raises_value_error_with_the_message(changes, message):
    with pytest.raises(ValueError) as e:
        cosmograd.Config(tiny()).replace(changes)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError):
        cosmograd.simulate(cosmograd.Config(tiny()).to_dict() | changes)


def test_config_file_errors(tmp_path):
    with pytest.raises(OSError, match="config file not found"):
        cosmograd.Config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[box]\nsizee = 3\n")
    with pytest.raises(ValueError, match=r"bad.toml: line 2: unknown field `sizee`"):
        cosmograd.Config(bad)
    with pytest.raises(TypeError):
        cosmograd.Config(3)


# ---------------------------------------------------------------------------------------------
# simulate and the spectra
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision, dtype", [("f32", np.float32), ("f64", np.float64)])
def test_simulate_outputs(precision, dtype):
    cfg = cosmograd.Config(tiny(precision, time={"snapshots": [0.5, 1.0]}))
    out = cosmograd.simulate(cfg)
    assert out["a"] == 1.0
    assert out["positions"].shape == (512, 3) and out["positions"].dtype == dtype
    assert out["velocities"].shape == (512, 3) and out["velocities"].dtype == dtype
    assert out["density"].shape == (16, 16, 16) and out["density"].dtype == dtype
    assert out["positions"].flags.c_contiguous and out["density"].flags.c_contiguous
    assert np.all((out["positions"] >= 0) & (out["positions"] < 64.0))
    assert abs(float(out["density"].mean())) < 1e-5
    assert out["k"].shape == out["power"].shape == out["n_modes"].shape == out["power_linear"].shape == (8,)
    assert np.all(out["power"] > 0) and out["n_modes"].dtype == np.uint64
    (snap,) = out["snapshots"]
    assert snap["a"] == 0.5 and snap["density"].shape == (16, 16, 16)
    # Structure grows: the late field has more power on every scale.
    assert np.all(out["power"][:4] > snap["power"][:4])


def test_simulate_is_deterministic_and_follows_the_seed(cfg32):
    a, b = cosmograd.simulate(cfg32), cosmograd.simulate(cfg32)
    assert a["density"].tobytes() == b["density"].tobytes()
    c = cosmograd.simulate(cfg32.replace({"run": {"seed": 8}}))
    assert not np.array_equal(a["density"], c["density"])


def test_thread_count_does_not_change_the_bits(cfg64):
    one = cosmograd.simulate(cfg64.replace({"run": {"threads": 1}}))
    many = cosmograd.simulate(cfg64.replace({"run": {"threads": 2}}))
    for k in ("positions", "velocities", "density", "power"):
        assert one[k].tobytes() == many[k].tobytes()


def test_white_noise_orders_and_dtypes_give_the_same_run(cfg64):
    w = rng(1).standard_normal((8, 8, 8))
    ref = cosmograd.simulate(cfg64, w)["density"]
    for variant in (
        np.asfortranarray(w),
        w[::-1, ::-1, ::-1].copy()[::-1, ::-1, ::-1],  # negative strides
        np.ascontiguousarray(np.swapaxes(np.swapaxes(w, 0, 2).copy(), 0, 2)),
        w.tolist(),
    ):
        assert cosmograd.simulate(cfg64, variant)["density"].tobytes() == ref.tobytes()
    # float32 noise in an f64 run: widened exactly.
    w32 = w.astype(np.float32)
    assert np.array_equal(
        cosmograd.simulate(cfg64, w32)["density"], cosmograd.simulate(cfg64, w32.astype(np.float64))["density"]
    )
    # The white noise of the seed is the default.
    seeded = cosmograd.simulate(cfg64)["density"]
    assert not np.array_equal(seeded, ref)


def test_gradient_dtype_follows_the_white_noise(cfg32, cfg64):
    w = rng(2).standard_normal((8, 8, 8))
    for cfg in (cfg32, cfg64):
        for dtype in (np.float32, np.float64):
            _, g = cosmograd.value_and_grad(cfg, w.astype(dtype))
            assert g["white_noise"].dtype == dtype and g["white_noise"].shape == (8, 8, 8)
            assert g["white_noise"].flags.c_contiguous
        _, g = cosmograd.value_and_grad(cfg)
        assert g["white_noise"].dtype == (np.float64 if cfg.precision == "f64" else np.float32)


def test_power_spectrum_matches_simulate_and_accepts_orders(cfg32):
    out = cosmograd.simulate(cfg32)
    ps = cosmograd.power_spectrum(out["density"], 64.0)
    assert ps["power"].tobytes() == out["power"].tobytes()
    assert ps["k"].tobytes() == out["k"].tobytes()
    assert np.array_equal(ps["n_modes"], out["n_modes"])
    f = cosmograd.power_spectrum(np.asfortranarray(out["density"]), 64.0)
    assert f["power"].tobytes() == ps["power"].tobytes()
    raw = cosmograd.power_spectrum(out["density"], 64.0, deconvolve=False)
    assert np.all(raw["power"] < ps["power"])
    # A white field has a flat spectrum of V/N = (64/16)^3 (Mpc/h)^3.
    white = rng(3).standard_normal((16, 16, 16))
    p = cosmograd.power_spectrum(white, 64.0, deconvolve=False)["power"]
    assert abs(np.average(p, weights=ps["n_modes"]) / 64.0 - 1) < 0.1


def test_cross_correlation():
    a = rng(4).standard_normal((16, 16, 16))
    b = rng(5).standard_normal((16, 16, 16))
    same = cosmograd.cross_correlation(a, a, 64.0)
    np.testing.assert_allclose(same["r"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(same["p_aa"], same["p_ab"], rtol=1e-12)
    ps = cosmograd.power_spectrum(a, 64.0)
    np.testing.assert_allclose(same["p_aa"], ps["power"], rtol=1e-12)
    indep = cosmograd.cross_correlation(a, b, 64.0)
    assert np.all(np.abs(indep["r"]) < 0.6)
    mixed = cosmograd.cross_correlation(a, 0.5 * a + 0.5 * b, 64.0)
    assert np.all(mixed["r"] > indep["r"])


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_bad_arrays_raise_value_error_with_the_message(cfg64):
    with pytest.raises(ValueError, match=r"^white noise has shape \(4, 4, 4\), expected shape \(8, 8, 8\) = \(box.particles,\)\*3$"):
        cosmograd.simulate(cfg64, np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match=r"^white noise has dtype int64, expected float32 or float64$"):
        cosmograd.simulate(cfg64, np.zeros((8, 8, 8), dtype=np.int64))
    w = np.zeros((8, 8, 8))
    w[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"non-finite value in white noise: value NaN at index \[1, 2, 3\] \(flat 83\)"):
        cosmograd.value_and_grad(cfg64, w)
    cfg32 = cfg64.replace({"run": {"precision": "f32"}})
    with pytest.raises(ValueError, match="does not fit in f32"):
        cosmograd.simulate(cfg32, np.full((8, 8, 8), 1e300))
    with pytest.raises(ValueError, match=r"target density has shape \(8, 8, 8\), expected shape \(16, 16, 16\)"):
        cosmograd.value_and_grad(cfg64, target=np.zeros((8, 8, 8)))
    with pytest.raises(ValueError, match="unknown loss `mse`: expected field-mse or power"):
        cosmograd.value_and_grad(cfg64, loss="mse")
    with pytest.raises(ValueError, match=r"invalid `target` = None"):
        cosmograd.value_and_grad(cfg64, loss="power")
    with pytest.raises(ValueError, match=r"invalid `checkpoint_every` = 0"):
        cosmograd.value_and_grad(cfg64, checkpoint_every=0)
    with pytest.raises(ValueError, match="at least one cotangent"):
        cosmograd.vjp(cfg64)
    with pytest.raises(ValueError, match=r"positions cotangent has shape \(8, 3\)"):
        cosmograd.vjp(cfg64, positions=np.zeros((8, 3)))
    with pytest.raises(ValueError, match=r"delta has shape \(4, 4\), expected a cube"):
        cosmograd.power_spectrum(np.zeros((4, 4)), 64.0)
    with pytest.raises(ValueError, match=r"invalid `box_size` = -1"):
        cosmograd.power_spectrum(np.zeros((4, 4, 4)), -1.0)
    with pytest.raises(ValueError, match=r"b has shape \(8, 8, 8\), expected shape \(4, 4, 4\)"):
        cosmograd.cross_correlation(np.zeros((4, 4, 4)), np.zeros((8, 8, 8)), 1.0)
    with pytest.raises(ValueError, match="run.fixed_amplitude"):
        cosmograd.value_and_grad(cfg64.replace({"run": {"fixed_amplitude": True}}))


def test_files_named_in_the_config_raise_os_error(cfg64, tmp_path):
    with pytest.raises(OSError, match="missing.npy"):
        cosmograd.simulate(cfg64.replace({"run": {"white_noise": str(tmp_path / "missing.npy")}}))


def test_a_rust_panic_becomes_a_runtime_error():
    with pytest.raises(RuntimeError, match="internal error .*deliberate panic for the test"):
        cosmograd._native._panic_for_tests()
    # The module still works afterwards.
    assert cosmograd.simulate(tiny())["a"] == 1.0


# ---------------------------------------------------------------------------------------------
# The GIL is released
# ---------------------------------------------------------------------------------------------


def test_two_threads_compute_at_once_with_the_gil_released():
    cfg = cosmograd.Config(tiny("f32", steps=20, box={"particles": 32, "mesh": 64, "size": 128.0}))
    reference = cosmograd.simulate(cfg)["density"]
    results, spans = {}, {}

    def work(name):
        t0 = time.perf_counter()
        results[name] = cosmograd.simulate(cfg)["density"]
        spans[name] = (t0, time.perf_counter())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    ticks = []
    for t in threads:
        t.start()
    # While the calls run in Rust this thread keeps running Python, which it could not do if they
    # held the GIL (it would wait for the GIL after each sleep until the call returned).
    while any(t.is_alive() for t in threads):
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    for t in threads:
        t.join()
    (a0, a1), (b0, b1) = spans[0], spans[1]
    assert max(a0, b0) < min(a1, b1), "the two calls did not overlap"
    inside = [t for t in ticks if max(a0, b0) < t < min(a1, b1)]
    assert len(inside) >= 5, f"the main thread ran {len(inside)} times while both calls ran ({min(a1, b1) - max(a0, b0):.3f} s)"
    # Concurrent calls give the bits of a call alone.
    for r in results.values():
        assert r.tobytes() == reference.tobytes()
