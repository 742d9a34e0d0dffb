#!/usr/bin/env bash
# Run on the bare GPU host, from the repository root, one step per command:
#
#   bash loadtests/gpu/remote.sh receive .gpu-bundle/part-00   # once per part, any order;
#   bash loadtests/gpu/remote.sh receive .gpu-bundle/part-01   # each command brings one part
#   ...                                                         # (and bundle.tar.xz.sha256 once)
#   bash loadtests/gpu/remote.sh install                        # join, verify, pip --target
#   bash loadtests/gpu/remote.sh bench OUT_DIR [MODELS...]      # server on CUDA + benchmark
#   bash loadtests/gpu/remote.sh hostpath OUT_DIR [MODEL]       # plain / IOBinding / pinned / graphs
#   bash loadtests/gpu/remote.sh answers OUT_DIR [MODELS...]    # served on CUDA vs the CPU
#   bash loadtests/gpu/remote.sh tests OUT_DIR                  # pytest -m cuda
#   bash loadtests/gpu/remote.sh split OUT_DIR [MODEL]          # front ends 1..8 (resnet50)
#   bash loadtests/gpu/remote.sh generate OUT_DIR               # the date translator's decode loop
#   bash loadtests/gpu/remote.sh pipeline OUT_DIR               # read_number vs its stages, by hand
#
# Parts wait in $STAGE (default /tmp/deepserve-gpu). The benchmark runs each model (default:
# mnist cifar10_resnet20) at concurrency $CONCURRENCY (1 to 256) with $IMAGES images per request
# (1 and 8) on CUDA (TensorRT where the model's config asks for it) and writes JSON + PNG to
# OUT_DIR, plus environment facts in OUT_DIR/environment.txt. DEVICE=cpu dry-runs any step.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
STAGE=${STAGE:-/tmp/deepserve-gpu}
SITE="$STAGE/site"
PYTHON=${PYTHON:-python3}
CONCURRENCY=${CONCURRENCY:-1,2,4,8,16,32,64,128,256}
IMAGES=${IMAGES:-1,8}
mkdir -p "$STAGE"

# The bundled repository, or the stage's for models that came with the bundle or were made here
# (resnet50, the FP16 variants).
repository_of() {
  if [ -d "$STAGE/models/$1" ]; then echo "$STAGE/models"; else echo models; fi
}

# A measuring step's output folder, made, with the bundle's packages first on the path.
output_folder() {
  mkdir -p "$1"
  export PYTHONPATH="$SITE:${PYTHONPATH:-}"
}

