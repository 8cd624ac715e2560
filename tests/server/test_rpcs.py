"""Every RPC of btfd.v1.Btf against the real daemon over its real Unix socket."""

from __future__ import annotations

import fnmatch
import json
import lzma
import re
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from btfd.btf import Kind, Spec, Struct
from btfd.v1 import btfd_pb2 as pb
from tests.conftest import CORE_DATA, blob

VMLINUX = Path("/sys/kernel/btf/vmlinux")


@pytest.fixture(scope="module")
def local(kernel_vmlinux: Path) -> Spec:
    """The same BTF parsed in the test process, as the reference."""
    return Spec(kernel_vmlinux.read_bytes())


def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as exc:
        call()
    return exc.value.code()  # type: ignore[no-any-return]


def test_get_info(kernel_daemon, local: Spec) -> None:
    info = kernel_daemon.stub().GetInfo(pb.GetInfoRequest())
    specs = {s.name: s for s in info.specs}
    vm = specs["vmlinux"]
    assert vm.mode == "kernel-mmap" and vm.path == str(VMLINUX)
    assert vm.type_count == local.count and vm.size == VMLINUX.stat().st_size
    assert vm.byte_order == "little" and vm.loaded and vm.fd_socket == kernel_daemon.fd_socket
    # built before ready, in the memfd shared with agents: nothing private
    assert vm.index_bytes["shared"] > 0 and vm.index_bytes["names"] == vm.index_bytes["offsets"] == 0
    fleet = specs["fleet-6.1"]
    assert fleet.mode == "sealed-memfd" and fleet.type_count == 100750  # MANIFEST's count
    assert info.fd_socket == kernel_daemon.fd_socket and info.kernel_release


def test_lookup_by_name_matches_library(kernel_daemon, local: Spec) -> None:
    stub = kernel_daemon.stub()
    r = stub.LookupType(pb.LookupTypeRequest(name="task_struct", kind=pb.KIND_STRUCT))
    ref = local.find_one("task_struct", Kind.STRUCT)
    assert isinstance(ref, Struct)
    [t] = r.types
    assert (t.id, t.size, t.name, t.spec) == (ref.id, ref.size, "task_struct", "vmlinux")
    assert [(m.name, m.type_id, m.bit_offset, m.bitfield_size) for m in t.members] == [
        (m.name, m.type, m.bit_offset, m.bitfield_size) for m in ref.members
    ]
    # Without a kind, every type of that name comes back (e.g. a struct and its typedef).
    names = {t.kind for t in stub.LookupType(pb.LookupTypeRequest(name="u32")).types}
    assert pb.KIND_TYPEDEF in names


def test_lookup_by_id_and_depth(kernel_daemon, local: Spec) -> None:
    stub = kernel_daemon.stub()
    tid = local.find_ids("list_head", Kind.STRUCT)[0]
    r = stub.LookupType(pb.LookupTypeRequest(id=tid, depth=2))
    assert r.types[0].name == "list_head"
    # list_head -> pointer to list_head: the pointer is referenced, list_head itself not again.
    ref_ids = [t.id for t in r.referenced]
    assert len(ref_ids) == len(set(ref_ids)) and tid not in ref_ids
    assert any(t.kind == pb.KIND_PTR and t.type_id == tid for t in r.referenced)


def test_lookup_in_another_spec(kernel_daemon) -> None:
    r = kernel_daemon.stub().LookupType(pb.LookupTypeRequest(spec="fleet-6.1", name="task_struct",
                                                             kind=pb.KIND_STRUCT))
    old = Spec(blob("vmlinux-6.1.0-56-amd64")).find_one("task_struct", Kind.STRUCT)
    assert r.types[0].spec == "fleet-6.1" and r.types[0].id == old.id


