"""The daemon's lifecycle: open specs, bind sockets, serve, shut down gracefully."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from .. import __version__, paths, source
from ..btf import BTFError
from ..source import Mapper, SourceError
from ..v1 import btfd_pb2
from . import lifecycle
from .fdpass import FdServer
from .limits import RateLimited, Workers, from_args
from .malloc import trimmer
from .metrics import Metrics, unix_connections
from .registry import Registry
from .results import Results, child_renderer
from .service import BtfService, add_to_server

__all__ = ["Daemon", "StartupError"]

log = logging.getLogger("btfd")
MAX_UNIX_PATH = 107


class StartupError(Exception):
    """The daemon cannot start; the message says why and what to do."""


def _parse_btf_args(values: list[str]) -> tuple[str | None, dict[str, str]]:
    vmlinux: str | None = None
    extra: dict[str, str] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep:
            if vmlinux is not None:
                raise StartupError("--btf PATH (the vmlinux replacement) given twice")
            vmlinux = v
            continue
        if not name or not path:
            raise StartupError(f"--btf {v!r}: expected NAME=PATH")
        if name == "vmlinux" or name.startswith("module/"):
            raise StartupError(f"--btf {v!r}: the name {name!r} is reserved")
        extra[name] = path
    return vmlinux, extra


def _btf_from_dir(btf_dir: str, release: str) -> str:
    """btfhub layout: <release>.btf, or <release>.btf.tar.xz holding <release>.btf (streamed
    into a sealed memfd by btfd.source: nothing is unpacked on disk)."""
    for name in (f"{release}.btf", f"{release}.btf.tar.xz"):
        path = os.path.join(btf_dir, name)
        if os.path.exists(path):
            return path
    raise StartupError(f"the kernel has no BTF and {btf_dir} has neither {release}.btf "
                       f"nor {release}.btf.tar.xz")


def _metrics_address(value: str) -> tuple[str, int]:
    """HOST:PORT, [IPV6]:PORT or :PORT (127.0.0.1)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


#: Server reflection's service names: v1 (what grpcurl and newer tools ask first) and the
#: deprecated v1alpha (what grpcio-reflection implements).
REFLECTION_SERVICES = ("grpc.reflection.v1.ServerReflection", reflection.SERVICE_NAME)


def _serve_reflection(names: tuple[str, ...], server: Any) -> None:
    """Serve reflection under both names with one servicer: grpcio-reflection implements only
    v1alpha, and v1's messages are v1alpha's on the wire (grpc/reflection/v1/reflection.proto
    is the same file, renamed), so the v1alpha handlers answer v1 calls too."""
    from grpc_reflection.v1alpha import reflection_pb2 as rpb

    servicer = reflection.aio.ReflectionServicer(tuple(n for n in names if n not in REFLECTION_SERVICES)
                                                 + REFLECTION_SERVICES)
    handlers = {"ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo, request_deserializer=rpb.ServerReflectionRequest.FromString,
        response_serializer=rpb.ServerReflectionResponse.SerializeToString)}
    for svc in REFLECTION_SERVICES:
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(svc, handlers),))


