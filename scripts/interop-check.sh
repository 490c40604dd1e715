#!/usr/bin/env bash
# The Python interoperability check: cosmograd's Gadget HDF5 snapshots and power.txt read by
# h5py and Pylians (readgadget, Pk_library); python/interop/test_interop.py says what is checked.
#
#   scripts/interop-check.sh                  # builds what `cargo test --workspace` builds, then checks
#   COSMOGRAD_BIN=target/release/cosmograd scripts/interop-check.sh   # an existing binary
#
# Needs python3 (3.9+) with venv, a C compiler and the Python headers: Pylians 0.12 compiles its
# Cython extensions when pip installs it (about 6 minutes on 2 cores, once; pip caches the wheel).
# The virtual environment lives in target/py-venv (COSMOGRAD_PY_VENV to move it).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${COSMOGRAD_PY_VENV:-target/py-venv}
if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
        # Debian's python3 ships venv and the headers separately.
        rm -rf "$venv"
        if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
            apt-get update -qq && apt-get install -y -qq python3-venv python3-dev gcc >/dev/null
        fi
        python3 -m venv "$venv" || { echo "interop-check: python3 -m venv failed: install python3-venv (Debian) or a Python with venv"; exit 1; }
    fi
fi
start=$(date +%s)
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r python/requirements.txt
echo "interop-check: Python packages ready in $(( $(date +%s) - start )) s ($("$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null | grep -iE '^(pylians|h5py|numpy) ' | tr -s ' ' | paste -sd ',' -))"
if [ -z "${COSMOGRAD_BIN:-}" ]; then
    # The binary the integration tests use, with the same features and profile, so that a
    # `cargo test --workspace` after this compiles nothing more.
    cargo test --workspace --no-run
    export COSMOGRAD_BIN=target/debug/cosmograd
fi
"$venv/bin/python" -m pytest -q -p no:cacheprovider python/interop
