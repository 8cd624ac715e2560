"""``btfd``: serve kernel BTF to every agent on the node.

Start-up: map the BTF, build its name index, bind the gRPC socket and the fd socket, export
metrics, tell systemd READY=1. SIGTERM/SIGINT: stop accepting, let in-flight requests finish
within the grace period, remove the sockets, exit 0. SIGHUP: rescan module BTF.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import resource
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .. import paths

if TYPE_CHECKING:
    from ..source import Mapper

__all__ = ["main", "build_parser", "default_socket"]

log = logging.getLogger("btfd")

EXAMPLES = """\
examples:
  btfd --socket /run/btfd/btfd.sock
      serve /sys/kernel/btf/vmlinux (and module BTF, on first use) to every agent
  btfd --socket ./btfd.sock --btf ./vmlinux-6.1.btf --metrics-address off
      serve a BTF file (raw BTF or an ELF with .BTF) as the "vmlinux" spec
  btfd --socket ./btfd.sock --btf fleet-6.1=./6.1.btf --btf fleet-6.12=./6.12.btf
      serve extra specs by name beside this kernel's vmlinux (CO-RE answers for other kernels)

clients:
  btfctl --socket /run/btfd/btfd.sock lookup task_struct
  the fd of a spec's blob: connect to <socket>.fd, write "vmlinux\\n" (docs/PROTOCOL.md)
