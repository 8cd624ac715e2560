// Package agent loads BPF objects with cilium/ebpf using btfd instead of the kernel's BTF:
// the agent process never reads or parses vmlinux.
//
// Two routes:
//   - [RouteMinimize]: btfd's MinimizeBtf computes the few KB of BTF the object's CO-RE
//     relocations need; cilium/ebpf relocates against it (ProgramOptions.KernelTypes).
//   - [RoutePatched]: btfd's ResolveCore relocates the object itself and returns the
//     patched instructions; they replace the relocated instructions in the cilium/ebpf
//     ProgramSpec, which is then loaded without any CO-RE pass (ProgramSpec.BTF = nil: the
//     programs load without func/line info; maps keep their BTF).
//
// [RouteAuto] takes the first, and the second when cilium/ebpf cannot parse the minimal BTF:
// 0.9.1 cannot parse ENUM64, which MinimizeBtf returns when the object relocates against a
// kernel enum whose values need 64 bits (perf_callchain_context on Linux >= 6.0).
//
// Either way the object needs nothing from the kernel's BTF beyond CO-RE: programs that
// attach by BTF id (fentry/fexit, tp_btf, LSM, iterators) still make cilium/ebpf look the
// target up in a kernel spec, which MinimizeBtf does not carry.
package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	btfd "btfd/clients/go"
	pb "btfd/clients/go/btfdv1"
)

// Route is how the object's CO-RE relocations are resolved.
type Route int

const (
	RouteMinimize Route = iota // MinimizeBtf -> cilium/ebpf relocates (KernelTypes)
	RoutePatched               // ResolveCore -> btfd's patched instructions
	RouteAuto                  // RouteMinimize, else RoutePatched when the minimal BTF has ENUM64
)

func (r Route) String() string {
	switch r {
	case RouteMinimize:
		return "minimize"
	case RoutePatched:
		return "patched"
	case RouteAuto:
		return "auto"
	}
	return fmt.Sprintf("Route(%d)", int(r))
}

// Options tunes [Load].
type Options struct {
	Route Route
	// Spec is btfd's target spec ("" is vmlinux).
	Spec string
	// Collection is passed to ebpf.NewCollectionWithOptions (its KernelTypes is set by Load).
	Collection ebpf.CollectionOptions
}

// Result is a loaded object and what it took.
type Result struct {
	Collection *ebpf.Collection
	// Route is the route taken (RouteAuto resolves to one of the others).
	Route Route
	// MinimalBTF is the BTF btfd computed (RouteMinimize), nil otherwise.
	MinimalBTF []byte
	// Relocations counts the CO-RE relocations btfd resolved (RoutePatched), by status.
	Relocations map[string]int
	// Btfd is the time spent in btfd calls, Load the time spent loading in the kernel.
	Btfd, Load time.Duration
}

// Close closes the collection.
func (r *Result) Close() {
	if r.Collection != nil {
		r.Collection.Close()
	}
}

// ErrENUM64 wraps the error of cilium/ebpf parsing a minimal BTF that holds an ENUM64.
var ErrENUM64 = errors.New("the minimal BTF has an ENUM64, which this cilium/ebpf cannot parse (use RoutePatched)")

// MinimalSpec asks btfd for the minimal BTF of objects and parses it with cilium/ebpf.
func MinimalSpec(ctx context.Context, c *btfd.Client, spec string, objects ...[]byte) (*btf.Spec, []byte, error) {
	resp, err := c.MinimizeBtf(ctx, &pb.MinimizeBtfRequest{Spec: spec, Objects: objects})
	if err != nil {
		return nil, nil, fmt.Errorf("agent: MinimizeBtf: %w", err)
	}
	s, err := btf.LoadSpecFromReader(bytes.NewReader(resp.Btf))
	if err != nil {
		if hasKind(resp.Btf, kindENUM64) {
			err = fmt.Errorf("%w: %v", ErrENUM64, err)
		}
		return nil, resp.Btf, fmt.Errorf("agent: parse btfd's minimal BTF (%d bytes, %d types): %w",
			len(resp.Btf), resp.TypeCount, err)
	}
	return s, resp.Btf, nil
}

// Load parses object (a BPF ELF object, as clang -g -target bpf builds it), resolves its
// CO-RE relocations through btfd and loads it into the kernel.
func Load(ctx context.Context, c *btfd.Client, object []byte, opts Options) (*Result, error) {
	cs, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(object))
	if err != nil {
		return nil, fmt.Errorf("agent: parse object: %w", err)
	}
	res := &Result{Route: opts.Route}
	start := time.Now()
	co := opts.Collection
	route := opts.Route
	switch route {
	case RouteMinimize, RouteAuto:
		var kt *btf.Spec
		kt, res.MinimalBTF, err = MinimalSpec(ctx, c, opts.Spec, object)
		if route == RouteAuto && errors.Is(err, ErrENUM64) {
			route = RoutePatched
			if res.Relocations, err = Patch(ctx, c, cs, object, opts.Spec); err != nil {
				return nil, err
			}
			break
		}
		if err != nil {
			return nil, err
		}
		route = RouteMinimize
		co.Programs.KernelTypes = kt
	case RoutePatched:
		if res.Relocations, err = Patch(ctx, c, cs, object, opts.Spec); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("agent: unknown route %v", opts.Route)
	}
	res.Btfd = time.Since(start)
	start = time.Now()
	if res.Collection, err = ebpf.NewCollectionWithOptions(cs, co); err != nil {
		return nil, fmt.Errorf("agent: load (%s route): %w", route, err)
	}
	res.Route = route
	res.Load = time.Since(start)
	return res, nil
}

