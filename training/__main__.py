"""`python -m deepserve.training FAMILY [options]` (or `deepserve-train FAMILY ...`): train and
export one model family into the model repository, or `all` of them in turn.

    deepserve-train mnist --data ../shared/data/mnist --out models
    deepserve-train all --data ../shared/data/mnist --weights resnet20-cifar10-12fca82f.th --quick
    deepserve-train word_vectors --text /usr/share/doc/python3.11/html/_sources   # python3-doc
    deepserve-train fp16 --models models --out models     # FP16 variants, checked on held-out data
    deepserve-train quantize --models models --out models # INT8 variants, checked and timed
"""

from __future__ import annotations

import importlib
import sys

FAMILIES = {
    "mnist": "mnist",
    "cifar10_resnet20": "cifar10_resnet20",
    "resnet_transfer": "resnet_transfer",
    "ssd": "ssd",
    "segmentation": "segmentation",
    "lstm_reader": "lstm_reader",
    "date_translator": "date_translator",
    "cartpole_policy": "cartpole",
    "mnist_cgan": "cgan",
    "word_vectors": "word_vectors",
    # After ssd and mnist: the pipeline of them (and its reading accuracy).
    "read_number": "read_number",
}
# Made on request only (not trained, not part of `all`): a benchmark model.
EXTRA = {"resnet50": "resnet50"}
# Tools over an exported repository.
TOOLS = {"fp16": "fp16", "quantize": "quantize"}
# Options each family's command line takes, for `all` to pass on.
_TAKES = {
    "mnist": {"--data", "--out", "--seed", "--device", "--threads", "--quick", "--fp16"},
    "cifar10_resnet20": {"--weights", "--out", "--fp16", "--data"},
    "resnet_transfer": {
        "--data",
        "--out",
        "--weights",
        "--seed",
        "--device",
        "--threads",
        "--quick",
        "--fp16",
    },
    "ssd": {"--data", "--out", "--seed", "--device", "--threads", "--quick", "--fp16"},
    "segmentation": {"--data", "--out", "--seed", "--device", "--threads", "--quick", "--fp16"},
    "lstm_reader": {"--data", "--out", "--seed", "--threads", "--quick"},
    "date_translator": {"--out", "--seed", "--threads", "--quick"},
    "cartpole_policy": {"--out", "--seed", "--threads", "--quick"},
    "mnist_cgan": {"--data", "--out", "--seed", "--threads", "--quick"},
    "word_vectors": {"--text", "--out", "--seed", "--threads", "--quick"},
    "read_number": {"--data", "--out", "--threads", "--quick"},
}


def _run(family: str, argv: list[str]) -> int:
    module = importlib.import_module(f".{(FAMILIES | EXTRA | TOOLS)[family]}", __package__)
    return module.main(argv)


def _pick(argv: list[str], family: str) -> list[str]:
    """The options of `argv` that `family` takes (flags with their value)."""
    picked, i = [], 0
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        has_value = "=" not in argv[i] and i + 1 < len(argv) and not argv[i + 1].startswith("--")
        if name in _TAKES[family]:
            picked += argv[i : i + (2 if has_value else 1)]
        i += 2 if has_value else 1
    return picked


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in (*FAMILIES, *EXTRA, *TOOLS, "all"):
        print(__doc__)
        print("families:", ", ".join(FAMILIES), "or all; benchmark models:", ", ".join(EXTRA))
        print("tools:", ", ".join(TOOLS), "(FP16 and INT8 variants of exported models)")
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    family, rest = argv[0], argv[1:]
    if family != "all":
        return _run(family, rest)
    failed = [name for name in FAMILIES if _run(name, _pick(rest, name)) != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
