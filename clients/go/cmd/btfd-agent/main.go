// Command btfd-agent loads a BPF object (built by clang -g -target bpf) with cilium/ebpf,
// resolving its CO-RE relocations through btfd instead of parsing the kernel's BTF, attaches
// its programs and stays loaded until interrupted (or, with -hold=stdin, until its standard
// input closes).
//
//	btfd-agent [-socket PATH] [-route auto|minimize|patched|kernel] [-spec NAME] [-attach] OBJECT
//
// -route auto (default): minimize, or patched when cilium/ebpf cannot parse the minimal BTF.
// -route minimize: btfd's MinimizeBtf, used as cilium/ebpf's KernelTypes.
// -route patched: btfd's ResolveCore patched instructions, no CO-RE in the agent.
// -route kernel: cilium/ebpf parses /sys/kernel/btf/vmlinux itself (the reference; 0.9.1
// fails on kernels whose BTF has ENUM64).
// -route none: parse the object, load nothing (the Go baseline for benchmarks).
//
// Once loaded (and attached) it prints one JSON line to stdout, "ready" with what it took.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	btfd "btfd/clients/go"
	"btfd/clients/go/agent"
)

type report struct {
	Ready         bool           `json:"ready"`
	Route         string         `json:"route"`
	Programs      []string       `json:"programs"`
	Maps          []string       `json:"maps"`
	Attached      []string       `json:"attached,omitempty"`
	MinimalBTF    int            `json:"minimal_btf_bytes,omitempty"`
	Relocations   map[string]int `json:"relocations,omitempty"`
	BtfdMillis    float64        `json:"btfd_ms"`
	LoadMillis    float64        `json:"load_ms"`
	StartupMillis float64        `json:"startup_ms"` // from main() to ready
}

func main() {
	started := time.Now()
	socket := flag.String("socket", "", "btfd's gRPC socket (default: $BTFD_SOCKET, then the usual places)")
	route := flag.String("route", "auto", "auto | minimize | patched | kernel | none (load nothing)")
	spec := flag.String("spec", "", "btfd spec to relocate against (default vmlinux)")
	attach := flag.Bool("attach", false, "attach the programs (raw_tracepoint/, tracepoint/, kprobe/ sections)")
	hold := flag.String("hold", "signal", "after loading: signal (wait for SIGINT/SIGTERM) | stdin (wait for EOF) | none")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline for talking to btfd")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] OBJECT\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(started, flag.Arg(0), *socket, *route, *spec, *attach, *hold, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "btfd-agent:", err)
		os.Exit(1)
	}
}

func run(started time.Time, objPath, socket, route, spec string, attach bool, hold string, timeout time.Duration) error {
	object, err := os.ReadFile(objPath)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var res *agent.Result
	switch route {
	case "none":
		if _, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(object)); err != nil {
			return err
		}
		fmt.Printf("{\"ready\":true,\"route\":\"none\",\"startup_ms\":%.3f}\n", ms(time.Since(started)))
		return holdOn(hold)
	case "kernel":
		res, err = agent.LoadKernel(object, ebpf.CollectionOptions{})
	case "auto", "minimize", "patched":
		r := map[string]agent.Route{"auto": agent.RouteAuto, "minimize": agent.RouteMinimize,
			"patched": agent.RoutePatched}[route]
		c, derr := btfd.Dial(ctx, socket)
		if derr != nil {
			return derr
		}
		res, err = agent.Load(ctx, c, object, agent.Options{Route: r, Spec: spec})
		c.Close() // the agent needs btfd only to load
	default:
		return fmt.Errorf("unknown route %q", route)
	}
	if err != nil {
		return err
	}
	defer res.Close()
	if route != "kernel" {
		route = res.Route.String() // the route auto took
	}
	rep := report{Ready: true, Route: route, MinimalBTF: len(res.MinimalBTF), Relocations: res.Relocations,
		BtfdMillis: ms(res.Btfd), LoadMillis: ms(res.Load)}
	for name := range res.Collection.Programs {
		rep.Programs = append(rep.Programs, name)
	}
	for name := range res.Collection.Maps {
		rep.Maps = append(rep.Maps, name)
	}
	if attach {
		links, names, err := attachAll(res.Collection, objPath)
		if err != nil {
			return err
		}
		defer func() {
			for _, l := range links {
				l.Close()
			}
		}()
		rep.Attached = names
	}
	rep.StartupMillis = ms(time.Since(started))
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return err
	}
	return holdOn(hold)
}

func holdOn(hold string) error {
	switch hold {
	case "none":
	case "stdin":
		_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
	case "signal":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
	default:
		return fmt.Errorf("unknown -hold %q", hold)
	}
	return nil
}

// attachAll attaches every program whose section says where: raw_tracepoint/NAME,
// tracepoint/GROUP/NAME, kprobe/SYMBOL.
func attachAll(coll *ebpf.Collection, objPath string) ([]link.Link, []string, error) {
	cs, err := ebpf.LoadCollectionSpec(objPath)
	if err != nil {
		return nil, nil, err
	}
	var links []link.Link
	var names []string
	for name, prog := range coll.Programs {
		sec := cs.Programs[name].SectionName
		var l link.Link
		switch {
		case strings.HasPrefix(sec, "raw_tracepoint/"), strings.HasPrefix(sec, "raw_tp/"):
			l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: sec[strings.Index(sec, "/")+1:], Program: prog})
		case strings.HasPrefix(sec, "tracepoint/"):
			parts := strings.SplitN(strings.TrimPrefix(sec, "tracepoint/"), "/", 2)
			if len(parts) != 2 {
				err = fmt.Errorf("section %q: want tracepoint/GROUP/NAME", sec)
				break
			}
			l, err = link.Tracepoint(parts[0], parts[1], prog, nil)
		case strings.HasPrefix(sec, "kprobe/"):
			l, err = link.Kprobe(strings.TrimPrefix(sec, "kprobe/"), prog, nil)
		default:
			err = errors.New("no attach point in section " + sec)
		}
		if err != nil {
			for _, l := range links {
				l.Close()
			}
			return nil, nil, fmt.Errorf("attach %s: %w", name, err)
		}
		links = append(links, l)
		names = append(names, name+"@"+sec)
	}
	return links, names, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
