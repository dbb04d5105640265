#!/usr/bin/env bash
# The device checks for a lent GPU machine, as one script (its python3 has torch but neither Ray nor the
# cp311 pytorch3d wheel): nccl DDP through the families' own train steps, GIRAFFE rendering, the SMPLify
# fit and the body kernel on cuda against the same code on that machine's CPUs.
#   bench/gpu_check.sh [OUT_DIR]      (PYTHONPATH must hold the checkout; smplx and pytorch3d's Python
#                                      files too, for the SMPLify benches)
set -uo pipefail
out=${1:-.}
py=${PYTHON:-python3}
nvidia-smi -L
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
run() { echo "== $*"; timeout 240 "$@" 2>&1 | tee -a "$out/gpu_check.txt"; }
run $py bench/ddp_check.py --backend nccl --families toy,giraffe --steps 20 --batch 16
run $py bench/giraffe_render.py --device cuda --preset cars64 --batch 32 --repeats 10
run $py bench/giraffe_render.py --device cpu --preset cars64 --batch 4 --repeats 2 --warmup 1
run $py bench/body_kernel.py --device cuda --batch 4096
run $py bench/smplify_throughput.py --device cuda --preset fast --videos 32 --frames 128 --baseline-videos 8 --rounds 2 --threads 0
run $py bench/smplify_throughput.py --device cuda --preset default --videos 32 --frames 128 --baseline-videos 4 --rounds 1 --threads 0
run $py bench/smplify_throughput.py --device cpu --preset fast --videos 8 --frames 64 --baseline-videos 2 --rounds 1 --threads 1,0
