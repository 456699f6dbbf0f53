#!/usr/bin/env bash
# GPU throughput of the iNat2018 configuration, one run of about 10 minutes on one H100/H200.
# Usage: benchmarks/benchmark_gpu.sh [DATA_DIR [benchmark_training.py flags]]
#   DATA_DIR holds (or receives, about 4 GB, 1-2 minutes, synced to the disk before the timing) iNat2018-sized
#   synthetic data; default /tmp/csp_benchmark. DEVICE (default cuda:0) picks the device, the flags the size:
#   DEVICE=cpu bash benchmarks/benchmark_gpu.sh /tmp/tiny --num_train 600 --num_val 100 --num_batches 1 \
#       --num_large_batches 1 --repeats 1 --variants eager bf16      # the whole script, at a tiny size on the CPU
# Prints, as median [min-max] of 3 alternated repeats: the set-up's seconds and pre-training samples/s of trainers
# started with the data's pages evicted (cold) and cached (warm); the final evaluation's seconds; and for float32
# eager, bf16 autocast, torch.compile and both: pre-training samples/s at batch 1 024 and 8 192, fine-tuning
# samples/s at batch 1 024 (8 142 classes), each with the peak GPU memory. A variant that fails is reported and
# skipped.
set -euo pipefail
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then sed -n "2,12s/^# \{0,1\}//p" "$0"; exit 0; fi
data_dir="${1:-/tmp/csp_benchmark}"
shift $(( $# > 0 ? 1 : 0 ))
exec "${PYTHON:-python3}" "$(dirname "$0")/benchmark_training.py" --data_dir "$data_dir" --device "${DEVICE:-cuda:0}" \
    --repeats 3 --num_batches 50 --num_large_batches 10 --variants eager bf16 compile compile+bf16 "$@"
