#!/usr/bin/env bash
# One-shot checks for the accelerator machine (see /work/.library/device): the CUDA tests
# and benchmark (d), with the machine's own python3 (it has torch with CUDA, numpy,
# scikit-image, tifffile, pyyaml, pytest, psutil; no napari or dask, which these do not need).
#   device run:  bash scripts/gpu_check.sh      (results under $OUT when set, else ./gpu_check)
set -uo pipefail
OUT_DIR="${OUT:-gpu_check}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$OUT_DIR/gpu.txt"
# tests: the CUDA-marked ones across the suite (the rest run in CI)
"$PY" -m pytest -p no:cacheprovider -q -m cuda tests/inference/test_gpu.py tests/inference/test_tiled_equals_whole.py tests/training/test_train_loop.py \
  -o addopts="--import-mode=importlib" 2>&1 | tee "$OUT_DIR/tests.log"
tests_rc=${PIPESTATUS[0]}
# benchmark (d): MPix/s end to end vs the bare forward, base-64 UNet in bf16 and the default model
"$PY" benchmarks/run.py --sections d --results "$OUT_DIR/RESULTS_gpu.md" 2>&1 | tee "$OUT_DIR/bench.log"
bench_rc=${PIPESTATUS[0]}
echo "tests rc=$tests_rc bench rc=$bench_rc"
exit $(( tests_rc || bench_rc ))
