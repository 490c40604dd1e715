"""cosmograd's outputs read by the tools cosmologists use.

One small run of the built CLI (``cosmograd simulate``, 32^3 particles, 64^3 mesh, 128 Mpc/h,
a snapshot at a = 0.5, ``[output] formats = ["npy", "gadget"]``), then:

* h5py: every ``Header`` attribute of ``snapshot.hdf5`` (value and type) and every dataset;
* Pylians ``readgadget`` (``header``, ``read_block`` for "POS ", "VEL ", "ID  "): the same particles
  as ``positions.npy`` / ``velocities.npy`` row for row, positions in the file's kpc/h and
  velocities converted by readgadget to peculiar km/s;
* Pylians ``Pk_library.Pk`` on ``density.npy`` (MAS='CIC', the window that ``power.txt`` divides
  out with ``deconvolve = true``): the same estimator. The binnings differ, so each is compared
  with one numpy evaluation of the per-mode power binned its own way:
  - power.txt: shells j - 1/2 <= |k|/k_F < j + 1/2, j = 1 .. m/2, modes of the full spectrum
    (k and -k both counted), mean |k| per bin;
  - Pk_library: shells j <= |k|/k_F < j + 1 (int() of |k|/k_F), j = 1 .. int(sqrt(3) m/2)
    (corner modes beyond Nyquist included), each mode counted once (half spectrum with
    Pylians' choice of the kz = 0 and kz = m/2 planes), mean |k| per bin.
  Per mode both are |delta_k|^2 V/N^2 / W(k)^2 with W = prod_d sinc^2(pi nu_d / m), so agreement
  of each with numpy is agreement of the two estimators mode by mode: power.txt to 2e-5 relative
  (float32 mesh and FFT against numpy's float64), Pk_library to 2e-5 relative and 1e-8 of the
  largest P absolute (Pylians transforms in float32), mode counts exactly, mean k to 1e-7.

The binary: $COSMOGRAD_BIN, else the newer of target/debug/cosmograd and
target/release/cosmograd (scripts/interop-check.sh builds it).
"""

import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

import Pk_library
import readgadget

ROOT = Path(__file__).resolve().parents[2]
L, N_SIDE, M = 128.0, 32, 64
N = N_SIDE**3
OMEGA_M, OMEGA_B, H = 0.3111, 0.049, 0.6766
RHO_CRIT_1E10 = 27.7536627  # 1e10 (Msun/h) / (Mpc/h)^3
CONFIG = f"""
[box]
size = {L}
particles = {N_SIDE}
mesh = {M}
[cosmology]
omega_m = {OMEGA_M}
omega_b = {OMEGA_B}
h = {H}
[time]
steps = 5
snapshots = [0.5]
[output]
formats = ["npy", "gadget"]
"""


def cosmograd_bin():
    env = os.environ.get("COSMOGRAD_BIN")
    if env:
        return Path(env)
    found = [p for p in (ROOT / "target/debug/cosmograd", ROOT / "target/release/cosmograd") if p.is_file()]
    if not found:
        pytest.fail("no cosmograd binary: build it (cargo build) or set COSMOGRAD_BIN")
    return max(found, key=lambda p: p.stat().st_mtime)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("interop")
    (d / "c.toml").write_text(CONFIG)
    subprocess.run(
        [str(cosmograd_bin()), "simulate", "--quiet", "--config", str(d / "c.toml"), "--out", str(d / "out")],
        check=True,
        timeout=600,
    )
    return d / "out"


SNAPSHOTS = [("", 1.0), ("_a0.5000", 0.5)]


