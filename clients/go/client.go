package btfd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "btfd/clients/go/btfdv1"
)

// Defaults, as in the Python client.
const (
	DefaultTimeout     = 10 * time.Second // per call (a whole stream for ListTypes, ReadRaw)
	DefaultRetryBudget = 15 * time.Second // wall time spent retrying UNAVAILABLE, attempts included
	// DefaultMaxRecvBytes bounds one answer (ResolveCore with patched programs of a large object).
	DefaultMaxRecvBytes = 64 << 20
)

type options struct {
	timeout  time.Duration
	budget   time.Duration
	maxRecv  int
	dialOpts []grpc.DialOption
}

// Option configures [Dial].
type Option func(*options)

// WithTimeout sets the deadline of each call whose context has none (default 10 s).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithRetryBudget bounds the wall time spent retrying UNAVAILABLE (default 15 s; 0: never retry).
func WithRetryBudget(d time.Duration) Option { return func(o *options) { o.budget = d } }

// WithMaxRecvBytes bounds the size of one answer (default 64 MiB).
func WithMaxRecvBytes(n int) Option { return func(o *options) { o.maxRecv = n } }

// WithDialOptions adds gRPC dial options (interceptors, stats handlers, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dialOpts = append(o.dialOpts, opts...) }
}

// Client is a btfd gRPC client over a Unix socket. It is safe for concurrent use.
//
// Every unary call made through it (its methods, or [Client.Stub] directly) gets the
// default deadline when its context has none, and is retried after UNAVAILABLE within the
// retry budget. Errors are gRPC status errors: use status.Code(err).
type Client struct {
	// Stub is the generated client over the same connection, for what the methods do not
	// cover (its unary calls get the same deadlines and retries; streams do not).
	Stub    pb.BtfClient
	conn    *grpc.ClientConn
	socket  string
	opts    options
	retries int64
}

// Dial connects to btfd's gRPC socket (socket, or [DefaultSocket] when empty). The
// connection is made lazily: a daemon that is not up yet is waited for by the first call,
// within its retry budget. ctx only bounds the dial itself.
func Dial(ctx context.Context, socket string, opts ...Option) (*Client, error) {
	if socket == "" {
		socket = DefaultSocket()
	}
	c := &Client{socket: socket, opts: options{timeout: DefaultTimeout, budget: DefaultRetryBudget,
		maxRecv: DefaultMaxRecvBytes}}
	for _, o := range opts {
		o(&c.opts)
	}
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	dopts := []grpc.DialOption{
		grpc.WithInsecure(), // a Unix socket: access is the socket file's permissions
		grpc.WithContextDialer(dialer),
		grpc.WithAuthority("localhost"),
		// Reconnect quickly after a daemon restart (gRPC's default backoff grows to 120 s).
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6,
				Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(c.opts.maxRecv)),
		grpc.WithChainUnaryInterceptor(c.unary),
	}
	conn, err := grpc.DialContext(ctx, "passthrough:///"+socket, append(dopts, c.opts.dialOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("btfd: dial %s: %w", socket, err)
	}
	c.conn = conn
	c.Stub = pb.NewBtfClient(conn)
	return c, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Socket is the gRPC socket path this client dials.
func (c *Client) Socket() string { return c.socket }

// Retries counts calls retried after UNAVAILABLE (for an agent's own metrics).
func (c *Client) Retries() int64 { return atomic.LoadInt64(&c.retries) }

func (c *Client) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.opts.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.opts.timeout)
}

// retry runs attempt until it returns something other than UNAVAILABLE, the budget is
// spent or ctx is done; the last error is returned as it came (a gRPC status error).
func (c *Client) retry(ctx context.Context, b *backoff, attempt func() error) error {
	for {
		err := attempt()
		if status.Code(err) != codes.Unavailable {
			return err
		}
		d, ok := b.pause()
		if !ok {
			return err
		}
		atomic.AddInt64(&c.retries, 1)
		if wait(ctx, d) != nil {
			return err
		}
	}
}

