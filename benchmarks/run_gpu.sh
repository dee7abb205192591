#!/usr/bin/env bash
# Every GPU table of benchmarks/README.md in one run, for a short lease of a GPU machine:
#   bash benchmarks/run_gpu.sh OUTPUT_DIR
# The engine's tests on CUDA first, then the training engine against the torch.func recipe and
# the JAX peer (h = 16 and h = 128, float32), then the jamming sweep at config/paper.yaml's
# networks (N ~ 2000, float64). Each table lands in OUTPUT_DIR as JSON, the log as run.log.
set -uo pipefail
out=${1:?give an output folder}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec > >(tee -a "$out/run.log") 2>&1
step() { echo "== $(date -u +%T) $*"; }

step machine
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import torch, jax; print('torch', torch.__version__, torch.cuda.get_device_name(0)); print('jax', jax.__version__)"

step "engine tests on CUDA"
BASINS_TEST_DEVICE=cuda timeout 150 python3 -m pytest -q -p no:cacheprovider -n 4 \
    tests/test_training.py tests/test_networks.py tests/test_oscillators.py 2>&1 | tail -15

step "training, h = 16"
timeout 150 python3 benchmarks/bench_training.py --device cuda --members 16 256 1024 4096 16384 65536 \
    --member-steps 2000000 --max-steps 1000 --memory-budget-mb 32768 \
    --methods vmap_recipe engine jax jax_manual --output "$out/training_cuda_float32_h16.json"

step "training, h = 128"
timeout 100 python3 benchmarks/bench_training.py --device cuda --width 128 --members 256 1024 4096 16384 \
    --member-steps 1000000 --max-steps 500 --memory-budget-mb 32768 \
    --methods vmap_recipe engine jax jax_manual --output "$out/training_cuda_float32_h128.json"

step "jamming sweep, paper networks"
for train_size in 4000 16000; do
    timeout 75 python3 benchmarks/bench_jamming.py --device cuda --depths 0 1 2 3 4 5 \
        --widths 2000 44 31 26 22 20 --train-size "$train_size" --members 16 --steps 1000 \
        --memory-budget-mb 32768 --output "$out/jamming_cuda_P$train_size.json"
done
step done
