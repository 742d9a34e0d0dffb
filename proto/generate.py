"""Generate the Python code of proto/ into sdk/ (the `deepserve` package).

    python proto/generate.py            # write
    python proto/generate.py --check    # exit 1 when the committed code differs

Needs grpcio-tools (the `dev` extra), at a version whose protoc matches the protobuf runtime
range in pyproject.toml.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ["deepserve/v1/vision.proto"]
# deepserve/... in the proto tree is the `deepserve` package, whose folder is sdk/.
PACKAGE_DIR = ROOT / "sdk"


def generate(out: Path) -> list[Path]:
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{ROOT / 'proto'}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p.relative_to(out) for p in out.rglob("*.py*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        stale = []
        for relative in generate(out):
            target = PACKAGE_DIR / relative.relative_to("deepserve")
            fresh = (out / relative).read_bytes()
            if args.check:
                if not target.is_file() or target.read_bytes() != fresh:
                    stale.append(str(target.relative_to(ROOT)))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(fresh)
                print(f"wrote {target.relative_to(ROOT)}")
    if stale:
        print("generated code is stale, run python proto/generate.py:", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