step=${1:-}
shift || true
case "$step" in
  receive)
    for file in "$@"; do cp "$file" "$STAGE/"; done
    ls -la "$STAGE"
    ;;
  install)
    cd "$STAGE"
    cat part-* > bundle.tar.xz
    sha256sum -c bundle.tar.xz.sha256
    # Python's lzma: the host may have no xz command.
    "$PYTHON" -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(".", filter="data")' \
      bundle.tar.xz && rm -f bundle.tar.xz part-*
    "$PYTHON" -m pip install --quiet --no-deps --no-index --target "$SITE" wheels/*.whl
    PYTHONPATH="$SITE" "$PYTHON" -c \
      'import onnxruntime as o; print(o.__version__, o.get_available_providers())'
    # The ResNet-50 benchmark model, made here where torch is (it is 100 MB to carry otherwise).
    if [ ! -d "$STAGE/models/resnet50" ] && "$PYTHON" -c 'import torch, torchvision' 2>/dev/null; then
      cd - >/dev/null
      PYTHONPATH="$SITE" "$PYTHON" -m deepserve.training resnet50 --out "$STAGE/models"
    fi
    # Its FP16 variant: the CUDA provider in FP16, where TensorRT is not installed (random
    # weights: nothing to measure; the answers step compares GPU and CPU).
    if [ -d "$STAGE/models/resnet50" ] && [ ! -d "$STAGE/models/resnet50_fp16" ]; then
      (cd "$ROOT" && PYTHONPATH="$SITE" "$PYTHON" -m deepserve.training fp16 resnet50 \
        --models "$STAGE/models" --out "$STAGE/models" --no-check) \
        || echo "no resnet50_fp16 (the FP16 tool needs torch and onnxconverter-common)"
    fi
    ;;
  bench)
    out=${1:?bench needs an output folder}
    shift || true
    models=("$@")
    [ ${#models[@]} -gt 0 ] || models=(mnist cifar10_resnet20)
    output_folder "$out"
    { nvidia-smi || true; "$PYTHON" --version; "$PYTHON" -c \
      'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'
    } > "$out/environment.txt" 2>&1
    for model in "${models[@]}"; do
      repository=$(repository_of "$model")
      for images in ${IMAGES//,/ }; do
        "$PYTHON" -m loadtests.bench --model "$model" --model-repository "$repository" \
          --device "${DEVICE:-cuda}" --modes "${MODES:-batching,noop}" \
          --concurrency "$CONCURRENCY" --max-batch-size 256 --images-per-request "$images" \
          --duration "${DURATION:-5}" --warmup "${WARMUP:-1}" --out "$out" 2>&1 \
          | tee "$out/bench-$model-$images.log"
      done
    done
    ;;
  hostpath)
    # How a batch reaches the model: plain, IOBinding, pinned buffers, CUDA graphs, on and off.
    out=${1:?hostpath needs an output folder}
    model=${2:-resnet50}
    repository=$(repository_of "$model")
    output_folder "$out"
    "$PYTHON" -m loadtests.host_device --model "$model" --model-repository "$repository" \
      --device "${DEVICE:-cuda}" --batches "${BATCHES:-1,8,32,64,128}" \
      --seconds "${SECONDS_PER_POINT:-1}" --out "$out" 2>&1 | tee "$out/hostpath-$model.log"
    ;;
  answers)
    # Served answers on the device against in-process ONNX Runtime on the CPU (FP16 variants
    # against their FP32 source): the same top-1, detections and mask pixels.
    out=${1:?answers needs an output folder}
    shift || true
    names=$(IFS=,; echo "$*")
    output_folder "$out"
    extra=()
    [ -d "$STAGE/models" ] && extra=(--extra-repository "$STAGE/models")
    "$PYTHON" -m loadtests.answers_check --device "${DEVICE:-cuda}" --model-repository models \
      "${extra[@]}" ${names:+--models "$names"} --out "$out" 2>&1 | tee "$out/answers.log"
    ;;
  tests)
    # The tests marked cuda (skipped on a CPU): the server on CUDA, the host-device path.
    out=${1:?tests needs an output folder}
    output_folder "$out"
    # Test modules that need packages the bundle leaves out (Triton's HTTP client) are passed
    # over: none of them holds a cuda test.
    "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider --continue-on-collection-errors tests 2>&1 \
      | tee "$out/tests-cuda.log"
    ;;
  split)
    # The split server on a many-core host: the no-op transport ceiling with 0 (one process),
    # 1, 2, 4 and 8 front ends, then one image per request through 4 front ends against the
    # in-process compute ceiling at the best batch; then the engine's own ceiling.
    out=${1:?split needs an output folder}
    model=${2:-resnet50}
    repository=$(repository_of "$model")
    output_folder "$out"
    "$PYTHON" -m loadtests.split_bench --model "$model" --model-repository "$repository" \
      --device "${DEVICE:-cuda}" --modes noop --frontends "${FRONTENDS:-0,1,2,4,8}" \
      --concurrency 256 --max-batch-size 256 --load-processes "${LOAD_PROCESSES:-6}" \
      --channels 8 --duration "${DURATION:-5}" --out "$out" 2>&1 | tee "$out/split-$model.log"
    "$PYTHON" -m loadtests.bench --model "$model" --model-repository "$repository" \
      --device "${DEVICE:-cuda}" --modes batching,noop --concurrency 64,256 --max-batch-size 256 \
      --frontends "${MODEL_FRONTENDS:-4}" --load-processes "${LOAD_PROCESSES:-6}" --channels 8 \
      --duration "${DURATION:-5}" --out "$out/frontends-${MODEL_FRONTENDS:-4}" 2>&1 | tee "$out/bench-split-$model.log"
    # The engine alone, fed as fast as its socket allows: what the front ends could be given.
    "$PYTHON" -m loadtests.engine_ceiling --model "$model" --model-repository "$repository" \
      --device "${DEVICE:-cuda}" --modes noop --job-sizes "${JOB_SIZES:-1,8,32}" --windows 1,16 \
      --duration "${DURATION:-5}" --warmup "${WARMUP:-1}" --out "$out"  # its table: the output
    ;;
  generate)
    # The date translator's decode loop on the device: continuous against request-level
    # batching, streamed and whole answers (2 files). The server split in $GEN_FRONTENDS front
    # ends (default 4; 0: one process) and the streams spread over $LOAD_PROCESSES client
    # processes (default 4), so that on a host with cores to spare the engine's decode loop,
    # not the transport, bounds tokens/s.
    out=${1:?generate needs an output folder}
    output_folder "$out"
    for answers in streamed whole; do
      "$PYTHON" -m loadtests.generate_bench --device "${DEVICE:-cuda}" --answers "$answers" \
        --frontends "${GEN_FRONTENDS:-4}" --load-processes "${LOAD_PROCESSES:-4}" \
        --concurrency "${CONCURRENCY:-1,16,64}" --duration "${DURATION:-5}" --out "$out" 2>&1 \
        | tee "$out/generate-$answers.log"
    done
    ;;
  pipeline)
    # The read_number ensemble against its slowest stage alone and the chain by hand (2 files).
    out=${1:?pipeline needs an output folder}
    output_folder "$out"
    "$PYTHON" -m loadtests.pipeline_bench --device "${DEVICE:-cuda}" \
      --concurrency "${CONCURRENCY:-1,16,64}" --seconds "${DURATION:-4}" --out "$out" 2>&1 \
      | tee "$out/pipeline.log"
    ;;
  *)
    sed -n '2,21p' "$0"
    exit 2
    ;;
esac
