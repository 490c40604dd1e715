#!/usr/bin/env bash
# The Python package's tests: builds the wheel with `pip install ./python` (maturin, release
# profile) into a virtual environment under target/ (created on the first run, reused after),
# with numpy, pytest and jax from PyPI, and runs pytest on python/tests.
#
#   scripts/python-tests.sh [PYTEST ARGS...]
#
# Environment: PYTHON (default python3, >= 3.9; JAX needs >= 3.11) makes the environment;
# COSMOGRAD_VENV (default target/py-venv) is where; COSMOGRAD_TORCH=1 also installs PyTorch (a
# large download: its tests are skipped without it). The CLI comparisons use target/debug/cosmograd,
# built here when missing or older than the sources (after `cargo test --workspace` it is current).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${COSMOGRAD_VENV:-target/py-venv}
py=${PYTHON:-python3}

t0=$(date +%s)
if [ ! -x "$venv/bin/python" ]; then
    echo "python-tests: creating $venv with $("$py" --version)"
    "$py" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q "numpy>=1.21" "pytest>=7" "jax>=0.4.34"
if [ "${COSMOGRAD_TORCH:-0}" = 1 ]; then
    "${pip[@]}" install -q torch
fi

# The CLI binary the tests compare with, current with the sources.
cli=target/debug/cosmograd
if [ ! -x "$cli" ] || [ -n "$(find src crates/pm-core/src crates/pm-adjoint/src crates/pm-nn/src Cargo.toml Cargo.lock -newer "$cli" -print -quit)" ]; then
    echo "python-tests: building the CLI ($cli)"
    cargo build --bin cosmograd
fi

t1=$(date +%s)
echo "python-tests: pip install ./python"
"${pip[@]}" install -q ./python
t2=$(date +%s)
echo "python-tests: environment $((t1 - t0)) s, wheel build and install $((t2 - t1)) s"

# From the repository root, so that `import cosmograd` is the installed package (not python/).
COSMOGRAD_CLI="$PWD/$cli" COSMOGRAD_REQUIRE_CLI=1 "$venv/bin/python" -m pytest python/tests "$@"
