package btfd_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	btfd "btfd/clients/go"
	pb "btfd/clients/go/btfdv1"
)

// These tests run against a real btfd: tests/clients/test_go.py starts one and passes its
// sockets in $BTFD_SOCKET and $BTFD_FD_SOCKET (and the daemon's executable in $BTFD_BIN).
// Without them the tests fail: they are never skipped.

func daemon(t *testing.T) (socket, fdSocket string) {
	t.Helper()
	socket, fdSocket = os.Getenv("BTFD_SOCKET"), os.Getenv("BTFD_FD_SOCKET")
	if socket == "" || fdSocket == "" {
		t.Fatal("$BTFD_SOCKET and $BTFD_FD_SOCKET must name a running btfd's sockets " +
			"(run these tests through tests/clients/test_go.py, or `make test`)")
	}
	return socket, fdSocket
}

func dial(t *testing.T, opts ...btfd.Option) *btfd.Client {
	t.Helper()
	socket, _ := daemon(t)
	c, err := btfd.Dial(context.Background(), socket, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDefaultSocket(t *testing.T) {
	rootDefault := btfd.SystemSocket
	if os.Geteuid() != 0 {
		rootDefault = "/xdg/btfd.sock"
	}
	for _, tc := range []struct {
		name, env, xdg, want string
	}{
		{"env wins", "/tmp/x.sock", "/xdg", "/tmp/x.sock"},
		{"xdg for non-root only", "", "/xdg", rootDefault},
		{"system socket", "", "", btfd.SystemSocket},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("BTFD_SOCKET", tc.env)
			t.Setenv("XDG_RUNTIME_DIR", tc.xdg)
			if got := btfd.DefaultSocket(); got != tc.want {
				t.Errorf("DefaultSocket() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFdSocketFor(t *testing.T) {
	socket, fdSocket := daemon(t)
	dir := t.TempDir()
	// A second name for the daemon's gRPC socket with no ".fd" beside it: the client must
	// ask the daemon, which advertises its fd socket.
	alias := filepath.Join(dir, "alias.sock")
	if err := os.Symlink(socket, alias); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, envFd, socket, fdSocket, want string
	}{
		{"explicit", "/env.fd", socket, "/explicit.fd", "/explicit.fd"},
		{"environment", "/env.fd", socket, "", "/env.fd"},
		{"beside the socket", "", socket, "", socket + ".fd"},
		{"no daemon: the default guess", "", filepath.Join(dir, "none.sock"), "", filepath.Join(dir, "none.sock.fd")},
		{"advertised by the daemon", "", alias, "", fdSocket},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("BTFD_FD_SOCKET", tc.envFd)
			if got := btfd.FdSocketFor(context.Background(), tc.socket, tc.fdSocket); got != tc.want {
				t.Errorf("FdSocketFor(%q, %q) = %q, want %q", tc.socket, tc.fdSocket, got, tc.want)
			}
		})
	}
}

func TestGetInfo(t *testing.T) {
	_, fdSocket := daemon(t)
	info, err := dial(t).GetInfo(context.Background(), &pb.GetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Version == "" || len(info.Specs) == 0 || info.Specs[0].Name != "vmlinux" {
		t.Fatalf("GetInfo: version %q, specs %v", info.Version, info.Specs)
	}
	if info.FdSocket != fdSocket {
		t.Errorf("GetInfo.fd_socket = %q, want %q", info.FdSocket, fdSocket)
	}
	var uts syscall.Utsname
	if err := syscall.Uname(&uts); err != nil {
		t.Fatal(err)
	}
	if release := utsString(uts.Release[:]); info.KernelRelease != release {
		t.Errorf("kernel_release %q, uname -r %q", info.KernelRelease, release)
	}
}

func utsString(b []int8) string {
	var s strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		s.WriteByte(byte(c))
	}
	return s.String()
}

func TestLookupType(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	r, err := c.LookupType(ctx, &pb.LookupTypeRequest{Key: &pb.LookupTypeRequest_Name{Name: "task_struct"},
		Kind: pb.Kind_KIND_STRUCT})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Types) != 1 || r.Types[0].Size == 0 || !strings.HasPrefix(r.Types[0].CDecl, "struct task_struct {") {
		t.Fatalf("task_struct: %v", r.Types)
	}
	var names []string
	for _, m := range r.Types[0].Members {
		names = append(names, m.Name)
	}
	for _, want := range []string{"pid", "tgid", "real_parent"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("task_struct has no member %q", want)
		}
	}
	byID, err := c.LookupType(ctx, &pb.LookupTypeRequest{Key: &pb.LookupTypeRequest_Id{Id: r.Types[0].Id}})
	if err != nil || len(byID.Types) != 1 || byID.Types[0].Name != "task_struct" {
		t.Fatalf("by id %d: %v, %v", r.Types[0].Id, byID, err)
	}
}

