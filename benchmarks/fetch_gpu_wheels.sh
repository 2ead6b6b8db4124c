#!/usr/bin/env bash
# Downloads into .whl/ (git-ignored) the wheels that benchmarks/gpu_session.sh installs on
# the lent GPU machine, which reaches no package registry: the GPU peers of the suite that
# the machine's image lacks, and kneed (a dependency of gpukmeans that the image lacks too).
# Run it here, in the checkout that the device call sends, then name .whl in the call's
# carry list (docs/benchmarks.md, "gpu_session.sh").
#
# Everything the image holds already (torch, triton, numpy, scipy, tqdm, cupy, ...) is left
# out: --no-deps, and each wheel's own requirements are checked against that list below.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Versions the suite's calls (cli/benchmarking/peers.py) were written against; one of each,
# since two versions of one package stop the install on the device.
WHEELS=(
  flash-kmeans==0.3.1        # Triton kernels, needs torch, triton, numpy, tqdm
  fastkmeans==0.5.0          # needs torch, numpy (Triton used when present)
  fast-pytorch-kmeans==0.2.2 # needs torch, numpy
  kneed==0.9.0               # gpukmeans.sweep's knee; needs numpy, scipy
)
# Requirements of those wheels that the device image provides (docs: the device kinds'
# package list). Anything else a wheel asks for is reported below.
ON_IMAGE="torch triton numpy scipy tqdm"

if ! "$PY" -m pip --version >/dev/null 2>&1; then
  echo "fetch_gpu_wheels: '$PY' has no pip (set PYTHON to a Python with pip)" >&2
  exit 2
fi

mkdir -p .whl
rm -f .whl/*.whl
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${WHEELS[@]}" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

"$PY" - "$ON_IMAGE" .whl/*.whl <<'EOF'
import re
import sys
import zipfile

on_image = set(sys.argv[1].split())
missing = []
for path in sys.argv[2:]:
    with zipfile.ZipFile(path) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = wheel.read(name).decode()
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            requirement = re.split(r"[\s;<>=!~\[(]", line.split(":", 1)[1].strip())[0].lower()
            if requirement.replace("_", "-") not in on_image:
                missing.append(f"{path} needs {requirement}")
if missing:
    print("fetch_gpu_wheels: requirements that the device image may lack (fetch them too):")
    print("\n".join("  " + m for m in missing))
    sys.exit(1)
EOF

echo "fetched into .whl/:"
du -b .whl/*.whl | awk '{printf "  %8.1f KiB  %s\n", $1 / 1024, $2; total += $1}
                       END {printf "  %8.1f KiB  in all\n", total / 1024}'
echo "tracked files of the repository: $(git ls-files -z | du -cb --files0-from=- | tail -1 | cut -f1 | awk '{printf "%.1f MiB", $1 / 2^20}')" \
     "(what travels with a device call must stay under 64 MiB)"
echo "not fetched: faiss-gpu (its wheel alone is 135 MB, and it needs the CUDA 12 runtime and cuBLAS" \
     "wheels) and cuML (cuml-cu13 needs libcuml, cudf, rmm, pylibraft, nvforest and treelite wheels," \
     "and numba<0.65): far over the 64 MiB that travels; the suite reports both as missing."
