#!/usr/bin/env bash
# Run on a machine WITH package-index access: fetch what a bare GPU host (Python 3.12, CUDA 13,
# cuDNN 9, no internet) needs to run the GPU benchmark, and cut it into parts that each fit in
# one 64 MiB file transfer.
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
PART_SIZE=${PART_SIZE:-60M}
BUNDLE=.gpu-bundle

rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/wheels"
download() {
  python3 -m pip download --quiet --only-binary=:all: --python-version "$PYTHON_VERSION" \
    --platform "$PLATFORM" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --dest "$BUNDLE/wheels" "$@"
}
# onnxruntime-gpu alone (its own dependencies are on the host or in the list below).
download --no-deps "onnxruntime-gpu==${ORT_GPU_VERSION}"
# deepserve's runtime dependencies, resolved for the host's Python, without onnxruntime (CPU).
download "grpcio>=1.81.1,<1.83" "protobuf>=6.33.5,<7" "tritonclient[grpc]>=2.73,<2.74" \
  "grpcio-health-checking>=1.81,<1.83" "grpcio-reflection>=1.81,<1.83" "uvloop>=0.19,<1" \
  "numpy>=1.26,<3" "flatbuffers" "coloredlogs" "packaging" "sympy"

# deepserve itself, as a pure-Python wheel of this checkout.
python3 -m pip wheel --quiet --no-deps --wheel-dir "$BUNDLE/wheels" .

(cd "$BUNDLE" && tar -cf bundle.tar wheels && sha256sum bundle.tar > bundle.tar.sha256 \
  && split -b "$PART_SIZE" -d bundle.tar part- && rm -rf wheels bundle.tar)
ls -la "$BUNDLE" > "$BUNDLE/MANIFEST"
cat "$BUNDLE/MANIFEST"
