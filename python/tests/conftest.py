"""Shared fixtures of the Python tests: tiny configurations and the CLI binary.

The tests run on tiny boxes (8^3 particles, 16^3 mesh, 64 Mpc/h, a few steps), so the whole
suite takes seconds. The CLI comparisons need the ``cosmograd`` binary: ``$COSMOGRAD_CLI``, else
``target/debug/cosmograd`` or ``target/release/cosmograd`` of this checkout
(``scripts/python-tests.sh`` builds it when missing).
"""

import os
import pathlib
import subprocess

import numpy as np
import pytest

import cosmograd

REPO = pathlib.Path(__file__).resolve().parents[2]


def tiny(precision="f64", steps=3, **sections):
    """A tiny run as a dict of TOML sections: 8^3 particles, 16^3 mesh, 64 Mpc/h."""
    d = {
        "box": {"size": 64.0, "particles": 8, "mesh": 16},
        "time": {"steps": steps},
        "run": {"precision": precision, "seed": 7},
    }
    for name, keys in sections.items():
        d.setdefault(name, {}).update(keys)
    return d


@pytest.fixture
def cfg64():
    return cosmograd.Config(tiny("f64"))


@pytest.fixture
def cfg32():
    return cosmograd.Config(tiny("f32"))


def rng(seed):
    return np.random.default_rng(seed)


def _find_cli():
    env = os.environ.get("COSMOGRAD_CLI")
    if env:
        return pathlib.Path(env)
    for profile in ("debug", "release"):
        p = REPO / "target" / profile / "cosmograd"
        if p.is_file():
            return p
    return None


@pytest.fixture(scope="session")
def cli():
    """Runs the CLI: ``cli(args...)`` returns the CompletedProcess (text mode)."""
    path = _find_cli()
    if path is None:
        if os.environ.get("CI") or os.environ.get("COSMOGRAD_REQUIRE_CLI"):
            pytest.fail("the cosmograd CLI binary is missing: run scripts/python-tests.sh (it builds it)")
        pytest.skip("no cosmograd CLI binary (cargo build --bin cosmograd, or set COSMOGRAD_CLI)")

    def run(*args, check=True):
        r = subprocess.run([str(path), *map(str, args)], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"cosmograd {' '.join(map(str, args))} failed: {r.stderr}")
        return r

    return run


def cli_error(result):
    """The one-line message of a failed CLI run (stderr without the ``error: `` prefix)."""
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0][len("error: "):]
