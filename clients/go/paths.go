package btfd

import (
	"context"
	"os"
	"path/filepath"
	"time"

	pb "btfd/clients/go/btfdv1"
)

// SystemSocket is btfd's gRPC socket when it runs as a system service.
const SystemSocket = "/run/btfd/btfd.sock"

// DefaultSocket is where clients look for btfd's gRPC socket, in the Python client's order
// (btfd/paths.py): $BTFD_SOCKET, then $XDG_RUNTIME_DIR/btfd.sock for a non-root user, then
// /run/btfd/btfd.sock.
func DefaultSocket() string {
	if s := os.Getenv("BTFD_SOCKET"); s != "" {
		return s
	}
	if os.Geteuid() != 0 {
		if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
			return filepath.Join(d, "btfd.sock")
		}
	}
	return SystemSocket
}

// FdSocketFor says where to ask for fds, in the Python client's order (btfd/shared.py):
// fdSocket if not empty, else $BTFD_FD_SOCKET, else the gRPC socket (socket, or
// [DefaultSocket] when empty) + ".fd" when that exists (btfd's default) or when the gRPC
// socket does not exist either, else what the daemon advertises in GetInfo.fd_socket (a
// daemon started with --fd-socket elsewhere; relative to the gRPC socket's directory).
// A daemon that cannot be asked yields the default, which [RequestFd] then retries.
func FdSocketFor(ctx context.Context, socket, fdSocket string) string {
	if fdSocket != "" {
		return fdSocket
	}
	if s := os.Getenv("BTFD_FD_SOCKET"); s != "" {
		return s
	}
	if socket == "" {
		socket = DefaultSocket()
	}
	guess := socket + ".fd"
	if exists(guess) || !exists(socket) {
		return guess
	}
	c, err := Dial(ctx, socket, WithRetryBudget(0), WithTimeout(10*time.Second))
	if err != nil {
		return guess
	}
	defer c.Close()
	info, err := c.GetInfo(ctx, &pb.GetInfoRequest{})
	if err != nil || info.FdSocket == "" {
		return guess
	}
	if !filepath.IsAbs(info.FdSocket) {
		return filepath.Join(filepath.Dir(socket), info.FdSocket)
	}
	return info.FdSocket
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