@pytest.mark.parametrize("tag,a", SNAPSHOTS)
def test_h5py_reads_every_header_attribute_and_dataset(out, tag, a):
    with h5py.File(out / f"snapshot{tag}.hdf5", "r") as f:
        assert set(f.keys()) == {"Header", "PartType1"}
        h = f["Header"].attrs
        expect = {
            "BoxSize": (L * 1000.0, np.float64),
            "Time": (a, np.float64),
            "Redshift": (1.0 / a - 1.0, np.float64),
            "Omega0": (OMEGA_M, np.float64),
            "OmegaLambda": (1.0 - OMEGA_M, np.float64),
            "OmegaBaryon": (OMEGA_B, np.float64),
            "HubbleParam": (H, np.float64),
            "NumFilesPerSnapshot": (1, np.int32),
            "Flag_Sfr": (0, np.int32),
            "Flag_Cooling": (0, np.int32),
            "Flag_StellarAge": (0, np.int32),
            "Flag_Metals": (0, np.int32),
            "Flag_Feedback": (0, np.int32),
            "Flag_DoublePrecision": (0, np.int32),
            "UnitLength_in_cm": (3.085678e21, np.float64),
            "UnitMass_in_g": (1.989e43, np.float64),
            "UnitVelocity_in_cm_per_s": (1e5, np.float64),
        }
        for key, (value, dtype) in expect.items():
            assert np.asarray(h[key]).dtype == dtype, key
            assert np.asarray(h[key]).shape == (), key
            assert h[key] == pytest.approx(value, rel=1e-15), key
        arrays = {
            "NumPart_ThisFile": ([0, N, 0, 0, 0, 0], np.int64),
            "NumPart_Total": ([0, N, 0, 0, 0, 0], np.uint32),
            "NumPart_Total_HighWord": ([0] * 6, np.uint32),
        }
        for key, (value, dtype) in arrays.items():
            assert h[key].dtype == dtype, key
            np.testing.assert_array_equal(h[key], value, err_msg=key)
        mass = OMEGA_M * RHO_CRIT_1E10 * L**3 / N
        assert h["MassTable"].dtype == np.float64
        np.testing.assert_allclose(h["MassTable"], [0, mass, 0, 0, 0, 0], rtol=1e-12)
        expected_keys = set(expect) | set(arrays) | {"MassTable"}
        assert set(h.keys()) == expected_keys, set(h.keys()) ^ expected_keys

        p = f["PartType1"]
        assert set(p.keys()) == {"Coordinates", "Velocities", "ParticleIDs"}
        for key in ("Coordinates", "Velocities"):
            assert p[key].shape == (N, 3) and p[key].dtype == np.float32, key
        pos = p["Coordinates"][:]
        assert pos.min() >= 0.0 and pos.max() < L * 1000.0
        assert p["ParticleIDs"].dtype == np.uint32
        np.testing.assert_array_equal(p["ParticleIDs"][:], np.arange(N))


@pytest.mark.parametrize("tag,a", SNAPSHOTS)
def test_readgadget_reads_the_npy_particles(out, tag, a):
    snap = str(out / f"snapshot{tag}.hdf5")
    head = readgadget.header(snap)
    assert head.boxsize / 1e3 == pytest.approx(L)
    assert head.nall[1] == N and head.npart[1] == N and head.filenum == 1
    assert head.time == pytest.approx(a) and head.redshift == pytest.approx(1 / a - 1)
    assert (head.omega_m, head.omega_l, head.hubble) == pytest.approx((OMEGA_M, 1 - OMEGA_M, H))
    assert head.massarr[1] * 1e10 == pytest.approx(OMEGA_M * 2.77536627e11 * L**3 / N, rel=1e-12)

    pos = readgadget.read_block(snap, "POS ", [1]) / 1e3  # kpc/h -> Mpc/h
    vel = readgadget.read_block(snap, "VEL ", [1])  # km/s, peculiar (readgadget multiplies by sqrt(a))
    ids = readgadget.read_block(snap, "ID  ", [1])
    pos_npy = np.load(out / f"positions{tag}.npy")
    vel_npy = np.load(out / f"velocities{tag}.npy")
    np.testing.assert_array_equal(ids, np.arange(N))
    d = (pos - pos_npy + L / 2) % L - L / 2  # periodic difference
    assert np.abs(d).max() < 2e-5, np.abs(d).max()  # f32 rounding of kpc/h and of Mpc/h values
    vmax = np.abs(vel_npy).max()
    assert vmax > 10.0
    np.testing.assert_allclose(vel, vel_npy, rtol=0, atol=2e-6 * vmax)


