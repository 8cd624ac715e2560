// Package btfd is the Go client of btfd, the node's BTF daemon.
//
// Two paths, as in the Python client (clients/python):
//
//   - gRPC over btfd's Unix socket ([Dial], [Client]): every call gets a deadline, and
//     UNAVAILABLE (a daemon restarting) is retried with exponential backoff within a budget
//     of wall time; no other status is retried. The generated stubs are in package btfdv1.
//   - The fd socket (docs/PROTOCOL.md; [RequestFd], [OpenShared]): the spec's fd over
//     SCM_RIGHTS, mapped PROT_READ/MAP_PRIVATE, no copy of the blob.
//
// Sockets are found as the Python client finds them ([DefaultSocket], [FdSocketFor]):
// $BTFD_SOCKET, then $XDG_RUNTIME_DIR/btfd.sock for non-root users, then
// /run/btfd/btfd.sock; the fd socket is $BTFD_FD_SOCKET, then <socket>.fd, then what the
// daemon advertises in GetInfo.
//
// Package agent (btfd/clients/go/agent) loads BPF objects with cilium/ebpf against the
// minimal BTF btfd computes for them, so that an agent never parses vmlinux itself.
package btfd
