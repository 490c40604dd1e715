#!/usr/bin/env bash
# Bit-identity check for refactors: runs `simulate`, `gradient` and `reconstruct` on small
# configurations (f32 and f64, snapshots, checkpoints, a P(k) loss) and the library with a learned
# force correction (examples/bit_identity.rs), hashes every output (timings excluded) and compares
# with scripts/bit-identity.sha256.
#
#   scripts/bit-identity.sh            # compare (exit 1 and a diff on any change)
#   scripts/bit-identity.sh --record   # write the reference after a change that is meant to
#                                      # change results (say so in the commit)
#
# The hashes hold for one machine and toolchain (rustfft picks SIMD kernels at run time): record
# on the machine you compare on, before the refactor, then compare after it.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=scripts/bit-identity.sha256
cargo build --quiet --bin cosmograd --example bit_identity
bin=target/debug/cosmograd
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/f32.toml" <<'T'
[box]
size = 64.0
particles = 16
mesh = 32
[time]
steps = 5
snapshots = [0.5]
T
sed 's/^\[time\]/[run]\nprecision = "f64"\n[time]/' "$work/f32.toml" >"$work/f64.toml"
cat >"$work/recon.toml" <<'T'
[box]
size = 64.0
particles = 8
mesh = 16
[time]
steps = 4
T

q="--quiet"
"$bin" simulate $q --config "$work/f32.toml" --out "$work/sim-f32"
"$bin" simulate $q --config "$work/f64.toml" --out "$work/sim-f64"
"$bin" gradient $q --config "$work/f32.toml" --out "$work/grad-f32"
"$bin" gradient $q --config "$work/f64.toml" --checkpoint-every 2 --out "$work/grad-f64-ckpt"
"$bin" gradient $q --config "$work/f32.toml" --loss power --target "$work/sim-f32/density.npy" --out "$work/grad-power"
"$bin" gradient $q --config "$work/f32.toml" --target "$work/sim-f32/density.npy" --seed 7 --out "$work/grad-target"
"$bin" reconstruct $q --config "$work/recon.toml" --iterations 8 --noise 0.5 --out "$work/recon"
"$bin" reconstruct $q --config "$work/recon.toml" --iterations 6 --preconditioner linear --data-mesh 12 --out "$work/recon-mesh"
target/debug/examples/bit_identity >"$work/library.txt"

(cd "$work" && find . -type f ! -name timings.txt ! -name 'hashes*' | LC_ALL=C sort | xargs sha256sum) \
    | sed "s|$work|WORK|g" >"$work/hashes"
# config.toml records absolute input paths: hash it with the scratch dir replaced.
while read -r _ f; do
    case "$f" in
    */config.toml) printf '%s  %s\n' "$(sed "s|$work|WORK|g" "$work/$f" | sha256sum | cut -d' ' -f1)" "$f" ;;
    *) grep -F "  $f" "$work/hashes" | head -1 ;;
    esac
done <"$work/hashes" >"$work/hashes2"

if [ "${1:-}" = "--record" ]; then
    cp "$work/hashes2" "$ref"
    echo "recorded $(wc -l <"$ref") hashes in $ref"
else
    if diff "$ref" "$work/hashes2"; then
        echo "bit-identical: $(wc -l <"$ref") outputs"
    else
        echo "outputs differ from $ref (lines above)"
        exit 1
    fi
fi
