package btfd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FdError is an error answer of the fd socket (docs/PROTOCOL.md), or UNAVAILABLE when the
// daemon closed the connection without answering, or INTERNAL for a malformed answer.
// status.Code(err) and errors.As work on it.
type FdError struct {
	Code    string // the status name: NOT_FOUND, INVALID_ARGUMENT, PERMISSION_DENIED, ...
	Message string // the daemon's message
}

func (e *FdError) Error() string { return fmt.Sprintf("btfd fd socket: %s: %s", e.Code, e.Message) }

// GRPCStatus makes status.Code(err) return the matching gRPC code.
func (e *FdError) GRPCStatus() *status.Status {
	c := codes.Unknown
	// codes.Code's UnmarshalJSON accepts the status names the daemon sends.
	_ = c.UnmarshalJSON([]byte(`"` + e.Code + `"`))
	return status.New(c, e.Message)
}

// FdAnswer is the JSON line of a successful fd request.
type FdAnswer struct {
	Spec string  `json:"spec"`
	Size int64   `json:"size"`
	Mode string  `json:"mode"` // "kernel-mmap" | "sealed-memfd"
	Base *string `json:"base"` // the base spec of split BTF, nil otherwise
}

// maxLine bounds the answer line: the daemon's are a few hundred bytes.
const maxLine = 64 << 10

// FdOptions tunes [RequestFd] and [OpenShared]. The zero value means the defaults.
type FdOptions struct {
	// Socket is the gRPC socket used to find the fd socket ([FdSocketFor]) when FdSocket is empty.
	Socket string
	// FdSocket is the fd socket; empty: [FdSocketFor].
	FdSocket string
	// Timeout bounds one attempt when ctx has no deadline (default 10 s).
	Timeout time.Duration
	// RetryBudget bounds the wall time spent retrying a daemon that is restarting (socket
	// missing or refusing connections, connection closed before the answer). Default 15 s;
	// negative: never retry.
	RetryBudget time.Duration
}

func (o FdOptions) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

func (o FdOptions) budget() time.Duration {
	switch {
	case o.RetryBudget < 0:
		return 0
	case o.RetryBudget == 0:
		return DefaultRetryBudget
	}
	return o.RetryBudget
}

// RequestFd asks the fd socket at path for spec's fd ("" is vmlinux). The caller owns the fd.
// An error answer is an *[FdError]; a socket that cannot be reached is the dial's error; no
// answer within the deadline (ctx's, else opts.Timeout) wraps context.DeadlineExceeded.
// A restarting daemon is retried within opts.RetryBudget; nothing else is.
func RequestFd(ctx context.Context, path, spec string, opts FdOptions) (FdAnswer, int, error) {
	b := newBackoff(opts.budget())
	for {
		ans, fd, err := requestFdOnce(ctx, path, spec, opts.timeout())
		if err == nil || !unreachable(err) || ctx.Err() != nil {
			return ans, fd, err
		}
		d, ok := b.pause()
		if !ok || wait(ctx, d) != nil {
			return ans, fd, err
		}
	}
}