func (c *Client) unary(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return c.retry(ctx, newBackoff(c.opts.budget), func() error {
		cctx, cancel := c.withDeadline(ctx)
		defer cancel()
		return invoker(cctx, method, req, reply, cc, opts...)
	})
}

// GetInfo returns the daemon's version, kernel release and served specs.
func (c *Client) GetInfo(ctx context.Context, req *pb.GetInfoRequest) (*pb.GetInfoResponse, error) {
	return c.Stub.GetInfo(ctx, req)
}

// LookupType looks types up by name or id.
func (c *Client) LookupType(ctx context.Context, req *pb.LookupTypeRequest) (*pb.LookupTypeResponse, error) {
	return c.Stub.LookupType(ctx, req)
}

// ResolveCore resolves a BPF object's CO-RE relocations.
func (c *Client) ResolveCore(ctx context.Context, req *pb.ResolveCoreRequest) (*pb.ResolveCoreResponse, error) {
	return c.Stub.ResolveCore(ctx, req)
}

// MinimizeBtf returns the minimal BTF the objects' CO-RE relocations need.
func (c *Client) MinimizeBtf(ctx context.Context, req *pb.MinimizeBtfRequest) (*pb.MinimizeBtfResponse, error) {
	return c.Stub.MinimizeBtf(ctx, req)
}

// ErrStop, returned by a ListTypes callback, ends the listing early without an error.
var ErrStop = errors.New("btfd: stop listing")

// ListTypes calls fn for every type matching req, as the pages arrive. After UNAVAILABLE (a
// restart) the listing resumes after the last page received: no type twice, none missing.
// fn's error ends the listing and is returned ([ErrStop]: nil is returned).
func (c *Client) ListTypes(ctx context.Context, req *pb.ListTypesRequest, fn func(*pb.TypeSummary) error) error {
	limit, sent, start := req.Limit, uint32(0), req.StartId
	b := newBackoff(c.opts.budget)
	var stop error
	err := c.retry(ctx, b, func() error {
		cctx, cancel := c.withDeadline(ctx)
		defer cancel()
		stream, err := c.Stub.ListTypes(cctx, &pb.ListTypesRequest{Spec: req.Spec, Kind: req.Kind, Name: req.Name,
			Match: req.Match, PageSize: req.PageSize, StartId: start, Limit: remaining(limit, sent)})
		if err != nil {
			return err
		}
		for {
			page, err := stream.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			b.progress()
			for _, t := range page.Types {
				if err := fn(t); err != nil {
					stop = err
					return nil
				}
			}
			sent += uint32(len(page.Types))
			if page.NextStartId == 0 || (limit != 0 && sent >= limit) {
				return nil
			}
			start = page.NextStartId
		}
	})
	if err != nil {
		return err
	}
	if stop != nil && !errors.Is(stop, ErrStop) {
		return stop
	}
	return nil
}

func remaining(limit, sent uint32) uint32 {
	if limit == 0 {
		return 0
	}
	return limit - sent
}

// ReadRaw returns bytes [offset, offset+length) of a spec's blob ("" is vmlinux). After
// UNAVAILABLE it resumes after the last chunk received.
func (c *Client) ReadRaw(ctx context.Context, spec string, offset, length uint64) ([]byte, error) {
	out := make([]byte, 0, length)
	b := newBackoff(c.opts.budget)
	err := c.retry(ctx, b, func() error {
		cctx, cancel := c.withDeadline(ctx)
		defer cancel()
		at := offset + uint64(len(out))
		if len(out) > 0 && uint64(len(out)) == length {
			return nil // everything arrived before the stream failed
		}
		stream, err := c.Stub.ReadRaw(cctx, &pb.ReadRawRequest{Spec: spec, Offset: at,
			Length: length - uint64(len(out))})
		if err != nil {
			return err
		}
		for {
			chunk, err := stream.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if chunk.Offset != offset+uint64(len(out)) || uint64(len(out)+len(chunk.Data)) > length {
				return status.Errorf(codes.Internal, "btfd: ReadRaw chunk at %d (%d bytes) does not continue at %d",
					chunk.Offset, len(chunk.Data), offset+uint64(len(out)))
			}
			b.progress()
			out = append(out, chunk.Data...)
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
