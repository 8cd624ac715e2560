"""deploy/Containerfile without a container engine (none runs here): the image name it documents
is the manifests' one, every base is pinned by digest, it builds from the checkout (no package
from an index but the dependencies), and its build step works on exactly the files it copies."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "deploy" / "Containerfile"


def _lines() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    out: list[str] = []
    cur = ""
    for line in CONTAINERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not cur:
            continue
        cur += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            if cur.strip():
                out.append(cur.strip())
            cur = ""
    return out


def test_image_name_is_the_manifests_one() -> None:
    built = re.findall(r"docker build -f deploy/Containerfile -t (\S+) \.", CONTAINERFILE.read_text())
    assert len(built) == 1
    used: set[str] = set()
    for f in ("daemonset.yaml", "agent-example.yaml"):
        for doc in yaml.safe_load_all((ROOT / "deploy" / f).read_text()):
            text = yaml.safe_dump(doc)
            used |= set(re.findall(r"image: (\S+)", text))
    kust = yaml.safe_load((ROOT / "deploy/kustomization.yaml").read_text())
    tagged = {f"{i['name']}:{i['newTag']}" for i in kust["images"]}
    assert used == tagged == {built[0]}
    assert f"-t {built[0]} ." in (ROOT / "docs/OPERATIONS.md").read_text()


def test_every_base_is_pinned_by_digest() -> None:
    lines = _lines()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", "\n".join(lines), re.M))
    froms = [x.split()[1] for x in lines if x.startswith("FROM ")]
    assert len(froms) == 2
    for ref in froms:
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref)
        assert re.fullmatch(r"[\w./:-]+@sha256:[0-9a-f]{64}", ref), ref
    assert "imagetools inspect" in CONTAINERFILE.read_text()  # how to update it


def test_the_build_step_works_on_the_copied_files(tmp_path: Path) -> None:
    """Copy what the Containerfile's COPY lines copy into an empty directory, run its RUN
    pip install there (into a prefix; dependencies are the registry's, so not fetched here),
    and check that btfd and btfctl were installed and import from that prefix."""
    ctx = tmp_path / "src"
    ctx.mkdir()
    lines = _lines()
    build = lines[: next(i for i, x in enumerate(lines) if x.startswith("FROM ") and i > 1)]
    workdir = ctx
    runs = []
    for x in build:
        if x.startswith("WORKDIR "):
            assert x.split()[1] == "/src"
        elif x.startswith("COPY "):
            *srcs, dst = shlex.split(x)[1:]
            for s in srcs:
                target = workdir / dst if dst not in ("./", ".") else workdir
                p = ROOT / s
                if p.is_dir():
                    shutil.copytree(p, workdir / dst, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(p, target / p.name)
        elif x.startswith("RUN "):
            runs.append(x[4:])
    assert len(runs) == 1 and runs[0].startswith("pip install ")
    assert "--index-url" not in runs[0] and "btfd==" not in runs[0]
    cmd = shlex.split(runs[0].replace("--prefix=/install", f"--prefix={tmp_path / 'install'}"))
    # In a fresh venv, as in the image: pip's --prefix is not isolated from the running
    # environment and would uninstall the dev venv's editable btfd first.
    venv.EnvBuilder(with_pip=False).create(tmp_path / "v")
    pip = str(Path(sys.executable).with_name("pip"))
    cmd = [pip, "--python", str(tmp_path / "v/bin/python"), *cmd[1:], "--no-deps", "-q"]
    r = subprocess.run(cmd, cwd=ctx, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = tmp_path / "install"
    assert (prefix / "bin/btfd").exists() and (prefix / "bin/btfctl").exists()
    site = next(prefix.glob("lib/python3*/site-packages"))
    for mod in ("btfd/server/main.py", "btfd/cli/__init__.py", "btfd/btf/spec.py", "btfd/shared.py",
                "btfd/v1/btfd_pb2.py", "btfd_client/__init__.py"):
        assert (site / mod).is_file(), mod
