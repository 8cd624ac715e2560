"""Every BTF a node needs: external BTF (btfhub layout) and a fleet's view of CO-RE."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from btfd.btf import Kind, Spec
from btfd.core import resolve_object
from btfd.v1 import btfd_pb2 as pb
from tests.conftest import CORE_DATA, blob
from tests.server.conftest import BtfdProcess, btfhub_dir

BTFCTL = str(Path(sys.executable).with_name("btfctl"))
FLEET = {
    "k6.1-amd64": "vmlinux-6.1.0-56-amd64",
    "k6.1-arm64": "vmlinux-6.1.0-56-arm64",
    "k6.12-s390x": "vmlinux-6.12.95+deb12-s390x",
    "k6.18-amd64": "vmlinux-6.18-amd64",
}


def test_btf_dir_serves_the_running_release_when_the_kernel_has_none(tmp_path: Path) -> None:
    """btfhub layout: <release>.btf.tar.xz picked by `uname -r` when there is no vmlinux."""
    data = blob("vmlinux-6.1.0-56-amd64")
    nosys, hub = btfhub_dir(tmp_path, data)
    (hub / "0.0.0-other.btf").write_bytes(b"not this one")
    with BtfdProcess(tmp_path / "d", "--sysfs-btf-dir", str(nosys), "--btf-dir", str(hub),
                     "--metrics-address", "off") as d:
        [vm] = d.stub().GetInfo(pb.GetInfoRequest()).specs
        assert vm.type_count == 100750 and vm.mode == "sealed-memfd"
        assert "the kernel has no BTF" in d.log()
    r = subprocess.run([str(Path(sys.executable).with_name("btfd")), "--socket", str(tmp_path / "x.sock"),
                        "--sysfs-btf-dir", str(nosys), "--metrics-address", "off"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "CONFIG_DEBUG_INFO_BTF" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, kernel_vmlinux: Path):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("fleet")
    args = []
    for name, b in FLEET.items():
        (d / f"{b}.btf").write_bytes(blob(b))
        args += ["--btf", f"{name}={d / f'{b}.btf'}"]
    with BtfdProcess(d, *args, "--metrics-address", "off") as proc:
        yield proc


def _object(tmp: Path, name: str, arch: str) -> Path:
    """A corpus object as shipped (little-endian), or rebuilt by clang for big-endian BPF."""
    if arch == "bpfel":
        return CORE_DATA / "objs" / f"{name}.bpf.o"
    out = tmp / f"{name}.{arch}.o"
    subprocess.run(["clang", "-g", "-O2", "-target", arch, "-I", str(CORE_DATA / "src"), "-c",
                    str(CORE_DATA / "src" / f"{name}.bpf.c"), "-o", str(out)], check=True, timeout=120)
    return out


@pytest.mark.parametrize(("obj", "arch"), [("k_task_fields", "bpfel"), ("k_enums", "bpfel"),
                                           ("k_task_exists", "bpfel"), ("k_task_fields", "bpfeb")])
def test_fleet_matrix_agrees_with_each_kernel(fleet, tmp_path: Path, obj: str, arch: str) -> None:
    """`btfctl core OBJ --all-specs`: a verdict on every served kernel, each the same as
    resolving locally against that kernel alone; a kernel of the other byte order fails with
    the reason (libbpf refuses such an object) and the others still get their answers."""
    path = _object(tmp_path, obj, arch)
    r = subprocess.run([BTFCTL, "--socket", fleet.socket, "core", str(path), "--all-specs", "--json"],
                       capture_output=True, text=True, timeout=300)
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    rows = [x for x in lines if "verdicts" in x]
    summary = {x["spec"]: x["summary"] for x in lines if "summary" in x}
    assert rows and r.returncode in (0, 1), r.stderr
    assert set(summary) == {"vmlinux", *FLEET}
    data = path.read_bytes()
    obj_order = "little" if arch == "bpfel" else "big"
    for name, b in FLEET.items():
        target = Spec(blob(b))
        if target.byte_order != obj_order:
            assert summary[name]["verdict"] == "fails" and "endian" in summary[name]["refused"], name
            assert all(row["verdicts"][name]["status"] == "error" and "endian" in row["verdicts"][name]["error"]
                       for row in rows)
            continue
        local = resolve_object(data, target).records
        assert [row["verdicts"][name]["status"] for row in rows] == [x.status for x in local], name
        assert [row["verdicts"][name]["new_val"] for row in rows] == [
            (x.new_val & 0xFFFFFFFFFFFFFFFF) if x.status == "ok" else None for x in local], name
        statuses = {x.status for x in local}
        want = "fails" if "error" in statuses else "loads-with-poison" if "poison" in statuses else "loads"
        assert summary[name]["verdict"] == want and summary[name]["refused"] is None, name
    assert r.returncode == (1 if any(s["verdict"] == "fails" for s in summary.values()) else 0)


def test_resolve_core_rpc_with_a_list_of_specs(fleet) -> None:
    """One result per spec, in request order; the big-endian kernel is refused for this
    little-endian object (the others are unaffected); one spec alone is INVALID_ARGUMENT."""
    obj = (CORE_DATA / "objs" / "k_types.bpf.o").read_bytes()
    res = fleet.stub().ResolveCore(pb.ResolveCoreRequest(object=obj, specs=list(FLEET)), timeout=120)
    assert [r.spec for r in res.results] == list(FLEET)
    for r in res.results:
        target = Spec(blob(FLEET[r.spec]))
        if target.byte_order == "big":
            assert "big-endian" in r.refused and not r.relocations
            continue
        local = resolve_object(obj, target)
        assert not r.refused
        assert r.errors == local.errors and [x.status for x in r.relocations] == [x.status for x in local.records]
    with pytest.raises(grpc.RpcError) as e:
        fleet.stub().ResolveCore(pb.ResolveCoreRequest(object=obj, spec="k6.12-s390x"), timeout=60)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "endian" in (e.value.details() or "")


def test_big_endian_spec_is_served_as_is(fleet) -> None:
    specs = {s.name: s for s in fleet.stub().GetInfo(pb.GetInfoRequest()).specs}
    assert specs["k6.12-s390x"].byte_order == "big"
    t = fleet.stub().LookupType(pb.LookupTypeRequest(spec="k6.12-s390x", name="task_struct", kind=pb.KIND_STRUCT))
    assert t.types[0].size == Spec(blob("vmlinux-6.12.95+deb12-s390x")).find_one("task_struct", Kind.STRUCT).size


def test_resolve_core_finds_candidates_in_module_btf(tmp_path: Path) -> None:
    """A relocation on a type only a module has: poisoned against vmlinux alone, resolved
    when ResolveCore may look into module BTF (libbpf's order: vmlinux, then modules)."""
    src = tmp_path / "mod.bpf.c"
    src.write_text(
        "struct btrfs_fs_info { unsigned int nodesize; } __attribute__((preserve_access_index));\n"
        "__attribute__((section(\"kprobe/x\"), used))\n"
        "int prog(struct btrfs_fs_info *f) { return f->nodesize; }\n"
        "char LICENSE[] __attribute__((section(\"license\"), used)) = \"GPL\";\n"
    )
    obj = tmp_path / "mod.bpf.o"
    subprocess.run(["clang", "-g", "-O2", "-target", "bpf", "-c", str(src), "-o", str(obj)], check=True, timeout=120)
    sysfs = tmp_path / "sysfs"
    sysfs.mkdir()
    (sysfs / "vmlinux").write_bytes(blob("vmlinux-6.1.0-56-amd64"))
    (sysfs / "btrfs").write_bytes(blob("btrfs-6.1.0-56-amd64"))
    base = Spec(blob("vmlinux-6.1.0-56-amd64"))
    mod = Spec(blob("btrfs-6.1.0-56-amd64"), base=base)
    info = mod.find_one("btrfs_fs_info", Kind.STRUCT)
    assert not base.find_ids("btrfs_fs_info")
    want = next(m.bit_offset // 8 for m in info.members if m.name == "nodesize")
    with BtfdProcess(tmp_path / "d", "--sysfs-btf-dir", str(sysfs), "--metrics-address", "off") as d:
        data = obj.read_bytes()
        [alone] = d.stub().ResolveCore(pb.ResolveCoreRequest(object=data)).results
        [withm] = d.stub().ResolveCore(pb.ResolveCoreRequest(object=data, include_modules=True)).results
    [r0], [r1] = alone.relocations, withm.relocations
    assert r0.status == "poison"
    assert r1.status == "ok" and r1.new_val == want and r1.target_type_id == info.id