func TestErrorsCarryTheStatus(t *testing.T) {
	c := dial(t)
	for _, tc := range []struct {
		name string
		call func(ctx context.Context) error
		want codes.Code
	}{
		{"unknown type", func(ctx context.Context) error {
			_, err := c.LookupType(ctx, &pb.LookupTypeRequest{Key: &pb.LookupTypeRequest_Name{Name: "no_such_type_anywhere"}})
			return err
		}, codes.NotFound},
		{"unknown id", func(ctx context.Context) error {
			_, err := c.LookupType(ctx, &pb.LookupTypeRequest{Key: &pb.LookupTypeRequest_Id{Id: 1 << 30}})
			return err
		}, codes.NotFound},
		{"unknown spec", func(ctx context.Context) error {
			_, err := c.LookupType(ctx, &pb.LookupTypeRequest{Spec: "module/no_such_module",
				Key: &pb.LookupTypeRequest_Name{Name: "task_struct"}})
			return err
		}, codes.NotFound},
		{"read past the blob", func(ctx context.Context) error {
			_, err := c.ReadRaw(ctx, "", 1<<40, 16)
			return err
		}, codes.OutOfRange},
		{"not an object", func(ctx context.Context) error {
			_, err := c.MinimizeBtf(ctx, &pb.MinimizeBtfRequest{Objects: [][]byte{[]byte("\x7fELF but not really")}})
			return err
		}, codes.InvalidArgument},
		{"deadline", func(ctx context.Context) error {
			ctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
			defer cancel()
			_, err := c.GetInfo(ctx, &pb.GetInfoRequest{})
			return err
		}, codes.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(context.Background())
			if got := status.Code(err); got != tc.want {
				t.Fatalf("status %v (%v), want %v", got, err, tc.want)
			}
		})
	}
	if c.Retries() != 0 {
		t.Errorf("%d retries: only UNAVAILABLE is retried", c.Retries())
	}
}

