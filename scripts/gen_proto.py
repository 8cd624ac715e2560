#!/usr/bin/env python3
"""Regenerate btfd/v1/*_pb2*.py and clients/go/btfdv1/*.pb.go from proto/btfd/v1/btfd.proto
(``--check``: fail if stale).

The proto path mirrors the package path, so the generated ``from btfd.v1 import btfd_pb2``
resolves inside the btfd package. The Go stubs come from Debian's protoc, protoc-gen-go and
protoc-gen-go-grpc (their versions are written into the files, so one toolchain regenerates
them byte for byte); the Go package is named on the command line (``M`` option), so the
``.proto`` carries no ``go_package`` and the Python code does not change with it.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = "btfd/v1/btfd.proto"
OUT = ROOT / "btfd" / "v1"
FILES = ("btfd_pb2.py", "btfd_pb2.pyi", "btfd_pb2_grpc.py")
GO_OUT = ROOT / "clients" / "go" / "btfdv1"
GO_PACKAGE = "btfd/clients/go/btfdv1"
GO_FILES = ("btfd.pb.go", "btfd_grpc.pb.go")
#: Debian packages providing the Go generators (`make sysdeps` installs them).
GO_TOOLS = {"protoc": "protobuf-compiler", "protoc-gen-go": "protoc-gen-go",
            "protoc-gen-go-grpc": "protoc-gen-go-grpc"}


def generate(dest: Path) -> None:
    include = Path(protoc.__file__).parent / "_proto"
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"-I{include}",
        f"--python_out={dest}", f"--pyi_out={dest}", f"--grpc_python_out={dest}", PROTO,
    ])
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc})")


def generate_go(dest: Path) -> None:
    missing = [f"{tool} (apt-get install {pkg})" for tool, pkg in GO_TOOLS.items() if not shutil.which(tool)]
    if missing:
        raise SystemExit(f"cannot generate the Go stubs, missing: {', '.join(missing)}")
    m = f"M{PROTO}={GO_PACKAGE};btfdv1"
    subprocess.run([
        "protoc", f"-I{ROOT / 'proto'}", f"--go_out={dest}", "--go_opt=paths=source_relative",
        f"--go_opt={m}", f"--go-grpc_out={dest}", "--go-grpc_opt=paths=source_relative",
        f"--go-grpc_opt={m}", PROTO,
    ], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        gen = Path(tmp) / "btfd" / "v1"
        go_tmp = Path(tmp) / "go"
        go_tmp.mkdir()
        generate_go(go_tmp)
        go_gen = go_tmp / "btfd" / "v1"
        pairs = [(gen / f, OUT / f) for f in FILES] + [(go_gen / f, GO_OUT / f) for f in GO_FILES]
        if args.check:
            stale = [
                str(out.relative_to(ROOT)) for new, out in pairs
                if not out.exists() or not filecmp.cmp(new, out, shallow=False)
            ]
            if stale:
                print(f"generated code is stale: {', '.join(stale)}; run `make proto`", file=sys.stderr)
                return 1
            print("generated code is up to date")
            return 0
        OUT.mkdir(parents=True, exist_ok=True)
        GO_OUT.mkdir(parents=True, exist_ok=True)
        for new, out in pairs:
            shutil.copyfile(new, out)
        (OUT / "__init__.py").write_text('"""Generated from proto/btfd/v1/btfd.proto."""\n')
    print(f"wrote {', '.join(FILES)} to {OUT.relative_to(ROOT)}, "
          f"{', '.join(GO_FILES)} to {GO_OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