// unreachable: a failure a daemon restart explains.
func unreachable(err error) bool {
	var fe *FdError
	if errors.As(err, &fe) {
		return fe.Code == "UNAVAILABLE"
	}
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func requestFdOnce(ctx context.Context, path, spec string, timeout time.Duration) (FdAnswer, int, error) {
	var ans FdAnswer
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return ans, -1, fmt.Errorf("btfd: connect to fd socket: %w", err)
	}
	conn := nc.(*net.UnixConn)
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	done := make(chan struct{})
	defer close(done)
	go func() { // a cancelled ctx interrupts the exchange
		select {
		case <-ctx.Done():
			_ = conn.SetDeadline(time.Unix(1, 0))
		case <-done:
		}
	}()
	if _, err := conn.Write([]byte(spec + "\n")); err != nil {
		return ans, -1, fmt.Errorf("btfd: write fd request: %w", err)
	}
	var line []byte
	var fds []int
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*4))
	for !bytes.HasSuffix(line, []byte("\n")) {
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if n < 0 { // on some errors
			n = 0
		}
		if oobn > 0 {
			got, perr := parseRights(oob[:oobn])
			fds = append(fds, got...)
			if perr != nil {
				closeAll()
				return ans, -1, &FdError{"INTERNAL", "bad control message: " + perr.Error()}
			}
		}
		line = append(line, buf[:n]...)
		if err != nil || n == 0 {
			if len(line) == 0 && (err == nil || errors.Is(err, io.EOF)) {
				closeAll()
				return ans, -1, &FdError{"UNAVAILABLE", path + " closed the connection without answering (daemon stopping?)"}
			}
			if err != nil && !errors.Is(err, io.EOF) {
				closeAll()
				if ctx.Err() != nil {
					return ans, -1, fmt.Errorf("btfd: fd request to %s: %w", path, ctx.Err())
				}
				if errors.Is(err, os.ErrDeadlineExceeded) { // the socket's deadline is ctx's
					return ans, -1, fmt.Errorf("btfd: fd request to %s: %w", path, context.DeadlineExceeded)
				}
				return ans, -1, fmt.Errorf("btfd: read fd answer: %w", err)
			}
			break
		}
		if len(line) > maxLine {
			closeAll()
			return ans, -1, &FdError{"INTERNAL", fmt.Sprintf("answer longer than %d bytes", maxLine)}
		}
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		closeAll()
		return ans, -1, &FdError{"INTERNAL", fmt.Sprintf("malformed answer from %s: %.200q", path, line)}
	}
	if e, ok := raw["error"]; ok {
		closeAll()
		fe := &FdError{Code: "UNKNOWN"}
		_ = json.Unmarshal(e, &fe.Message)
		if c, ok := raw["code"]; ok {
			_ = json.Unmarshal(c, &fe.Code)
		}
		return ans, -1, fe
	}
	if err := json.Unmarshal(line, &ans); err != nil || ans.Size <= 0 {
		closeAll()
		return ans, -1, &FdError{"INTERNAL", fmt.Sprintf("malformed answer from %s: %.200q", path, line)}
	}
	if len(fds) != 1 {
		closeAll()
		return ans, -1, &FdError{"INTERNAL", fmt.Sprintf("expected exactly one fd with the answer, got %d", len(fds))}
	}
	return ans, fds[0], nil
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			return fds, err
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// Shared is a spec's blob mapped from the fd btfd handed out: Data is the raw BTF
// (read-only: writing to it faults), Fd the descriptor (a /sys/kernel/btf file or a sealed
// memfd), Base the base spec's Shared for split BTF (module/...).
type Shared struct {
	Answer FdAnswer
	Data   []byte
	Fd     int
	Base   *Shared
}

// OpenShared receives spec's fd from btfd ("" is vmlinux) and maps it PROT_READ/MAP_PRIVATE;
// split specs map their base too. Parse Data with any BTF reader, e.g. cilium/ebpf's
// btf.LoadSpecFromReader(bytes.NewReader(s.Data)) (0.9.1 cannot parse ENUM64: kernels
// >= 6.0 need a newer cilium/ebpf, or btfd's MinimizeBtf, see package agent).
func OpenShared(ctx context.Context, spec string, opts FdOptions) (*Shared, error) {
	path := FdSocketFor(ctx, opts.Socket, opts.FdSocket)
	opts.FdSocket = path
	ans, fd, err := RequestFd(ctx, path, spec, opts)
	if err != nil {
		return nil, err
	}
	s := &Shared{Answer: ans, Fd: fd}
	if ans.Base != nil && *ans.Base != "" {
		if s.Base, err = OpenShared(ctx, *ans.Base, opts); err != nil {
			s.Close()
			return nil, fmt.Errorf("btfd: base %q of %q: %w", *ans.Base, spec, err)
		}
	}
	if ans.Size > int64(^uint(0)>>1) {
		s.Close()
		return nil, &FdError{"INTERNAL", fmt.Sprintf("size %d does not fit in memory", ans.Size)}
	}
	if s.Data, err = unix.Mmap(fd, 0, int(ans.Size), unix.PROT_READ, unix.MAP_PRIVATE); err != nil {
		s.Close()
		return nil, fmt.Errorf("btfd: mmap %s (%d bytes): %w", ans.Spec, ans.Size, os.NewSyscallError("mmap", err))
	}
	return s, nil
}

// Close unmaps the blob and closes the fd (base included).
func (s *Shared) Close() error {
	var errs []error
	if s.Data != nil {
		errs = append(errs, unix.Munmap(s.Data))
		s.Data = nil
	}
	if s.Fd >= 0 {
		errs = append(errs, unix.Close(s.Fd))
		s.Fd = -1
	}
	if s.Base != nil {
		errs = append(errs, s.Base.Close())
		s.Base = nil
	}
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
