#!/usr/bin/env python3
"""Regenerate btfd/v1/*_pb2*.py from proto/btfd/v1/btfd.proto (``--check``: fail if stale).

The proto path mirrors the package path, so the generated ``from btfd.v1 import btfd_pb2``
resolves inside the btfd package.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = "btfd/v1/btfd.proto"
OUT = ROOT / "btfd" / "v1"
FILES = ("btfd_pb2.py", "btfd_pb2.pyi", "btfd_pb2_grpc.py")


def generate(dest: Path) -> None:
    include = Path(protoc.__file__).parent / "_proto"
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"-I{include}",
        f"--python_out={dest}", f"--pyi_out={dest}", f"--grpc_python_out={dest}", PROTO,
    ])
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        gen = Path(tmp) / "btfd" / "v1"
        if args.check:
            stale = [
                f for f in FILES
                if not (OUT / f).exists() or not filecmp.cmp(gen / f, OUT / f, shallow=False)
            ]
            if stale:
                print(f"generated code is stale: {', '.join(stale)}; run `make proto`", file=sys.stderr)
                return 1
            print("generated code is up to date")
            return 0
        OUT.mkdir(parents=True, exist_ok=True)
        for f in FILES:
            shutil.copyfile(gen / f, OUT / f)
        (OUT / "__init__.py").write_text('"""Generated from proto/btfd/v1/btfd.proto."""\n')
    print(f"wrote {', '.join(FILES)} to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