func TestListTypes(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	req := &pb.ListTypesRequest{Kind: pb.Kind_KIND_STRUCT, Name: "task_", Match: pb.NameMatch_NAME_MATCH_PREFIX, PageSize: 3}
	var all []string
	if err := c.ListTypes(ctx, req, func(ts *pb.TypeSummary) error {
		all = append(all, ts.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(all) < 4 {
		t.Fatalf("struct task_*: %v", all)
	}
	seen := map[string]bool{}
	for _, n := range all {
		if !strings.HasPrefix(n, "task_") || seen[n] {
			t.Errorf("unexpected or repeated %q", n)
		}
		seen[n] = true
	}
	if !seen["task_struct"] {
		t.Errorf("task_struct missing from %v", all)
	}
	for _, tc := range []struct {
		name  string
		limit uint32
		stop  int
		want  int
	}{
		{"limit across pages", 4, 0, 4},
		{"ErrStop", 0, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			r := &pb.ListTypesRequest{Kind: req.Kind, Name: req.Name, Match: req.Match, PageSize: 3, Limit: tc.limit}
			err := c.ListTypes(ctx, r, func(ts *pb.TypeSummary) error {
				got = append(got, ts.Name)
				if tc.stop != 0 && len(got) == tc.stop {
					return btfd.ErrStop
				}
				return nil
			})
			if err != nil || len(got) != tc.want || strings.Join(got, ",") != strings.Join(all[:tc.want], ",") {
				t.Fatalf("got %v (%v), want %v", got, err, all[:tc.want])
			}
		})
	}
	boom := errors.New("boom")
	if err := c.ListTypes(ctx, req, func(*pb.TypeSummary) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("callback error: got %v", err)
	}
}

func TestOpenSharedMatchesReadRawAndTheKernel(t *testing.T) {
	socket, _ := daemon(t)
	ctx := context.Background()
	s, err := btfd.OpenShared(ctx, "vmlinux", btfd.FdOptions{Socket: socket})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Answer.Spec != "vmlinux" || s.Answer.Base != nil || int64(len(s.Data)) != s.Answer.Size {
		t.Fatalf("answer %+v, %d bytes mapped", s.Answer, len(s.Data))
	}
	kernel, err := os.ReadFile("/sys/kernel/btf/vmlinux")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Data, kernel) {
		t.Fatalf("the mapping (%d bytes) is not the kernel's BTF (%d bytes)", len(s.Data), len(kernel))
	}
	if s.Answer.Mode == "kernel-mmap" {
		var st1, st2 syscall.Stat_t
		if syscall.Fstat(s.Fd, &st1) != nil || syscall.Stat("/sys/kernel/btf/vmlinux", &st2) != nil ||
			st1.Ino != st2.Ino || st1.Dev != st2.Dev {
			t.Errorf("mode kernel-mmap but the fd is not /sys/kernel/btf/vmlinux")
		}
	}
	c := dial(t)
	for _, r := range []struct{ off, n uint64 }{{0, 24}, {uint64(len(kernel)) - 300000, 300000}} {
		got, err := c.ReadRaw(ctx, "vmlinux", r.off, r.n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, kernel[r.off:r.off+r.n]) {
			t.Errorf("ReadRaw(%d, %d) differs from the blob", r.off, r.n)
		}
	}
	// The mapping is read-only: a write faults (a recoverable panic with SetPanicOnFault).
	func() {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if recover() == nil {
				t.Error("writing to the mapping did not fault")
			}
		}()
		s.Data[0] ^= 0xff
	}()
	if err := s.Close(); err != nil || s.Data != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestFdErrors(t *testing.T) {
	_, fdSocket := daemon(t)
	for _, tc := range []struct {
		name, spec string
		want       codes.Code
	}{
		{"unknown spec", "no_such_spec", codes.NotFound},
		{"unknown module", "module/no_such_module", codes.NotFound},
		{"line too long", strings.Repeat("x", 5000), codes.InvalidArgument},
		{"not UTF-8", "\xff\xfe", codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, fd, err := btfd.RequestFd(context.Background(), fdSocket, tc.spec, btfd.FdOptions{})
			var fe *btfd.FdError
			if !errors.As(err, &fe) || fd != -1 {
				t.Fatalf("got fd %d, error %v; want an *FdError", fd, err)
			}
			if status.Code(err) != tc.want || fe.Code != tc.want.String() && !sameName(fe.Code, tc.want) {
				t.Fatalf("%v: status %v, want %v", err, status.Code(err), tc.want)
			}
			if fe.Message == "" {
				t.Error("empty message")
			}
		})
	}
}

// sameName: codes.Code's String is "NotFound", the daemon sends "NOT_FOUND".
func sameName(name string, c codes.Code) bool {
	return strings.ReplaceAll(strings.ToLower(name), "_", "") == strings.ToLower(c.String())
}

