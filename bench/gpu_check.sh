#!/usr/bin/env bash
# Every GPU check in one run, on the machine the device tool lends, after bench/gpu_bundle.sh
# packed .gpu/ here: the devices clvae sees, the C tests on the GPU (kernels, gradient checks
# including the conv model and the two-part bias reduction, IWAE, PCA; the gradient check and
# epoch times with clvae's own products as well as CLBlast's), the widest model whole and in parts,
# the launches per step and the host's share of a step (issue 24), and issue 8's table
# against PyTorch --device cuda (bench/bench.py --gpu-table). The runs write into
# /tmp/clvae-gpu-check; their text (logs, tables, metrics.csv; no images or checkpoints) comes back
# as one archive, $OUT/gpu-check.tgz (default gpu-out/), also when the script is stopped part way
# (the device tool returns at most 8 files from $OUT). Without a GPU it fails cleanly at the first
# step. With .gpu/data/icons-11 (gpu_bundle.sh ICONS11), issue 22's residual model joins the launches
# and the table. On the GPU machine, after `tar xJf .gpux/gpu.tar.xz` (what gpu_bundle.sh packed):
#   bash bench/gpu_check.sh [EPOCHS [SECTION...]]
# SECTION: tests, engines, wide, launches, table (all five when none is named), or table=WORDS for
# the table's rows whose label has one of WORDS (comma list, bench.py --rows): a short run when the
# device time is short; and seeds[=N], not among the default five (minutes): issue 22's residual
# model against its reference over N seeds each (bench/seeds.py).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
out=/tmp/clvae-gpu-check
dest=${OUT:-gpu-out}
rm -rf "$out" && mkdir -p "$out" "$dest" && dest=$(cd "$dest" && pwd) || exit 1
pack() {
    (cd "$out" && find . -type f -size -900k ! -name '*.png' ! -name '*.safetensors' |
        tar czf "$dest/gpu-check.tgz" -T -)
}
trap pack EXIT
trap 'exit 143' TERM INT
[ -f .gpu/env.sh ] || { echo "gpu_check.sh: no .gpu/ here: run bench/gpu_bundle.sh first" >&2; exit 1; }
source .gpu/env.sh
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
    "$CLVAE" devices --verbose
} > "$out/devices.txt" 2>&1
cat "$out/devices.txt"
grep -q "platform .*NVIDIA" "$out/devices.txt" || { echo "gpu_check.sh: no NVIDIA platform" >&2; exit 1; }
export CLVAE_PLATFORM=nvidia
epochs=${1:-3}
shift $(($# > 0 ? 1 : 0))
sections=" ${*:-tests engines wide launches table} "
want() { [[ $sections == *" $1 "* || $sections == *" $1="* ]]; }
icons=.gpu/data/icons-11
[ -d $icons ] || icons=
res_model="--encoder conv:32:3:1:1,res:32,conv:64,res:64,conv:128,res:128,dense:256 --latent 32
    --likelihood logistic --batch 64 --data $icons"
status=0
want tests && for t in test_kernels test_gradcheck test_iwae test_pca; do
    timeout 300 stdbuf -oL ".gpu/bin/$t" > "$out/$t.txt" 2>&1
    rc=$?
    echo "$t: exit $rc, $(tail -n 1 "$out/$t.txt")"
    [ $rc -eq 0 ] || status=1
done
# clvae's own products (cl/gemm.cl, the CPU default) on the GPU: correct, and how fast against
# CLBlast's, the GPU default, on the default model and the conv reference.
if want engines; then
CLVAE_GEMM=clvae timeout 300 stdbuf -oL .gpu/bin/test_gradcheck > "$out/test_gradcheck_clvae_gemm.txt" 2>&1
rc=$?
echo "test_gradcheck with CLVAE_GEMM=clvae: exit $rc, $(tail -n 1 "$out/test_gradcheck_clvae_gemm.txt")"
[ $rc -eq 0 ] || status=1
# A CPU's kernel variants and work plan on the GPU (CLVAE_KERNELS=cpu): each kernel of cl/ built
# by NVIDIA's compiler and right there, as the tests run a GPU's plan on PoCL.
CLVAE_KERNELS=cpu timeout 300 stdbuf -oL .gpu/bin/test_gradcheck > "$out/test_gradcheck_cpu_plan.txt" 2>&1
rc=$?
echo "test_gradcheck with CLVAE_KERNELS=cpu: exit $rc, $(tail -n 1 "$out/test_gradcheck_cpu_plan.txt")"
[ $rc -eq 0 ] || status=1
for engine in clblast clvae; do
    for model in "" "--encoder conv:32,conv:64,dense:256 --latent 10"; do
        # shellcheck disable=SC2086 # the model's options are words
        CLVAE_GEMM=$engine timeout 300 "$CLVAE" train --epochs 3 $model --out "$out/engine-$engine" \
            2>&1 | grep '^epoch' | sed "s/^/CLVAE_GEMM=$engine ${model:-default model}: /"
    done
done | tee "$out/engines.txt"
fi
# The widest model of issue 8's table, whole and with its parameters in 2 GiB parts (as on a device
# whose largest allocation is smaller): an epoch each, the same losses.
want wide && for limit in "" 2G; do
    log=$out/wide-${limit:-whole}.txt
    CLVAE_MAX_ALLOC=$limit timeout 150 "$CLVAE" train --hidden 16384,16384 --batch 1024 --epochs 1 \
        --out "$out/wide-${limit:-whole}" > "$log" 2>&1
    echo "--hidden 16384,16384${limit:+, CLVAE_MAX_ALLOC=$limit}: exit $?"
    grep -E '^epoch|larger than|first training step' "$log" || tail -n 2 "$log"
done | tee "$out/wide.txt"
# Launches per training step and the host's share of the wall time (clvae train --profile: the
# launch count and the "host enqueue calls" row), the default model and the conv reference at two
# batches, for the table beside issue 8's (issue 24: a step's launches bound small batches), and
# issue 22's residual model on icons-11 at its batch of 64.
want launches && {
    echo "| model | batch | launches per step | host enqueue us a launch | host share of wall |"
    echo "| --- | --- | --- | --- | --- |"
    for model in "" "--encoder conv:32,conv:64,dense:256 --latent 10" ${icons:+"$res_model"}; do
        for batch in 256 4096; do
            [[ $model == *res:* ]] && { [ $batch = 256 ] || continue; batch=64; }
            # shellcheck disable=SC2086 # the model's options are words
            prof=$(timeout 300 "$CLVAE" train --epochs 1 $model --batch "$batch" --profile \
                --out "$out/profile" 2>&1)
            launches=$(sed -n 's/^clvae: \([0-9.]*\) launches per training step.*/\1/p' <<<"$prof")
            host=$(awk '/^host enqueue calls/ {print $(NF-7) " | " $(NF-6)}' <<<"$prof")
            label=${model:-default}
            [[ $model == *res:* ]] && label="residual model, icons-11"
            echo "$prof" > "$out/profile-$(tr -c 'a-z0-9\n' - <<<"${label%%,*}" | cut -c1-24)-$batch.txt"
            echo "| $label | $batch | ${launches:-?} | ${host:-? | ?} |"
        done
    done
} | tee "$out/launches.md"
# Issue 22's accuracy over many seeds (bench/seeds.py): the residual model on icons-11, clvae
# against torch_resvae.py --device cuda, seeds=N of each (default 8), 30 epochs, 6 runs at a time.
nseeds=$(sed -n 's/.* seeds=\([0-9]*\) .*/\1/p' <<<"$sections")
# Within one device call (10 minutes); the runs' logs come back even when it is cut short.
if want seeds && [ -z "$icons" ]; then
    echo "gpu_check.sh: seeds needs .gpu/data/icons-11: bash bench/gpu_bundle.sh ICONS11" >&2
    status=1
elif want seeds; then
    timeout "${SEEDS_TIMEOUT:-540}" python3 bench/seeds.py --exe "$CLVAE" --data "$icons" \
        --device cuda --seeds "${nseeds:-8}" --jobs 6 --out "$out/seeds" | tee "$out/seeds.md"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
rows=$(sed -n 's/.* table=\([^ ]*\) .*/\1/p' <<<"$sections")
want table && timeout 900 python3 bench/bench.py --gpu-table --epochs "$epochs" --exe "$CLVAE" \
    ${icons:+--icons "$icons"} ${rows:+--rows "$rows"} 2>"$out/bench-errors.txt" | tee "$out/gpu-table.md"
exit $status