def test_lookup_errors_keep_the_daemon_serving(kernel_daemon) -> None:
    stub = kernel_daemon.stub()
    assert _code(lambda: stub.LookupType(pb.LookupTypeRequest(name="no_such_type_xyz"))) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: stub.LookupType(pb.LookupTypeRequest(spec="nope", name="x"))) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: stub.LookupType(pb.LookupTypeRequest(id=10**7))) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: stub.LookupType(pb.LookupTypeRequest())) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: stub.LookupType(pb.LookupTypeRequest(name="x", kind=77))) == grpc.StatusCode.INVALID_ARGUMENT
    assert stub.LookupType(pb.LookupTypeRequest(name="task_struct")).types


@pytest.mark.parametrize("match,pattern", [
    (pb.NAME_MATCH_GLOB, "bpf_*map*"),
    (pb.NAME_MATCH_PREFIX, "tcp_"),
    (pb.NAME_MATCH_EXACT, "list_head"),
])
def test_list_types_filters_and_pages(kernel_daemon, local: Spec, match: int, pattern: str) -> None:
    stub = kernel_daemon.stub()
    got = []
    pages = 0
    for page in stub.ListTypes(pb.ListTypesRequest(kind=pb.KIND_STRUCT, name=pattern, match=match,
                                                   page_size=7)):
        assert len(page.types) <= 7
        pages += 1
        got.extend((t.id, t.name) for t in page.types)
    ok = {
        pb.NAME_MATCH_GLOB: lambda n: fnmatch.fnmatchcase(n, pattern),
        pb.NAME_MATCH_PREFIX: lambda n: n.startswith(pattern),
        pb.NAME_MATCH_EXACT: lambda n: n == pattern,
    }[match]
    want = [(t.id, t.name) for t in local.types(Kind.STRUCT) if ok(t.name)]
    assert got == want and want
    assert pages == max(1, -(-len(want) // 7))


def test_list_types_resume_and_limit(kernel_daemon) -> None:
    stub = kernel_daemon.stub()
    first = list(stub.ListTypes(pb.ListTypesRequest(page_size=100, limit=250)))
    ids = [t.id for p in first for t in p.types]
    assert len(ids) == 250 and ids == list(range(1, 251))
    resumed = list(stub.ListTypes(pb.ListTypesRequest(page_size=100, start_id=first[0].next_start_id, limit=10)))
    assert [t.id for p in resumed for t in p.types] == list(range(101, 111))
    assert _code(lambda: list(stub.ListTypes(pb.ListTypesRequest(page_size=10**6)))) == grpc.StatusCode.INVALID_ARGUMENT


def test_read_raw_equals_the_file(kernel_daemon) -> None:
    stub = kernel_daemon.stub()
    data = VMLINUX.read_bytes()
    chunks = list(stub.ReadRaw(pb.ReadRawRequest(offset=1000, length=600_000)))
    assert all(len(c.data) <= 256 * 1024 for c in chunks) and len(chunks) == 3
    assert b"".join(c.data for c in chunks) == data[1000:601000]
    assert [c.offset for c in chunks] == [1000, 1000 + 262144, 1000 + 2 * 262144]
    tail = list(stub.ReadRaw(pb.ReadRawRequest(offset=len(data) - 10, length=10, chunk_size=4)))
    assert b"".join(c.data for c in tail) == data[-10:]
    bad = pb.ReadRawRequest(offset=len(data) - 10, length=11)
    assert _code(lambda: list(stub.ReadRaw(bad))) == grpc.StatusCode.OUT_OF_RANGE
    assert _code(lambda: list(stub.ReadRaw(pb.ReadRawRequest(spec="nope", length=1)))) == grpc.StatusCode.NOT_FOUND


def test_oversized_request_is_refused(kernel_daemon) -> None:
    stub = kernel_daemon.stub()
    big = pb.ResolveCoreRequest(object=b"\0" * (17 << 20))
    assert _code(lambda: stub.ResolveCore(big)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.GetInfo(pb.GetInfoRequest()).specs


def _expected(target: str, obj: str) -> list[dict]:  # type: ignore[type-arg]
    rows = lzma.decompress((CORE_DATA / "expected" / f"{target}.jsonl.xz").read_bytes()).decode().splitlines()
    return [r for r in map(json.loads, rows) if r["obj"] == obj]


def test_resolve_core_against_several_specs(kernel_daemon) -> None:
    """The fleet view: one object, verdicts on two kernels, each agreeing with libbpf's."""
    obj = "k_task_fields.bpf.o"
    req = pb.ResolveCoreRequest(object=(CORE_DATA / "objs" / obj).read_bytes(), specs=["fleet-6.1"],
                                want_patched=True)
    [res] = kernel_daemon.stub().ResolveCore(req).results
    want = _expected("vmlinux-6.1.0-56", obj)
    assert res.spec == "fleet-6.1" and len(res.relocations) == len(want) > 0
    for got, exp in zip(res.relocations, want, strict=True):
        assert (got.sec, got.insn, got.kind, got.status) == (exp["sec"], exp["insn"], exp["kind"], exp["status"])
        if exp["status"] == "ok":
            assert got.new_val == exp["new_val"] & 0xFFFFFFFFFFFFFFFF
    assert res.programs and all(len(p.insns) % 8 == 0 for p in res.programs)


def test_resolve_core_bad_object(kernel_daemon) -> None:
    stub = kernel_daemon.stub()
    assert _code(lambda: stub.ResolveCore(pb.ResolveCoreRequest(object=b"not an ELF"))) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: stub.ResolveCore(pb.ResolveCoreRequest())) == grpc.StatusCode.INVALID_ARGUMENT
    assert stub.GetInfo(pb.GetInfoRequest()).specs


def test_minimize_btf_keeps_the_answers(kernel_daemon) -> None:
    from btfd.core import resolve_object

    obj = (CORE_DATA / "objs" / "k_task_fields.bpf.o").read_bytes()
    r = kernel_daemon.stub().MinimizeBtf(pb.MinimizeBtfRequest(spec="fleet-6.1", objects=[obj]))
    small = Spec(r.btf)
    assert small.count == r.type_count and 0 < len(r.btf) < 100_000
    full = Spec(blob("vmlinux-6.1.0-56-amd64"))
    a = [(x.insn, x.status, x.new_val) for x in resolve_object(obj, full).records]
    b = [(x.insn, x.status, x.new_val) for x in resolve_object(obj, small).records]
    assert a == b


def test_health_and_reflection(kernel_daemon) -> None:
    ch = kernel_daemon.channel()
    h = health_pb2_grpc.HealthStub(ch)
    assert h.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    assert h.Check(health_pb2.HealthCheckRequest(service="btfd.v1.Btf")).status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(ch)
    [resp] = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    services = {s.name for s in resp.list_services_response.service}
    assert {"btfd.v1.Btf", "grpc.health.v1.Health"} <= services
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= services


def test_reflection_v1_answers_like_v1alpha(kernel_daemon) -> None:
    """grpcurl asks /grpc.reflection.v1.ServerReflection first: same messages on the wire."""
    ch = kernel_daemon.channel()
    call = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    reqs = [reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="btfd.v1.Btf")]
    listed, described = list(call(iter(reqs), timeout=10))
    assert "btfd.v1.Btf" in {s.name for s in listed.list_services_response.service}
    from google.protobuf import descriptor_pb2

    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in described.file_descriptor_response.file_descriptor_proto]
    assert any(f.name == "btfd/v1/btfd.proto" and f.service[0].name == "Btf" for f in files)


def test_metrics_memory_first(kernel_daemon) -> None:
    kernel_daemon.stub().LookupType(pb.LookupTypeRequest(name="task_struct"))
    text = urllib.request.urlopen(kernel_daemon.metrics_url, timeout=10).read().decode()
    for kind in ("rss", "pss", "uss", "anonymous"):
        assert f"\nbtfd_memory_{kind}_bytes " in text
    assert 'btfd_spec_bytes{mode="kernel-mmap",spec="vmlinux"}' in text
    assert re.search(r'btfd_spec_index_bytes{index="shared",spec="vmlinux"} [1-9]', text)
    assert 'btfd_requests_total{code="OK",method="LookupType"}' in text
    assert "btfd_request_duration_seconds_bucket" in text
    uss = float(next(line.split()[-1] for line in text.splitlines() if line.startswith("btfd_memory_uss_bytes ")))
    assert uss > 0
