#!/usr/bin/env bash
# End-to-end check of the GPU image on a machine with Docker and an NVIDIA GPU: build, run with
# --gpus all, wait for the HEALTHCHECK, classify a digit through the SDK, stop. From the repo root:
#   bash docker/smoke.sh            (needs the deepserve SDK installed: pip install -e .)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-deepserve:gpu}
NAME=deepserve-smoke-$$
PORT=${PORT:-18001}

docker build -f docker/Dockerfile -t "$IMAGE" .
docker run -d --rm --name "$NAME" --gpus all -p "$PORT:8001" "$IMAGE"
trap 'docker stop -t 30 "$NAME" >/dev/null 2>&1 || true' EXIT

for _ in $(seq 1 60); do
  status=$(docker inspect -f '{{.State.Health.Status}}' "$NAME")
  [ "$status" = healthy ] && break
  sleep 5
done
echo "health: $status"
[ "$status" = healthy ]
docker logs "$NAME" 2>&1 | grep -i "execution providers" | head -3

python3 - "$PORT" <<'PY'
import sys
from deepserve import Client

result = Client(f"127.0.0.1:{sys.argv[1]}").classify("docs/images/digit-7.png", model="mnist")
print("classified:", result)
assert result.label == "7", result
PY
docker stop -t 30 "$NAME" >/dev/null
trap - EXIT
echo "smoke test passed"
