#!/usr/bin/env bash
# Download, here (where pip reaches PyPI), the wheels the lent GPU machine lacks, into .whl/ (in .gitignore), so a
# `device` run can carry them:  run(command=..., carry=[".whl"]).  On the GPU machine, before the harness:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD && python3 -m benchmarks.run --size gpu
# The GPU image has torch, transformers, peft, accelerate, numpy, pyarrow, pandas, matplotlib, psutil, tqdm; it lacks
# trl, bitsandbytes and datasets (and datasets' dill/multiprocess). transformers/peft/accelerate are carried too, to
# run the pinned versions. The carried tree must stay under 64 MiB: check `du -sh .whl` at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
download() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .whl "$@"
}
download "trl==1.16.0" "transformers==5.23.0" "peft==0.21.2" "accelerate==1.15.0" "datasets==5.2.0" \
  "bitsandbytes==0.50.2" "dill==0.4.1" "multiprocess==0.70.19"
python3 - <<'PY'
from pathlib import Path
total = sum(p.stat().st_size for p in Path(".whl").glob("*.whl"))
for p in sorted(Path(".whl").glob("*.whl")):
    print(f"{p.stat().st_size / 2**20:7.1f} MiB  {p.name}")
print(f"{total / 2**20:7.1f} MiB in .whl (the device carries at most 64 MiB with the working tree)")
PY
