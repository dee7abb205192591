#!/usr/bin/env bash
# Every GPU table of benchmarks/README.md in one run, for a short lease of a GPU machine:
#   bash benchmarks/run_gpu.sh OUTPUT_DIR [SECTION ...]
# SECTIONs (all by default, in this order): tests (the engine's tests on CUDA; the run stops if
# they fail), training (the engine, stepping in captured windows and one step at a time, against
# the torch.func recipe and the JAX peer, h = 16 and h = 128, float32), profile (where a GPU step
# goes), draw (one job of the paper's answer at N = 401), jamming (the jamming sweep at
# config/paper.yaml's networks, N ~ 2000, float64). Each table lands in OUTPUT_DIR, the log as run.log.
set -uo pipefail
out=${1:?give an output folder}
shift
sections=${*:-tests training profile draw jamming}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec > >(tee -a "$out/run.log") 2>&1
step() { echo "== $(date -u +%T) $*"; }
wanted() { [[ " $sections " == *" $1 "* ]]; }

step machine
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import torch, jax; print('torch', torch.__version__, torch.cuda.get_device_name(0)); print('jax', jax.__version__)"

if wanted tests; then
    step "engine tests on CUDA"
    BASINS_TEST_DEVICE=cuda timeout 200 python3 -m pytest -q -p no:cacheprovider -n 4 \
        tests/test_windows.py tests/test_fused_mlp.py tests/test_training.py tests/test_networks.py tests/test_oscillators.py \
        > "$out/tests.log" 2>&1
    passed=$?
    grep -E "^(FAILED|ERROR|E  )|passed|failed" "$out/tests.log" | tail -40
    [[ $passed == 0 || -n ${GPU_CONTINUE_AFTER_FAILED_TESTS:-} ]] || { step "tests failed: stopping"; exit 1; }
fi

if wanted training; then
    step "training, h = 16"
    timeout 200 python3 benchmarks/bench_training.py --device cuda --members 16 256 1024 4096 16384 65536 \
        --member-steps 2000000 --max-steps 1000 --memory-budget-mb 32768 \
        --methods vmap_recipe engine engine_stepwise jax jax_manual --output "$out/training_cuda_float32_h16.json"
    step "training, h = 128"
    timeout 120 python3 benchmarks/bench_training.py --device cuda --width 128 --members 256 1024 4096 16384 \
        --member-steps 1000000 --max-steps 500 --memory-budget-mb 32768 \
        --methods vmap_recipe engine engine_stepwise jax jax_manual --output "$out/training_cuda_float32_h128.json"
fi

if wanted profile; then
    step "where a step goes"
    timeout 120 python3 benchmarks/profile_gpu_step.py --device cuda --steps 1000 | tee "$out/profile_step.jsonl"
fi

if wanted draw; then
    step "one paper answer job, N = 401"
    timeout 150 python3 benchmarks/bench_digits_draw.py --draw 1 --width 40 --members 1024 --device cuda \
        --memory-budget-mb 32768 --top 15 > "$out/digits_draw_width40.log" 2>&1
    grep -E "^N = |members stopped|spent" "$out/digits_draw_width40.log" | tail -12
fi

if wanted jamming; then
    step "jamming sweep, paper networks"
    for train_size in 4000 16000; do
        timeout 75 python3 benchmarks/bench_jamming.py --device cuda --depths 0 1 2 3 4 5 \
            --widths 2000 44 31 26 22 20 --train-size "$train_size" --members 16 --steps 1000 \
            --memory-budget-mb 32768 --output "$out/jamming_cuda_P$train_size.json"
    done
fi
step done
