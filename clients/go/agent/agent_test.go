package agent_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	btfd "btfd/clients/go"
	"btfd/clients/go/agent"
)

// These tests load real programs into the running kernel (root with CAP_BPF) against a real
// btfd (tests/clients/test_go.py passes its socket in $BTFD_SOCKET); they fail without them.

func client(t *testing.T) *btfd.Client {
	t.Helper()
	socket := os.Getenv("BTFD_SOCKET")
	if socket == "" {
		t.Fatal("$BTFD_SOCKET must name a running btfd's socket (run through tests/clients/test_go.py)")
	}
	c, err := btfd.Dial(context.Background(), socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// build compiles testdata/<name>.bpf.c with clang as any CO-RE project does.
func build(t *testing.T, name string) []byte {
	t.Helper()
	// bpf_tracing.h's arch, and Debian's multiarch include directory (asm/ headers).
	target := map[string]struct{ arch, multiarch string }{
		"amd64": {"x86", "x86_64-linux-gnu"}, "arm64": {"arm64", "aarch64-linux-gnu"},
		"s390x": {"s390", "s390x-linux-gnu"}, "ppc64le": {"powerpc", "powerpc64le-linux-gnu"},
	}[runtime.GOARCH]
	arch, multiarch := target.arch, target.multiarch
	if arch == "" {
		t.Fatalf("no BPF target arch for GOARCH %s", runtime.GOARCH)
	}
	out := filepath.Join(t.TempDir(), name+".o")
	cmd := exec.Command("clang", "-g", "-O2", "-target", "bpf", "-D__TARGET_ARCH_"+arch,
		"-I/usr/include/"+multiarch, "-c", filepath.Join("testdata", name+".bpf.c"), "-o", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, msg)
	}
	obj, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// ids mirrors struct ids in testdata/task_ids.bpf.c.
type ids struct {
	Pid, Tgid, Ppid, HelperPid, HelperTgid, HasPid, HasNope uint32
}

func TestCOREReadsTheRightFields(t *testing.T) {
	obj := build(t, "task_ids")
	c := client(t)
	for _, route := range []agent.Route{agent.RouteMinimize, agent.RoutePatched, agent.RouteAuto} {
		t.Run(route.String(), func(t *testing.T) {
			res, err := agent.Load(context.Background(), c, obj, agent.Options{Route: route})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			if took := res.Route; took != route && !(route == agent.RouteAuto && took == agent.RouteMinimize) {
				t.Errorf("route %v took %v", route, took)
			}
			switch res.Route {
			case agent.RouteMinimize:
				if len(res.MinimalBTF) == 0 || len(res.MinimalBTF) > 4096 {
					t.Errorf("minimal BTF of %d bytes", len(res.MinimalBTF))
				}
			case agent.RoutePatched:
				if res.Relocations["ok"] == 0 || res.Relocations["error"] != 0 {
					t.Errorf("relocations %v", res.Relocations)
				}
			}
			l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter",
				Program: res.Collection.Programs["on_getpid"]})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()

			runtime.LockOSThread() // getpid from a known thread: the map is keyed by its id
			tid := unix.Gettid()
			pid := syscall.Getpid() // a real getpid(2): Go does not cache it
			runtime.UnlockOSThread()

			var got ids
			if err := res.Collection.Maps["seen"].Lookup(uint32(tid), &got); err != nil {
				t.Fatalf("no entry for thread %d: %v (the CO-RE read of task->pid is wrong, or the program did not run)", tid, err)
			}
			want := ids{Pid: uint32(tid), Tgid: uint32(pid), Ppid: uint32(os.Getppid()),
				HelperPid: uint32(tid), HelperTgid: uint32(pid), HasPid: 1, HasNope: 0}
			if got != want {
				t.Fatalf("CO-RE reads %+v, want %+v", got, want)
			}
		})
	}
}

func TestMinimalBTFIsWhatCiliumParses(t *testing.T) {
	obj := build(t, "task_ids")
	spec, raw, err := agent.MinimalSpec(context.Background(), client(t), "", obj)
	if err != nil {
		t.Fatal(err)
	}
	var ts *btf.Struct
	if err := spec.TypeByName("task_struct", &ts); err != nil {
		t.Fatal(err)
	}
	// Only what the relocations touch: pid, tgid, real_parent, at the kernel's offsets.
	kernel := map[string]uint32{}
	for _, m := range ts.Members {
		kernel[m.Name] = uint32(m.Offset)
	}
	for _, f := range []string{"pid", "tgid", "real_parent"} {
		if _, ok := kernel[f]; !ok {
			t.Errorf("minimal task_struct lacks %s: %v", f, kernel)
		}
	}
	if len(ts.Members) > 3 || ts.Size < 1000 {
		t.Errorf("minimal task_struct: %d members, size %d", len(ts.Members), ts.Size)
	}
	// The magic in the host's byte order, and no ENUM64 (kind 19) that 0.9.1 could not parse.
	if binary.LittleEndian.Uint16(raw) != 0xeb9f && binary.BigEndian.Uint16(raw) != 0xeb9f {
		t.Fatalf("not raw BTF: % x", raw[:4])
	}
	if hasKind(raw, 19) {
		t.Error("the minimal BTF has an ENUM64")
	}
	iter := spec.Iterate()
	n := 0
	for iter.Next() {
		n++
	}
	if n < 3 {
		t.Errorf("%d types", n)
	}
}

