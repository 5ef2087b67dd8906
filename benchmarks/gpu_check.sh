#!/usr/bin/env bash
# GPU checks for a machine without package access: wheels carried in .whl/ (see
# docs of the device tool), equiscope used from the source tree. Writes logs to $OUT.
# Run: OUT=/tmp/out bash benchmarks/gpu_check.sh
set -uo pipefail
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:src:plugins:tests
fi
OUT=${OUT:-/tmp/equiscope-gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, metatomic.torch, metatrain; print(torch.__version__, torch.cuda.is_available())"
echo "== tests on cuda"
python3 -m pytest -q -p no:cacheprovider tests/plugins/test_atoms_orbit.py 2>&1 | tail -5 | tee "$OUT/tests.txt"
echo "== audit CLI on cuda"
python3 - <<'PY'
import sys, torch
from _models import write_copper
from equiscope_atoms import tiny_pet
tiny_pet([29], dtype=torch.float32).export().save("/tmp/pet.pt")
write_copper("/tmp/cu.xyz", n=3, disorder=True)
PY
python3 -m equiscope.cli audit /tmp/pet.pt /tmp/cu.xyz -o /tmp/report --grid lebedev --degree 8 \
    --device cuda --outputs energy,forces 2>&1 | tail -12 | tee "$OUT/audit_cli.txt"
echo "== throughput, degree-8 grid, 30 structures, 3 alternating repeats"
python3 benchmarks/audit_throughput.py --structures 30 --naive-structures 3 --device cuda \
    --batch-size 684 --repeats 3 --profile 2>&1 | tee "$OUT/throughput_cuda_684.txt"
python3 benchmarks/audit_throughput.py --structures 10 --naive-structures 3 --device cuda \
    --batch-size 57 --repeats 3 2>&1 | tee "$OUT/throughput_cuda_57.txt"