def _modes(delta):
    """Per-mode power |delta_k|^2 V/N^2 / W^2 (CIC window divided out) and |k|/k_F of the rfft
    half spectrum, with integer frequencies in Pylians' convention (kx = i for i <= m/2)."""
    m = delta.shape[0]
    dk = np.fft.rfftn(delta.astype(np.float64))
    f = np.arange(m)
    f = np.where(f > m // 2, f - m, f)
    fz = np.arange(m // 2 + 1)
    kx, ky, kz = np.meshgrid(f, f, fz, indexing="ij")
    sinc2 = lambda nu: np.sinc(nu / m) ** 2  # np.sinc(x) = sin(pi x)/(pi x)
    w2 = (sinc2(kx) * sinc2(ky) * sinc2(kz)) ** 2
    p = np.abs(dk) ** 2 * L**3 / float(m) ** 6 / w2
    return p, np.sqrt(kx**2 + ky**2 + kz**2), kx, ky, kz


def test_pk_library_and_power_txt_are_the_same_estimator(out):
    delta = np.load(out / "density.npy")
    assert delta.dtype == np.float32 and delta.shape == (M, M, M)
    p, kn, kx, ky, kz = _modes(delta)
    kf, mid = 2 * np.pi / L, M // 2

    # power.txt binning: round(|k|/kF), full spectrum (weight 2 off the kz = 0 and kz = m/2 planes).
    rows = np.loadtxt(out / "power.txt")
    w = np.where((kz == 0) | (kz == mid), 1.0, 2.0)
    j = np.floor(kn + 0.5).astype(int)
    ours = []
    for b in range(1, mid + 1):
        s = j == b
        ours.append((np.sum(w[s] * kn[s]) * kf / np.sum(w[s]), np.sum(w[s] * p[s]) / np.sum(w[s]), np.sum(w[s])))
    ours = np.array(ours)
    assert rows.shape == (mid, 4)
    np.testing.assert_allclose(rows[:, 0], ours[:, 0], rtol=1e-7)  # mean k, printed to 9 digits
    np.testing.assert_array_equal(rows[:, 2], ours[:, 2])  # N_modes
    np.testing.assert_allclose(rows[:, 1], ours[:, 1], rtol=2e-5)  # f32 mesh and FFT vs numpy f64

    # Pylians' binning: int(|k|/kF), independent modes only.
    pk = Pk_library.Pk(delta, L, axis=0, MAS="CIC", threads=1, verbose=False)
    keep = np.ones_like(kn, dtype=bool)
    plane = (kz == 0) | (kz == mid)
    keep &= ~(plane & (kx < 0))
    keep &= ~(plane & ((kx == 0) | (kx == mid)) & (ky < 0))
    jp = kn.astype(int)
    theirs = []
    for b in range(1, int(np.sqrt(3) * mid) + 1):
        s = keep & (jp == b)
        theirs.append((kn[s].mean() * kf, p[s].mean(), s.sum()))
    theirs = np.array(theirs)
    assert len(pk.k3D) == len(theirs)
    np.testing.assert_array_equal(pk.Nmodes3D, theirs[:, 2])
    np.testing.assert_allclose(pk.k3D, theirs[:, 0], rtol=1e-10)
    # Pylians transforms in float32: relative 2e-5, and an absolute 1e-8 of the largest P for the
    # corner bins (a few modes, P ~ 1e-5 of the peak) where the f32 rounding of delta_k dominates.
    np.testing.assert_allclose(pk.Pk[:, 0], theirs[:, 1], rtol=2e-5, atol=1e-8 * theirs[:, 1].max())

    # Where both binnings cover the same shells (|k| up to Nyquist), the spectra agree in shape:
    # interpolated in log k, within the cosmic variance of the bins (a sanity check, not a bound).
    sel = (pk.k3D > 4 * kf) & (pk.k3D < mid * kf)
    ratio = pk.Pk[sel, 0] / np.interp(pk.k3D[sel], rows[:, 0], rows[:, 1])
    assert np.all(np.abs(ratio - 1) < 0.1), ratio
