#!/usr/bin/env bash
# GPU throughput of the iNat2018 configuration, one run of about 8 minutes on one H100/H200.
# Usage: benchmarks/benchmark_gpu.sh [DATA_DIR]
#   DATA_DIR holds (or receives, about 4 GB, 1-2 minutes) iNat2018-sized synthetic data; default /tmp/csp_benchmark.
# Prints, as median [min-max] of 3 alternated repeats: the final evaluation's seconds, and for float32 eager, bf16
# autocast, torch.compile and both: pre-training samples/s at batch 1 024 and 8 192, fine-tuning samples/s at batch
# 1 024 (8 142 classes), each with the peak GPU memory. A variant that fails is reported and skipped.
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "$0")/benchmark_training.py" --data_dir "${1:-/tmp/csp_benchmark}" \
    --device cuda:0 --repeats 3 --num_batches 50 --num_large_batches 10 --variants eager bf16 compile compile+bf16
