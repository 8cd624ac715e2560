"""systemd units and Kubernetes manifests: validated offline, and consistent with btfd's CLI."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from btfd.server.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
BTFD = str(Path(sys.executable).with_name("btfd"))


def _units(tmp_path: Path) -> tuple[Path, Path]:
    """The units with ExecStart pointing at this checkout's btfd (verify checks it exists)."""
    svc = tmp_path / "btfd.service"
    svc.write_text((ROOT / "systemd" / "btfd.service").read_text().replace("/usr/local/bin/btfd", BTFD))
    sock = tmp_path / "btfd-fd.socket"
    shutil.copy(ROOT / "systemd" / "btfd-fd.socket", sock)
    return svc, sock


def _directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    svc, sock = _units(tmp_path)
    r = subprocess.run(["systemd-analyze", "verify", str(svc), str(sock)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "btfd" not in r.stderr, r.stderr  # no warning about our units


def test_systemd_security_exposure_is_low(tmp_path: Path) -> None:
    svc, _ = _units(tmp_path)
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(svc)], capture_output=True,
                       text=True, cwd=tmp_path, timeout=120)
    m = re.search(r"Overall exposure level for btfd.service: ([0-9.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.0  # recorded in docs/OPERATIONS.md


def test_service_hardening_and_arguments() -> None:
    d = _directives(ROOT / "systemd" / "btfd.service")
    assert d["Type"] == ["notify"] and d["Restart"] == ["on-failure"] and d["RuntimeDirectory"] == ["btfd"]
    assert d["CapabilityBoundingSet"] == [""] and d["NoNewPrivileges"] == ["yes"]
    assert d["ProtectSystem"] == ["strict"] and d["ProtectHome"] == ["yes"] and d["PrivateTmp"] == ["yes"]
    assert "@system-service" in d["SystemCallFilter"] and d["MemoryMax"]
    assert "AF_UNIX" in d["RestrictAddressFamilies"][0]
    argv = d["ExecStart"][0].split()
    assert argv[0].endswith("/btfd")
    args = build_parser().parse_args(argv[1:])  # the unit's flags are btfd's flags
    assert args.socket == "/run/btfd/btfd.sock" and args.socket_group == "btfd"
    sock = _directives(ROOT / "systemd" / "btfd-fd.socket")
    assert sock["ListenStream"] == [args.socket + ".fd"]  # the fd socket btfd expects to adopt
    drop = _directives(ROOT / "systemd" / "btfd.service.d" / "no-metrics.conf.example")
    assert drop["PrivateNetwork"] == ["yes"] and build_parser().parse_args(drop["ExecStart"][1].split()[1:]).metrics_address == "off"


MANIFESTS = ["namespace.yaml", "daemonset.yaml", "service.yaml", "agent-example.yaml"]


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_validates_offline(name: str) -> None:
    import kubernetes_validate

    for doc in yaml.safe_load_all((ROOT / "deploy" / name).read_text()):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)


def test_kustomization_and_daemonset() -> None:
    kust = yaml.safe_load((ROOT / "deploy" / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == sorted(m for m in MANIFESTS if m != "agent-example.yaml")
    ds = yaml.safe_load((ROOT / "deploy" / "daemonset.yaml").read_text())
    pod = ds["spec"]["template"]["spec"]
    [c] = pod["containers"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/sys/kernel/btf"]["readOnly"] is True and "/run/btfd" in mounts
    host = {v["name"]: v.get("hostPath", {}).get("path") for v in pod["volumes"]}
    assert host["kernel-btf"] == "/sys/kernel/btf" and host["sockets"] == "/run/btfd"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    assert c["readinessProbe"]["exec"]["command"][0] == "btfctl" and "health" in c["readinessProbe"]["exec"]["command"]
    args = build_parser().parse_args(c["args"])
    assert args.socket == "/run/btfd/btfd.sock"
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["memory"]


def test_containerfile_runs_as_non_root() -> None:
    text = (ROOT / "deploy" / "Containerfile").read_text()
    assert re.search(r"^USER \d+:\d+$", text, re.M) and "python:3.11-slim" in text
    assert 'ENTRYPOINT ["btfd"]' in text
