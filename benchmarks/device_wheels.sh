#!/usr/bin/env bash
# Download, here (where pip reaches PyPI), the wheels the lent GPU machine lacks, into .whl/ (in .gitignore), so a
# `device` run can carry them:  run(command=..., carry=[".whl"]).  On the GPU machine, before the harness:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD && python3 -m benchmarks.run --size gpu
# The GPU image has torch, transformers, peft, accelerate, numpy, pyarrow, pandas, matplotlib, psutil, tqdm, ninja,
# msgpack, einops, py-cpuinfo; it lacks trl, bitsandbytes, datasets (and datasets' dill/multiprocess) and deepspeed
# (and its hjson, pydantic, pydantic-core, annotated-types, typing-inspection). transformers/peft/accelerate are
# carried too: the image's are older than trl_ext's supported range. DeepSpeed is published as source only: its
# wheel is built here (pure Python; its CUDA ops are compiled on first use, which the GPU check avoids by keeping
# the trainers' own torch optimizer). It is built with pip's build isolation, so the build needs neither torch nor
# the `wheel` package on this machine: pip installs setuptools and wheel into a throw-away environment (from PyPI),
# and DeepSpeed's setup.py, finding no torch there, pre-compiles no op (DS_BUILD_OPS=0 says so too).
# The carried tree must stay under 64 MiB: the total is printed at the end.
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
  "bitsandbytes==0.50.2" "dill==0.4.1" "multiprocess==0.70.19" \
  "hjson==3.1.0" "pydantic==2.12.5" "pydantic-core==2.41.5" "annotated-types==0.7.0" "typing-inspection==0.4.2"
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps --no-binary=:all: -d "$tmp" "deepspeed==0.19.8"
DS_BUILD_OPS=0 python3 -m pip wheel -q --no-deps -w .whl "$tmp"/deepspeed-*.tar.gz
rm -rf "$tmp"
# bitsandbytes ships one CUDA library per CUDA release (~130 MiB unpacked); keep those of the GPU image's CUDA
# ($BNB_CUDA_KEEP, default 13.x: the image's torch is built for CUDA 13.0) so that everything fits in 64 MiB.
BNB_CUDA_KEEP="${BNB_CUDA_KEEP:-130 132}" python3 - <<'PY'
import os, re, zipfile
from pathlib import Path
keep = {f"libbitsandbytes_cuda{v}.so" for v in os.environ["BNB_CUDA_KEEP"].split()}
for wheel in Path(".whl").glob("bitsandbytes-*.whl"):
    slim = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            name = item.filename.rsplit("/", 1)[-1]
            if re.fullmatch(r"libbitsandbytes_cuda\d+\.so", name) and name not in keep:
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line for line in data.splitlines(keepends=True)
                                if not (re.search(rb"libbitsandbytes_cuda\d+\.so", line)
                                        and line.split(b",")[0].rsplit(b"/", 1)[-1].decode() not in keep))
            dst.writestr(item, data)
    slim.replace(wheel)
PY
python3 - <<'PY'
from pathlib import Path
total = sum(p.stat().st_size for p in Path(".whl").glob("*.whl"))
for p in sorted(Path(".whl").glob("*.whl")):
    print(f"{p.stat().st_size / 2**20:7.1f} MiB  {p.name}")
print(f"{total / 2**20:7.1f} MiB in .whl (the device carries at most 64 MiB with the working tree)")
PY