class Daemon:
    def __init__(self, args: argparse.Namespace, *, mapper: Mapper | None = None) -> None:
        """Open every spec (``mapper``: how kernel files are mapped, see btfd.source)."""
        self.args = args
        self.socket_path = os.path.abspath(args.socket or paths.default_socket(from_env=False))
        self.fd_path = os.path.abspath(args.fd_socket or self.socket_path + ".fd")
        for p in (self.socket_path, self.fd_path):
            if len(p.encode()) > MAX_UNIX_PATH:
                raise StartupError(f"socket path too long for a Unix socket ({len(p)} bytes): {p}")
        vmlinux, extra = _parse_btf_args(args.btf)
        sysfs = args.sysfs_btf_dir
        sysfs_vmlinux = os.path.join(sysfs, "vmlinux")
        if vmlinux is None:
            vmlinux = sysfs_vmlinux
            if not os.path.exists(vmlinux) and args.btf_dir:
                vmlinux = _btf_from_dir(args.btf_dir, os.uname().release)
                log.info("the kernel has no BTF: serving %s from --btf-dir", vmlinux)
        modules_dir = self._modules_dir(sysfs, vmlinux, sysfs_vmlinux)
        source.MAX_FILE_BYTES = args.max_file_bytes  # every spec file opened is checked first
        try:
            self.specs = Registry(vmlinux_path=vmlinux, sysfs_dir=modules_dir, extra=extra, mapper=mapper,
                                  share_index=getattr(args, "share_index", True))
        except SourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, PermissionError):
                raise StartupError(
                    f"{exc} (the file is there, but btfd runs as uid {os.geteuid()}, which may not "
                    "read it: run btfd as a user that can, or fix the file's mode, ownership or "
                    "the service's sandboxing)") from exc
            raise StartupError(f"{exc} (is this kernel built with CONFIG_DEBUG_INFO_BTF? "
                               "use --btf PATH or --btf-dir DIR)") from exc
        except BTFError as exc:
            raise StartupError(f"cannot parse BTF: {exc}") from exc
        vm = self.specs.vmlinux
        assert vm.spec is not None and vm.source is not None
        vm.spec.build_name_index()  # so the first request by name is fast
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry, self.specs)
        self._bound: list[str] = []

    def _modules_dir(self, sysfs: str, vmlinux: str, sysfs_vmlinux: str) -> str | None:
        """Module BTF is split over the kernel's own vmlinux: served only when vmlinux is
        read from the same directory, unless --modules-over-btf says otherwise."""
        if self.args.no_modules:
            log.info("module BTF: not served (--no-modules)")
            return None
        if os.path.realpath(vmlinux) == os.path.realpath(sysfs_vmlinux):
            log.info("module BTF: served from %s, split over %s", sysfs, vmlinux)
            return sysfs
        if self.args.modules_over_btf:
            log.warning("module BTF: served from %s split over %s, which is not that "
                        "directory's vmlinux (--modules-over-btf): names are only right if it "
                        "is the same kernel's BTF", sysfs, vmlinux)
            return sysfs
        log.info("module BTF: not served: vmlinux comes from %s, not %s, and modules are split "
                 "over their own kernel's vmlinux (--modules-over-btf to serve them anyway)",
                 vmlinux, sysfs_vmlinux)
        return None

    # ---------------------------------------------------------------- run

    async def run(self) -> int:
        args = self.args
        loop = asyncio.get_running_loop()
        # Lookups, listings and CO-RE run here (asyncio.to_thread). asyncio's default pool is
        # min(32, CPUs + 4) threads; they take turns on the GIL anyway, and each concurrent
        # computation raises malloc's high-water marks (docs/PERFORMANCE.md, "Soak").
        loop.set_default_executor(ThreadPoolExecutor(args.worker_threads, thread_name_prefix="btfd-worker"))
        self._stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop, sig)
        os.makedirs(os.path.dirname(self.socket_path), exist_ok=True)
        metrics_server: Any = None
        if args.metrics_address != "off":
            try:
                host, port = _metrics_address(args.metrics_address)
                metrics_server = start_http_server(port, addr=host, registry=self.registry)
            except (OSError, ValueError) as exc:
                log.error("cannot serve metrics on %s: %s", args.metrics_address, exc)
                return 1
            bound = metrics_server[0].server_address if isinstance(metrics_server, tuple) else (host, port)
            shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
            log.info("metrics on http://%s:%s/metrics", shown, bound[1])
        try:
            adopted = lifecycle.listen_fds()
            if adopted:
                fd_sock = adopted[0]
                self.fd_path = lifecycle.check_listening_unix(fd_sock)
                log.info("fd socket adopted from systemd (fd %d, %s)", fd_sock.fileno(), self.fd_path)
        except (OSError, ValueError) as exc:
            log.error("cannot use the fd socket passed by systemd: %s", exc)
            return 1
        limits = from_args(args)
        # Connections are bounded by gRPC core: a cap on connections open at once (past it,
        # new ones are closed as accepted: gRPC cannot see a Unix peer's uid, so the cap is
        # global), an idle timeout, a handshake deadline and a cap on calls per connection.
        server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", args.max_request_bytes),
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_allowed_incoming_connections", limits.max_connections),
            ("grpc.max_connection_idle_ms", int(limits.connection_idle * 1000)),
            ("grpc.server_handshake_timeout_ms", 10_000),
            ("grpc.max_concurrent_streams", limits.max_streams),
        ])
        self.metrics.grpc_connections.set_function(lambda: unix_connections(self.socket_path))
        self.results = Results(self.metrics, c_cache_bytes=args.c_cache_bytes,
                               result_cache_bytes=args.result_cache_bytes,
                               render=child_renderer(lambda e: self.specs.entry_or_none(e.base)))
        health = health_aio.HealthServicer()
        names = (btfd_pb2.DESCRIPTOR.services_by_name["Btf"].full_name,
                 health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME)

        def saturation(on: bool) -> None:
            self.metrics.saturated.set(1 if on else 0)
            self._limited(logging.WARNING, f"saturated-{on}", "requests wait %s than %.1f s for a worker: "
                          "health %s", "longer" if on else "no longer", limits.queue_threshold,
                          "NOT_SERVING" if on else "SERVING again")
            if not self._stop.is_set():
                status = (health_pb2.HealthCheckResponse.NOT_SERVING if on
                          else health_pb2.HealthCheckResponse.SERVING)
                for svc in ("", names[0]):
                    loop.create_task(health.set(svc, status))

        self._limited = RateLimited(log)
        workers = self.workers = Workers(args.worker_threads, limits, queue=self.metrics.worker_queue,
                                         on_saturation=saturation)
        service = BtfService(self.specs, self.metrics, fd_socket=self.fd_path,
                             cache_bytes=args.lookup_cache_bytes, results=self.results,
                             limits=limits, workers=workers)
        add_to_server(service, server)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        _serve_reflection(names, server)
        try:
            lifecycle.check_socket_dir(self.socket_path)
            if not adopted:
                lifecycle.check_socket_dir(self.fd_path)
        except (lifecycle.UnsafeSocketDir, OSError) as exc:
            log.error("%s", exc)
            return 1
        try:
            lifecycle.claim_socket_path(self.socket_path)
            with lifecycle.private_umask():
                server.add_insecure_port(f"unix:{self.socket_path}")
                await server.start()
        except lifecycle.SocketInUse as exc:
            log.error("%s; stop it first, or choose another --socket", exc)
            return 1
        except (OSError, RuntimeError) as exc:
            log.error("cannot serve on %s: %s", self.socket_path, exc)
            return 1
        self._bound.append(self.socket_path)
        fd_server = FdServer(self.specs, self.metrics, allow_uids=set(args.allow_uid),
                             allow_gids=set(args.allow_gid), limits=limits, c_header=service.c_header)
        try:
            lifecycle.set_socket_access(self.socket_path, args.socket_mode, args.socket_group)
            if not adopted:
                fd_sock = lifecycle.bind_unix(self.fd_path, args.socket_mode, args.socket_group)
                self._bound.append(self.fd_path)
        except (lifecycle.SocketInUse, OSError, ValueError) as exc:
            log.error("cannot set up the fd socket %s: %s", self.fd_path, exc)
            await server.stop(None)
            self._remove_sockets()
            return 1
        await fd_server.start(fd_sock)
        for svc in ("", names[0]):
            await health.set(svc, health_pb2.HealthCheckResponse.SERVING)
        loop.add_signal_handler(signal.SIGHUP, self._rescan)
        rescan_task = loop.create_task(self._rescan_loop()) if args.module_rescan > 0 else None
        trim = trimmer() if args.malloc_trim_interval > 0 else None
        trim_task = loop.create_task(self._trim_loop(trim)) if trim is not None else None
        watch_task = loop.create_task(self._watch_saturation())
        vm = self.specs.vmlinux
        assert vm.spec is not None and vm.source is not None
        held = vm.source.mode
        if vm.source.mmap_refused:
            held += f", mmap refused: {vm.source.mmap_refused}"
        status = (f"serving {vm.spec.count} types ({held}) and "
                  f"{len(self.specs.module_entries())} module specs on {self.socket_path}")
        prerender = [loop.create_task(self._prerender(n)) for n in args.prerender_c]
        if not self._stop.is_set():
            log.info("btfd %s ready: %s; fd socket %s", __version__, status, self.fd_path)
            lifecycle.notify(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")
        await self._stop.wait()
        lifecycle.notify("STOPPING=1\nSTATUS=draining in-flight requests")
        log.info("stopping: draining in-flight requests (grace %.1fs)", args.grace_period)
        for svc in ("", names[0]):
            await health.set(svc, health_pb2.HealthCheckResponse.NOT_SERVING)
        for task in (rescan_task, trim_task, watch_task, *prerender):
            if task is not None:
                task.cancel()
        await fd_server.close()
        # gRPC's stop(grace) stops accepting and waits for every connection to go away, idle
        # ones too (a client that never closes held the exit for the whole grace): wait for
        # the calls in flight only, then close what is left.
        stopping = loop.create_task(server.stop(args.grace_period))
        end = loop.time() + args.grace_period
        while service.inflight > 0 and loop.time() < end:
            await asyncio.sleep(0.02)
        await server.stop(0)
        try:  # a call waiting for its worker thread must not hold the exit past the deadline
            await asyncio.wait_for(stopping, 1)
        except asyncio.TimeoutError:
            log.warning("gRPC calls still running %.1f s after the stop", args.grace_period + 1)
        self._remove_sockets()
        if isinstance(metrics_server, tuple):
            metrics_server[0].shutdown()
        self.results.close()
        if workers.running:
            # Worker threads cannot be interrupted, and the interpreter would wait for them at
            # exit (past the drain deadline, until SIGKILL): the process ends here instead.
            log.warning("stopped with %d request(s) still in worker threads: exiting without "
                        "waiting for them", workers.running)
            logging.shutdown()
            os._exit(0)
        self.specs.close()
        log.info("stopped")
        return 0

    async def _watch_saturation(self) -> None:
        """A queue stuck behind long work starts nothing, so saturation is also checked
        here, and cleared once the queue is empty again."""
        while True:
            await asyncio.sleep(0.25)
            self.workers.check_saturation()

    async def _prerender(self, name: str) -> None:
        """--prerender-c: render a spec's C header once the daemon serves (in a worker thread)."""
        def work() -> None:
            e = self.specs.acquire(name)
            try:
                fd, _ = self.results.c_header_fd(e)
                os.close(fd)
            finally:
                self.specs.release(e)

        try:
            await asyncio.to_thread(work)
        except (BTFError, OSError) as exc:
            log.error("--prerender-c %s: %s", name, exc)

    def _on_stop(self, sig: signal.Signals) -> None:
        if not self._stop.is_set():
            log.info("received %s", signal.Signals(sig).name)
        self._stop.set()

    def _rescan(self) -> None:
        added, removed = self.specs.rescan_modules()
        log.info("module rescan: %d added, %d removed", len(added), len(removed))

    async def _rescan_loop(self) -> None:
        while True:
            await asyncio.sleep(self.args.module_rescan)
            self.specs.rescan_modules()

    async def _trim_loop(self, trim: Callable[[], bool]) -> None:
        """Free heap pages back to the kernel now and then (btfd.server.malloc.trimmer), in a
        worker thread: it takes each arena's lock in turn, not the event loop."""
        while True:
            await asyncio.sleep(self.args.malloc_trim_interval)
            t0 = time.perf_counter()
            released = await asyncio.to_thread(trim)
            log.debug("malloc_trim: %s in %.1f ms", "released pages" if released else "nothing to release",
                      (time.perf_counter() - t0) * 1e3)

    def _remove_sockets(self) -> None:
        for p in self._bound:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove %s: %s", p, exc)
        self._bound.clear()