func TestFdAnswerFromAHostileServer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer string
		want   codes.Code
	}{
		{"closed without answering", "", codes.Unavailable},
		{"not JSON", "hello\n", codes.Internal},
		{"success without an fd", `{"spec": "vmlinux", "size": 10, "mode": "kernel-mmap", "base": null}` + "\n", codes.Internal},
		{"error without a code", `{"error": "nope"}` + "\n", codes.Unknown},
		{"endless line", strings.Repeat("x", 100<<10), codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "fake.fd")
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					_, _ = io.ReadFull(conn, make([]byte, len("vmlinux\n")))
					_, _ = conn.Write([]byte(tc.answer))
					conn.Close()
				}
			}()
			_, _, err = btfd.RequestFd(context.Background(), path, "vmlinux", btfd.FdOptions{RetryBudget: 200 * time.Millisecond})
			if status.Code(err) != tc.want {
				t.Fatalf("%v: status %v, want %v", err, status.Code(err), tc.want)
			}
		})
	}
}

// A server that accepts and never answers: the request ends at its deadline, not retried.
func TestFdRequestDeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "silent.fd")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		opts btfd.FdOptions
	}{
		{"FdOptions.Timeout", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
			btfd.FdOptions{Timeout: 200 * time.Millisecond}},
		{"context deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		}, btfd.FdOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			_, fd, err := btfd.RequestFd(ctx, path, "vmlinux", tc.opts)
			if !errors.Is(err, context.DeadlineExceeded) || fd != -1 {
				t.Fatalf("got fd %d, %v; want context.DeadlineExceeded", fd, err)
			}
		})
	}
}

func TestFdRequestNoDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.fd")
	_, _, err := btfd.RequestFd(context.Background(), path, "vmlinux", btfd.FdOptions{RetryBudget: 200 * time.Millisecond})
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("got %v, want ENOENT", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = btfd.RequestFd(ctx, path, "vmlinux", btfd.FdOptions{})
	if err == nil {
		t.Fatal("a cancelled context still got an fd")
	}
}

func TestRetryBudgetSpent(t *testing.T) {
	c, err := btfd.Dial(context.Background(), filepath.Join(t.TempDir(), "none.sock"),
		btfd.WithRetryBudget(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.GetInfo(context.Background(), &pb.GetInfoRequest{})
	if status.Code(err) != codes.Unavailable || c.Retries() == 0 {
		t.Fatalf("status %v after %d retries, want UNAVAILABLE after at least one", status.Code(err), c.Retries())
	}
}

// A call made while no daemon listens succeeds once one starts, within the retry budget.
func TestRetryUntilTheDaemonStarts(t *testing.T) {
	daemon(t)
	bin := os.Getenv("BTFD_BIN")
	if bin == "" {
		t.Fatal("$BTFD_BIN must name the btfd executable")
	}
	dir := t.TempDir()
	socket := filepath.Join(dir, "late.sock")
	c, err := btfd.Dial(context.Background(), socket, btfd.WithRetryBudget(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	started := make(chan *exec.Cmd, 1)
	go func() {
		for c.Retries() == 0 { // start the daemon only once the call has failed once
			time.Sleep(10 * time.Millisecond)
		}
		cmd := exec.Command(bin, "--socket", socket, "--metrics-address", "127.0.0.1:0", "--no-modules")
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			t.Error(err)
		}
		started <- cmd
	}()
	info, err := c.GetInfo(context.Background(), &pb.GetInfoRequest{})
	cmd := <-started
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	if err != nil {
		t.Fatalf("after %d retries: %v", c.Retries(), err)
	}
	if info.FdSocket != socket+".fd" || c.Retries() == 0 {
		t.Fatalf("fd socket %q after %d retries", info.FdSocket, c.Retries())
	}
	// And the fd path waits for a daemon the same way: this one is up now.
	s, err := btfd.OpenShared(context.Background(), "", btfd.FdOptions{Socket: socket})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}