// Patch resolves object's CO-RE relocations with btfd's ResolveCore and writes the patched
// instructions into cs (the object's parsed spec): every instruction that carries a CO-RE
// relocation takes btfd's version (offset, constant, load size, or libbpf's poison call),
// and the programs lose their BTF so that cilium/ebpf does no CO-RE of its own. A
// relocation with status "error" fails, as it fails libbpf's and cilium/ebpf's loads.
func Patch(ctx context.Context, c *btfd.Client, cs *ebpf.CollectionSpec, object []byte, spec string) (map[string]int, error) {
	resp, err := c.ResolveCore(ctx, &pb.ResolveCoreRequest{Spec: spec,
		Input: &pb.ResolveCoreRequest_Object{Object: object}, WantPatched: true})
	if err != nil {
		return nil, fmt.Errorf("agent: ResolveCore: %w", err)
	}
	if len(resp.Results) != 1 {
		return nil, fmt.Errorf("agent: ResolveCore: %d results for one spec", len(resp.Results))
	}
	r := resp.Results[0]
	counts := map[string]int{}
	for _, rel := range r.Relocations {
		counts[rel.Status]++
		if rel.Status == "error" {
			return counts, fmt.Errorf("agent: CO-RE relocation %s %s insn %d (%s %s): %s",
				rel.Sec, rel.Prog, rel.Insn, rel.Kind, rel.TypeName, rel.Error)
		}
	}
	patched := map[string]asm.Instructions{}
	for _, p := range r.Programs {
		var insns asm.Instructions
		if err := insns.Unmarshal(bytes.NewReader(p.Insns), nativeEndian()); err != nil {
			return counts, fmt.Errorf("agent: patched instructions of %s: %w", p.Prog, err)
		}
		patched[p.Prog] = insns
	}
	for name, ps := range cs.Programs {
		if err := patchProgram(ps, patched); err != nil {
			return counts, fmt.Errorf("agent: program %s: %w", name, err)
		}
		ps.BTF = nil
	}
	return counts, nil
}

// patchProgram walks ps's instructions function by function (a linked program carries its
// subprograms after it, each starting at an instruction with its symbol) and copies btfd's
// version of every instruction that has a CO-RE relocation.
func patchProgram(ps *ebpf.ProgramSpec, patched map[string]asm.Instructions) error {
	var fn asm.Instructions
	var fnName string
	idx := 0
	for i := range ps.Instructions {
		ins := &ps.Instructions[i]
		if sym := ins.Symbol(); sym != "" {
			fn, fnName, idx = patched[sym], sym, 0
		}
		if btf.CORERelocationMetadata(ins) != nil {
			if fn == nil {
				return fmt.Errorf("btfd returned no patched instructions for function %q", fnName)
			}
			if idx >= len(fn) {
				return fmt.Errorf("function %q: instruction %d past btfd's %d", fnName, idx, len(fn))
			}
			p := fn[idx]
			ins.OpCode, ins.Dst, ins.Src, ins.Offset, ins.Constant = p.OpCode, p.Dst, p.Src, p.Offset, p.Constant
		}
		idx++
	}
	return nil
}

// ErrKernelBTF wraps the error cilium/ebpf gives when it parses the kernel's BTF itself.
var ErrKernelBTF = errors.New("agent: cilium/ebpf cannot load the kernel's BTF")

// LoadKernel loads object the usual cilium/ebpf way, relocating against the kernel's BTF it
// parses itself (/sys/kernel/btf/vmlinux): the reference the btfd routes are measured
// against. cilium/ebpf 0.9.1 cannot parse BTF with ENUM64 (kernels >= 6.0 built with
// pahole >= 1.24): then the error wraps ErrKernelBTF.
func LoadKernel(object []byte, co ebpf.CollectionOptions) (*Result, error) {
	cs, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(object))
	if err != nil {
		return nil, fmt.Errorf("agent: parse object: %w", err)
	}
	start := time.Now()
	kt, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKernelBTF, err)
	}
	co.Programs.KernelTypes = kt
	res := &Result{}
	res.Btfd = time.Since(start)
	start = time.Now()
	if res.Collection, err = ebpf.NewCollectionWithOptions(cs, co); err != nil {
		return nil, fmt.Errorf("agent: load: %w", err)
	}
	res.Load = time.Since(start)
	return res, nil
}

// nativeEndian is the host's byte order: BPF instructions are loaded in it.
func nativeEndian() binary.ByteOrder {
	x := uint16(1)
	if *(*byte)(unsafe.Pointer(&x)) == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}

const kindENUM64 = 19 // BTF_KIND_ENUM64

// hasKind reports whether raw BTF (in either byte order) holds a type of kind. It walks the
// type section's records (sizes as in the kernel's include/uapi/linux/btf.h) and stops at
// anything it does not know.
func hasKind(raw []byte, kind uint32) bool {
	if len(raw) < 24 {
		return false
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if bo.Uint16(raw) != 0xeb9f {
		bo = binary.BigEndian
	}
	hdrLen, typeOff, typeLen := uint64(bo.Uint32(raw[4:])), uint64(bo.Uint32(raw[8:])), uint64(bo.Uint32(raw[12:]))
	if hdrLen+typeOff+typeLen > uint64(len(raw)) {
		return false
	}
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
		case 2, 7, 8, 9, 10, 11, 12, 16, 18: // no trailing data
		default:
			return false
		}
	}
	return false
}