"""


def default_socket() -> str:
    """Where the daemon listens without --socket ($BTFD_SOCKET is for clients)."""
    return paths.default_socket(from_env=False)


def _mode(s: str) -> int:
    try:
        v = int(s, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {s!r}") from None
    if not 0 <= v <= 0o777:
        raise argparse.ArgumentTypeError(f"mode out of range: {s!r}")
    return v


def _size(s: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    s = s.strip().lower().removesuffix("ib").removesuffix("b")
    mult = units.get(s[-1:], 1)
    try:
        return int(s[:-1] if s[-1:] in units else s) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {s!r} (e.g. 16M)") from None


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {s!r}")
    return v


def _positive_size(s: str) -> int:
    v = _size(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {s!r}")
    return v


def _size_or_zero(s: str) -> int:
    v = _size(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="btfd",
        description="Map kernel BTF once, parse it lazily, and share it with every eBPF agent "
        "on the node over gRPC (Unix socket) and fd passing (SCM_RIGHTS).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    p.add_argument("--version", action="version", version=f"btfd {__version__}")
    p.add_argument("--socket", default=None,
                   help="gRPC Unix socket (default: /run/btfd/btfd.sock as root, "
                   "else $XDG_RUNTIME_DIR/btfd.sock)")
    p.add_argument("--fd-socket", default=None, help="fd-passing socket (default: SOCKET.fd)")
    p.add_argument("--btf", action="append", default=[], metavar="[NAME=]PATH",
                   help="PATH: serve this file as 'vmlinux' instead of the kernel's; NAME=PATH: "
                   "serve an extra spec (repeatable). Raw BTF or ELF with .BTF")
    p.add_argument("--btf-dir", help="directory of <release>.btf / <release>.btf.tar.xz files "
                   "(btfhub layout): used when the kernel has no BTF of its own")
    p.add_argument("--sysfs-btf-dir", default="/sys/kernel/btf",
                   help="where kernel BTF lives (vmlinux and module files; default %(default)s)")
    p.add_argument("--no-modules", action="store_true", help="do not serve module BTF")
    p.add_argument("--modules-over-btf", action="store_true",
                   help="serve the modules of --sysfs-btf-dir even when vmlinux comes from "
                   "elsewhere (--btf PATH, --btf-dir): only right if it is the same kernel's BTF")
    p.add_argument("--module-rescan", type=float, default=30.0, metavar="SECONDS",
                   help="rescan module BTF this often (0: only on SIGHUP; default %(default)s)")
    p.add_argument("--socket-mode", type=_mode, default=0o660, help="socket file mode (default 0660)")
    p.add_argument("--socket-group", help="group owning the sockets (name or gid)")
    p.add_argument("--allow-uid", type=int, action="append", default=[],
                   help="only these uids may receive fds (repeatable; root always may)")
    p.add_argument("--allow-gid", type=int, action="append", default=[],
                   help="only these gids may receive fds (repeatable)")
    p.add_argument("--metrics-address", default="127.0.0.1:9464",
                   help="HOST:PORT or [IPV6]:PORT for Prometheus metrics, or 'off' "
                   "(default %(default)s)")
    p.add_argument("--max-request-bytes", type=_positive_size, default=16 << 20,
                   help="largest request accepted (default 16M); larger: RESOURCE_EXHAUSTED")
    p.add_argument("--lookup-cache-bytes", type=_size_or_zero, default=512 << 10,
                   help="memory for cached LookupType answers (default 512K; 0 disables)")
    p.add_argument("--c-cache-bytes", type=_size_or_zero, default=64 << 20,
                   help="memory (sealed memfds) for specs rendered as C headers, kept for DumpC "
                   "and the fd socket (default 64M; a 6.18 vmlinux.h is 2.8M; 0: render every time)")
    p.add_argument("--prerender-c", action="append", default=[], metavar="SPEC",
                   help="render SPEC's C header (vmlinux.h) at start, not on first request "
                   "(repeatable; e.g. --prerender-c vmlinux)")
    p.add_argument("--result-cache-bytes", type=_size_or_zero, default=8 << 20,
                   help="memory for cached ResolveCore/MinimizeBtf answers, keyed by the input's "
                   "hash (default 8M; 0 disables)")
    p.add_argument("--no-share-index", dest="share_index", action="store_false",
                   help="keep each spec's index (offsets and name hash) private instead of in a "
                   "sealed memfd handed to agents beside the blob (fd socket '+index')")
    p.add_argument("--worker-threads", type=_positive_int, default=2, metavar="N",
                   help="threads for lookups, listings and CO-RE off the event loop (Python "
                   "runs one at a time, so more add memory, not speed; default %(default)s)")
    p.add_argument("--malloc-trim-interval", type=float, default=30.0, metavar="SECONDS",
                   help="give malloc's free pages back to the kernel this often (glibc "
                   "malloc_trim; 0: never; default %(default)s)")
    p.add_argument("--grace-period", type=float, default=10.0,
                   help="seconds in-flight requests get on SIGTERM (default %(default)s)")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"), help="default %(default)s")
    p.add_argument("--max-file-bytes", type=_positive_size, default=64 << 20,
                   help="largest BTF file (module, --btf) read or mapped (default 64M)")
    from .limits import add_arguments

    add_arguments(p)
    return p


class _StoppedBeforeReady(BaseException):
    """SIGTERM/SIGINT while the specs are being opened (before the event loop runs)."""


def _stop_before_ready(signum: int, frame: object) -> None:
    raise _StoppedBeforeReady(signal.Signals(signum).name)


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one: every connection is an fd, and fds
    passed to clients count against the same limit until they read them (see fdpass).
    Returns (soft before, soft now)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError) as exc:
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return soft, soft
    return soft, hard


def metrics_port_busy(address: str) -> str | None:
    """When something already listens on the metrics address (a second btfd, typically):
    the message, with what to do. None when the port is free (or ``off``, or unparsable: the
    daemon reports those itself)."""
    import errno
    import socket

    if address == "off":
        return None
    host, _, port_text = address.rpartition(":")  # HOST:PORT, [IPV6]:PORT, :PORT (as the daemon)
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
        infos = socket.getaddrinfo(host or "127.0.0.1", port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return None
    if port == 0 or not infos:
        return None
    family, _, _, _, sockaddr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the metrics server does
        try:
            s.bind(sockaddr)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return None
            return (f"cannot serve metrics on {address}: the port is in use (another btfd "
                    "already running?). Stop it, or give this one another port "
                    "(--metrics-address 127.0.0.1:0 picks a free one) or none (--metrics-address off)")
    return None


def main(argv: Sequence[str] | None = None, *, mapper: Mapper | None = None) -> int:
    """The btfd command. ``mapper``: how kernel BTF files are mapped (btfd.source.map_fd;
    tests pass one that refuses, to exercise the fallback to a sealed memfd)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Until the event loop installs its handlers, a stop request ends start-up cleanly
    # (exit 0, like a stop once serving) instead of killing the process (status 143).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_before_ready)
    # A crash inside a native dependency prints every thread's Python stack instead of
    # nothing (docs/OPERATIONS.md, "Memory limits").
    faulthandler.enable()
    try:
        log.info("btfd starting (pid %d)", os.getpid())
        as_limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if as_limit != resource.RLIM_INFINITY:
            log.warning("address-space limit (RLIMIT_AS) %d MiB: work is refused when less than 16 MiB "
                        "of it is left (protobuf does not survive an allocation failure), and malloc "
                        "keeps one arena (a second reserves 64 MiB at once); limit memory with a "
                        "cgroup (MemoryMax=) instead", as_limit >> 20)
        from .malloc import tune_malloc

        if not tune_malloc(arenas=1 if as_limit != resource.RLIM_INFINITY else 2):
            log.info("malloc not tuned (not glibc)")
        before, now = raise_nofile_limit()
        if now != before:
            log.info("open-file limit raised from %d to %d (the hard limit)", before, now)
        else:
            log.info("open-file limit %d", now)
        from .daemon import Daemon, StartupError

        busy = metrics_port_busy(args.metrics_address)
        if busy:
            log.error("%s", busy)
            return 1
        try:
            daemon = Daemon(args, mapper=mapper)
        except StartupError as exc:
            log.error("%s", exc)
            return 1
        import uvloop

        return uvloop.run(daemon.run())
    except _StoppedBeforeReady as exc:
        log.info("received %s before ready: stopped", exc)
        return 0


if __name__ == "__main__":
    sys.exit(main())

