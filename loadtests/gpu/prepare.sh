#!/usr/bin/env bash
# Run on a machine WITH package-index access: fetch what a bare GPU host (Python 3.12, CUDA 13,
# cuDNN 9, no internet) needs to run the GPU benchmark, and cut it into parts that each fit in
# one transfer of at most 64 MiB beside the repository's files.
#
#   bash loadtests/gpu/prepare.sh            -> .gpu-bundle/part-00 ... part-NN, MANIFEST
#
# The parts are the onnxruntime-gpu wheel (about 255 MB), deepserve's runtime wheels for
# CPython 3.12 and deepserve's own wheel (of this checkout: prepare again after changing code),
# packed in one tar, then split. Send them one per command, then run
# loadtests/gpu/remote.sh there (see its header).
set -euo pipefail
cd "$(dirname "$0")/../.."

ORT_GPU_VERSION=${ORT_GPU_VERSION:-1.31.1}
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
PLATFORM=${PLATFORM:-manylinux_2_28_x86_64}
# A command carries at most 64 MiB in all, the repository's own files included: each part is
# what is left beside them, less 2 MiB of margin.
TREE_BYTES=$(git ls-files -z | xargs -0 cat | wc -c)
PART_SIZE=${PART_SIZE:-$(( (62 * 1048576 - TREE_BYTES) / 1048576 ))M}
BUNDLE=.gpu-bundle

rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/wheels"
# A current pip of its own: resolving for another Python (--python-version) needs one.
python3 -m venv "$BUNDLE/tools" && "$BUNDLE/tools/bin/python" -m pip install --quiet --upgrade pip
PIP=("$BUNDLE/tools/bin/python" -m pip)
download() {
  "${PIP[@]}" download --quiet --only-binary=:all: --python-version "$PYTHON_VERSION" \
    --platform "$PLATFORM" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --dest "$BUNDLE/wheels" "$@"
}
# onnxruntime-gpu alone (its own dependencies are on the host or in the list below), with the
# GPU code for other GPU generations than the host's zeroed (CUDA_ARCHS, default 90: H100 and
# H200), which takes its xz-compressed size from about 200 MB to 70 MB.
download --no-deps "onnxruntime-gpu==${ORT_GPU_VERSION}"
python3 loadtests/gpu/keep_archs.py "$BUNDLE"/wheels/onnxruntime_gpu-*.whl --archs "${CUDA_ARCHS:-90}"
# deepserve's runtime dependencies, read from pyproject.toml (the SDK's and the gpu extra's, so
# the list cannot fall behind the code), resolved for the host's Python; onnxruntime-gpu's own
# dependencies too.
mapfile -t REQUIREMENTS < <(python3 - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["gpu"]:
    if not requirement.startswith("onnxruntime"):
        print(requirement)
EOF
)
# The benchmark's own needs: onnx (it writes the no-op model); onnxconverter-common makes the
# FP16 ResNet-50 there (the CUDA provider's FP16, where TensorRT is not installed). Its plots
# use the host's matplotlib where there is one (the GPU hosts here have it): without, the
# figures come as JSON alone.
download "${REQUIREMENTS[@]}" "flatbuffers" "coloredlogs" "packaging" "sympy" \
  "onnx>=1.17,<1.24" "onnxconverter-common>=1.14,<2"

# deepserve itself, as a pure-Python wheel of this checkout.
"${PIP[@]}" wheel --quiet --no-deps --wheel-dir "$BUNDLE/wheels" .

# Proof that the bundle is complete: the host's Python resolves deepserve[gpu] from it alone.
"${PIP[@]}" install --quiet --dry-run --ignore-installed --no-index \
  --find-links "$BUNDLE/wheels" --only-binary=:all: --python-version "$PYTHON_VERSION" \
  --platform "$PLATFORM" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --target "$BUNDLE/dry-run" --report "$BUNDLE/resolution.json" "deepserve[gpu]" onnx onnxconverter-common
python3 -c "import json, sys; r = json.load(open(sys.argv[1])); \
print('bundle resolves deepserve[gpu] for Python $PYTHON_VERSION:', len(r['install']), 'packages')" \
  "$BUNDLE/resolution.json"
rm -rf "$BUNDLE/dry-run" "$BUNDLE/tools"

# The FP16 variants of the bundled models (about 7 MB), checked here on held-out data, so the
# GPU run can compare the CUDA provider in FP16 with FP32. A Python with deepserve's train extra
# (make test's .venv has it); DATA= the MNIST folder (default: the one the training uses).
TRAIN_PYTHON=${TRAIN_PYTHON:-.venv/bin/python}
"$TRAIN_PYTHON" -m deepserve.training fp16 --models models --out "$BUNDLE/models" \
  ${DATA:+--data "$DATA"}
# RESNET50=1: the ResNet-50 benchmark model travels too (about 100 MB, two more parts).
if [ "${RESNET50:-0}" = 1 ]; then
  "$TRAIN_PYTHON" -m deepserve.training resnet50 --out "$BUNDLE/models"
fi
# Wheels are deflate-compressed zips, which xz cannot shrink further: stored uncompressed
# (still valid wheels) under one xz stream, the bundle is about a quarter smaller, two parts
# (two commands on the host) fewer. The host unpacks it with Python's lzma module.
"$TRAIN_PYTHON" - "$BUNDLE/wheels" <<'EOF'
import os, sys, zipfile
from pathlib import Path

for wheel in Path(sys.argv[1]).glob("*.whl"):
    stored = wheel.with_suffix(".stored")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as out:
        for info in source.infolist():
            data = source.read(info)
            info.compress_type = zipfile.ZIP_STORED
            out.writestr(info, data)
    os.replace(stored, wheel)
EOF
(cd "$BUNDLE" && tar -cf - wheels $( [ -d models ] && echo models ) | xz -6 -T0 > bundle.tar.xz \
  && sha256sum bundle.tar.xz > bundle.tar.xz.sha256 \
  && split -b "$PART_SIZE" -d bundle.tar.xz part- && rm -rf wheels models bundle.tar.xz)
ls -la "$BUNDLE" > "$BUNDLE/MANIFEST"
cat "$BUNDLE/MANIFEST"