// perf_callchain_context is an ENUM64 in the BTF of kernels >= 6.0 built with pahole >= 1.24
// (this one): the minimal BTF then holds it, which cilium/ebpf 0.9.1 cannot parse; the patched
// route (and auto, falling back to it) loads the program, and the CO-RE'd value is the
// kernel's 64-bit one.
func TestENUM64(t *testing.T) {
	obj := build(t, "enum64")
	c := client(t)
	_, raw, _ := agent.MinimalSpec(context.Background(), c, "", obj)
	if len(raw) == 0 {
		t.Fatal("MinimizeBtf returned nothing")
	}
	enum64 := hasKind(raw, 19)
	t.Logf("the minimal BTF (%d bytes) has an ENUM64: %v", len(raw), enum64)
	auto := agent.RouteMinimize
	if enum64 {
		auto = agent.RoutePatched
	}
	kernelKernel := uint64(1<<64 - 128) // PERF_CONTEXT_KERNEL, (__u64)-128 in linux/perf_event.h
	for _, tc := range []struct {
		route, took agent.Route
	}{
		{agent.RouteMinimize, agent.RouteMinimize},
		{agent.RoutePatched, agent.RoutePatched},
		{agent.RouteAuto, auto},
	} {
		t.Run(tc.route.String(), func(t *testing.T) {
			res, err := agent.Load(context.Background(), c, obj, agent.Options{Route: tc.route})
			if tc.route == agent.RouteMinimize && enum64 {
				if !errors.Is(err, agent.ErrENUM64) {
					t.Fatalf("got %v, want ErrENUM64", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			if res.Route != tc.took {
				t.Errorf("took route %v, want %v", res.Route, tc.took)
			}
			l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter",
				Program: res.Collection.Programs["enum_values"]})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			_ = syscall.Getpid()
			var exists, value uint64
			out := res.Collection.Maps["out"]
			if err := out.Lookup(uint32(0), &exists); err != nil || exists != 1 {
				t.Fatalf("enum value exists: %d (%v), want 1", exists, err)
			}
			if err := out.Lookup(uint32(1), &value); err != nil || value != kernelKernel {
				t.Fatalf("PERF_CONTEXT_KERNEL: %#x (%v), want %#x", value, err, kernelKernel)
			}
		})
	}
}

func TestUnguardedMissingFieldIsRefused(t *testing.T) {
	obj := build(t, "missing_field")
	c := client(t)
	for _, route := range []agent.Route{agent.RouteMinimize, agent.RoutePatched} {
		t.Run(route.String(), func(t *testing.T) {
			res, err := agent.Load(context.Background(), c, obj, agent.Options{Route: route})
			if err == nil {
				res.Close()
				t.Fatal("a program reading a field no kernel has loaded")
			}
			// libbpf's poison: a call to the helper 0xbad2310 the verifier does not know.
			if !strings.Contains(err.Error(), "195896080") {
				t.Fatalf("%v: want the verifier refusing the poisoned instruction", err)
			}
		})
	}
}

func TestBadObjects(t *testing.T) {
	c := client(t)
	for _, tc := range []struct {
		name string
		obj  []byte
	}{
		{"empty", nil},
		{"not ELF", []byte("definitely not an object")},
		{"truncated", build(t, "task_ids")[:200]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := agent.MinimalSpec(context.Background(), c, "", tc.obj)
			if status.Code(errors.Unwrap(err)) != codes.InvalidArgument {
				t.Fatalf("MinimizeBtf: %v, want INVALID_ARGUMENT", err)
			}
			if _, err := agent.Load(context.Background(), c, tc.obj, agent.Options{}); err == nil {
				t.Fatal("Load accepted it")
			}
		})
	}
}

// What the btfd routes replace: cilium/ebpf parsing the kernel's BTF itself. 0.9.1 cannot
// parse a kernel's BTF that has ENUM64 (kind 19; kernels >= 6.0 with pahole >= 1.24);
// where it can, it must read the same fields.
func TestKernelRouteForReference(t *testing.T) {
	obj := build(t, "task_ids")
	res, err := agent.LoadKernel(obj, ebpf.CollectionOptions{})
	if err != nil {
		if !errors.Is(err, agent.ErrKernelBTF) {
			t.Fatal(err)
		}
		raw, rerr := os.ReadFile("/sys/kernel/btf/vmlinux")
		if rerr != nil || !hasKind(raw, 19) {
			t.Fatalf("cilium/ebpf failed on a kernel BTF without ENUM64: %v", err)
		}
		t.Logf("as expected on this kernel (its BTF has ENUM64): %v", err)
		return
	}
	res.Close()
}

// hasKind walks raw BTF's type section for a kind (host byte order).
func hasKind(raw []byte, kind uint32) bool {
	bo := binary.ByteOrder(binary.LittleEndian)
	if bo.Uint16(raw) != 0xeb9f {
		bo = binary.BigEndian
	}
	hdrLen, typeOff, typeLen := bo.Uint32(raw[4:]), bo.Uint32(raw[8:]), bo.Uint32(raw[12:])
	types := raw[hdrLen+typeOff : hdrLen+typeOff+typeLen]
	for off := 0; off+12 <= len(types); {
		info := bo.Uint32(types[off+4:])
		k, vlen := (info>>24)&0x1f, int(info&0xffff)
		if k == kind {
			return true
		}
		off += 12
		switch k {
		case 1, 14, 17: // INT, VAR, DECL_TAG
			off += 4
		case 3: // ARRAY
			off += 12
		case 4, 5, 15, 19: // STRUCT, UNION, DATASEC, ENUM64
			off += 12 * vlen
		case 6, 13: // ENUM, FUNC_PROTO
			off += 8 * vlen
		}
	}
	return false
}
