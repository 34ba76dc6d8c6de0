#!/bin/bash
# The device call of versus.py: install the three wheel sets (versus_wheels.sh) into their own folders, then run the
# side-by-side benchmark. Layout on the device: <G>/src, <G>/benchmarks, <G>/w/{common,trl,uns}; e.g. G=.gpu/speed:
#   bash .gpu/speed/benchmarks/versus_device.sh --configs c2,c1,c3 --out $OUT --deadline-s 500   (carry .gpu/speed)
set -o pipefail
G=$(cd "$(dirname "$0")/.." && pwd)
t0=$(date +%s)
for s in common trl uns; do
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site-$s $G/w/$s/*.whl 2>&1 | grep -v "already exists\|WARNING: Target" | tail -3
done
for want in common/bitsandbytes common/liger_kernel common/datasets trl/trl uns/unsloth uns/unsloth_zoo uns/trl; do
  [ -d /tmp/site-${want%%/*}/${want#*/} ] || { echo "install failed: $want"; exit 3; }
done
echo "installs $(( $(date +%s) - t0 ))s"; nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader
cd $G && PYTHONUNBUFFERED=1 python3 benchmarks/versus.py "$@" 2>&1 | tee $OUT/versus-log.txt
