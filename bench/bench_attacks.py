#!/usr/bin/env python3
"""Each attack of issue 13 against a real daemon, with an honest client beside it.

    .venv/bin/python bench/bench_attacks.py                          # every attack, 60 s each
    .venv/bin/python bench/bench_attacks.py --seconds 30 --after 30 idle-grpc glob

The attacker runs as an unprivileged uid (setpriv; uid 5000, not on the fd socket's allow
list), with as many connections and requests as it likes. Beside it, an honest client (root)
sends uncached LookupType calls (a new name or depth each time) and fd requests. Reported per
attack: the honest client's p50/p99 and failures, the daemon's uss (baseline, peak during,
after --after seconds), its fd count, and PASS/FAIL against the targets: p99 <= 250 ms, no
failures, uss <= baseline + 64 MiB during and <= baseline + 4 MiB after. ``sigterm`` ends a
daemon under attack and times its exit (target 5 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import grpc  # noqa: E402

from btfd.btf import Kind, Spec  # noqa: E402
from btfd.server.metrics import memory_bytes  # noqa: E402
from btfd.v1 import btfd_pb2 as pb  # noqa: E402
from btfd.v1 import btfd_pb2_grpc  # noqa: E402

ATTACKER_UID = 5000
P99_MS, USS_DURING, USS_AFTER, STOP_S = 250.0, 64 << 20, 4 << 20, 5.0

# Attacker programs (run as ATTACKER_UID). argv: socket, fd socket, seconds.
IDLE_GRPC = r"""
import socket, sys, time, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
path, end = sys.argv[1], time.monotonic() + float(sys.argv[3])
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
socks = []
while time.monotonic() < end:
    if len(socks) < 20000:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            s.connect(path)
            s.send(PREFACE)
            socks.append(s)
        except OSError:
            s.close()
            time.sleep(0.01)
    else:
        time.sleep(0.1)
    if len(socks) % 500 == 0:  # drop the ones the daemon closed, answer PINGs by reading
        alive = []
        for s in socks:
            try:
                if s.recv(65536) == b"":
                    s.close()
                    continue
            except BlockingIOError:
                pass
            except OSError:
                s.close()
                continue
            alive.append(s)
        socks = alive
"""

GRPC_FLOOD = r"""
import sys, time, threading, grpc
sys.path.insert(0, sys.argv[4])
from btfd.v1 import btfd_pb2 as pb, btfd_pb2_grpc
path, end, kind = sys.argv[1], time.monotonic() + float(sys.argv[3]), sys.argv[5]
obj = open(sys.argv[6], "rb").read() if len(sys.argv) > 6 else b""
def run():
    ch = grpc.insecure_channel("unix:" + path)
    stub = btfd_pb2_grpc.BtfStub(ch)
    while time.monotonic() < end:
        try:
            if kind == "glob":
                for pat in ("[" * 20000, "[" * 1024, "*a" * 500):
                    list(stub.ListTypes(pb.ListTypesRequest(name=pat, match=pb.NAME_MATCH_GLOB), timeout=30))
            elif kind == "specs":
                stub.ResolveCore(pb.ResolveCoreRequest(object=obj, specs=["vmlinux"] * 20000), timeout=30)
        except grpc.RpcError:
            pass
    ch.close()
ts = [threading.Thread(target=run) for _ in range(8)]
for t in ts: t.start()
for t in ts: t.join()
"""

FD_TRICKLE = r"""
import socket, sys, time, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
path, end = sys.argv[2], time.monotonic() + float(sys.argv[3])
socks = []
while time.monotonic() < end:
    while len(socks) < 1100:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            s.send(b"v")
        except OSError:
            s.close()
            break
        socks.append(s)
    time.sleep(1)
    alive = []
    for s in socks:
        try:
            s.send(b"v")
            alive.append(s)
        except OSError:
            s.close()
    socks = alive
"""

FD_SEEK = r"""
import fcntl, os, socket, sys, time
path, end = sys.argv[2], time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        s.sendall(b"vmlinux\n")
        msg, fds, _, _ = socket.recv_fds(s, 4096, 1)
    for fd in fds:
        os.lseek(fd, 0, os.SEEK_END)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        os.close(fd)
    time.sleep(0.05)
"""

ATTACKS = {
    "idle-grpc": (IDLE_GRPC, True),
    "glob": (GRPC_FLOOD, True),
    "specs": (GRPC_FLOOD, True),
    "fd-trickle": (FD_TRICKLE, True),
    "fd-seek": (FD_SEEK, False),  # root: an allowed client abusing its own fd
}


def btfd_command() -> list[str]:
    beside = Path(sys.executable).with_name("btfd")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "btfd.server.main"]


class Honest:
    """Uncached lookups (a new name/depth pair each time) and fd requests, one at a time."""

    def __init__(self, sock: str, fd_sock: str, names: list[str]) -> None:
        self.ch_target = f"unix:{sock}"
        self.ch = grpc.insecure_channel(self.ch_target)
        self.stub = btfd_pb2_grpc.BtfStub(self.ch)
        self.fd_sock, self.names = fd_sock, names
        self.lat: list[float] = []
        self.failures: list[str] = []
        self.i = 0
        self.stop = threading.Event()

    fresh_every = 20  # every Nth lookup on a new connection (an agent starting meanwhile)

    def one(self) -> None:
        self.i += 1
        name, depth = self.names[self.i % len(self.names)], 1 + (self.i // len(self.names)) % 3
        t0 = time.perf_counter()
        fresh = self.fresh_every and self.i % self.fresh_every == 0
        ch = grpc.insecure_channel(self.ch_target) if fresh else None
        stub = btfd_pb2_grpc.BtfStub(ch) if ch is not None else self.stub
        try:
            r = stub.LookupType(pb.LookupTypeRequest(name=name, kind=pb.KIND_STRUCT, depth=depth),
                                timeout=10)
            assert r.types
            self.lat.append(time.perf_counter() - t0)
        except grpc.RpcError as exc:
            self.failures.append(f"lookup {name}: {exc.code()}")  # type: ignore[attr-defined]
        except AssertionError:
            self.failures.append(f"lookup {name}: empty answer")
        finally:
            if ch is not None:
                ch.close()
        if self.i % 10 == 0:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(10)
                    s.connect(self.fd_sock)
                    s.sendall(b"vmlinux\n")
                    _, fds, _, _ = socket.recv_fds(s, 4096, 1)
                assert len(fds) == 1
                head = os.pread(fds[0], 4, 0)
                data = os.read(fds[0], 4)  # offset 0 and blocking, whatever other clients did
                blocking = os.get_blocking(fds[0])
                os.close(fds[0])
                assert head == data and blocking, (head, data, blocking)
            except (OSError, AssertionError) as exc:
                self.failures.append(f"fd: {exc!r}")

    def run(self) -> None:
        while not self.stop.is_set():
            self.one()
            time.sleep(0.02)

    def p(self, q: float) -> float:
        s = sorted(self.lat)
        return s[min(len(s) - 1, int(len(s) * q))] * 1e3 if s else float("nan")


def start_daemon(d: Path) -> subprocess.Popen[bytes]:
    sock = str(d / "btfd.sock")
    log = open(d / "btfd.log", "ab")  # noqa: SIM115 - closed with the process
    p = subprocess.Popen([*btfd_command(), "--socket", sock, "--socket-mode", "0666", "--allow-uid", "4242",
                          "--metrics-address", "off", "--no-modules"], stdout=log, stderr=subprocess.STDOUT)
    end = time.monotonic() + 120
    while "ready:" not in (d / "btfd.log").read_text(errors="replace"):
        if p.poll() is not None or time.monotonic() > end:
            sys.exit(f"btfd did not start:\n{(d / 'btfd.log').read_text()}")
        time.sleep(0.05)
    return p


def attack(name: str, d: Path, seconds: float) -> subprocess.Popen[bytes]:
    prog, unprivileged = ATTACKS[name]
    sock = str(d / "btfd.sock")
    argv = [sys.executable, "-c", prog, sock, sock + ".fd", str(seconds), str(ROOT), name]
    if name == "specs":
        argv.append(str(ROOT / "tests/data/core/objs/k_task_fields.bpf.o"))
    if unprivileged:
        argv = ["setpriv", f"--reuid={ATTACKER_UID}", f"--regid={ATTACKER_UID}", "--clear-groups",
                "--inh-caps=-all", *argv]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("attacks", nargs="*", default=[*ATTACKS, "sigterm"])
    ap.add_argument("--seconds", type=float, default=60.0, help="attack length (default %(default)s)")
    ap.add_argument("--after", type=float, default=60.0, help="wait before the after-uss (default %(default)s)")
    ap.add_argument("--fresh-every", type=int, default=20,
                    help="every Nth honest lookup on a new connection (0: never; default %(default)s)")
    args = ap.parse_args()
    Honest.fresh_every = args.fresh_every
    spec = Spec(Path("/sys/kernel/btf/vmlinux").read_bytes())
    names = sorted({t.name for t in spec.types(Kind.STRUCT) if t.name})
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {platform.release()}, "
          f"python {platform.python_version()}; attacks {args.seconds:.0f} s, uss after {args.after:.0f} s")
    print("attack        honest p50/p99 ms  fails  uss base/peak/after MiB   fds base/peak/after  verdict")
    failed = 0
    tmp = Path(tempfile.mkdtemp(prefix="btfd-attacks-", dir="/tmp"))
    os.chmod(tmp, 0o755)
    for name in args.attacks:
        d = tmp / name
        d.mkdir()
        daemon = start_daemon(d)
        honest = Honest(str(d / "btfd.sock"), str(d / "btfd.sock.fd"), names)
        for _ in range(200):  # warm-up: first-use costs out of the baseline
            honest.one()
        obj = (ROOT / "tests/data/core/objs/k_task_fields.bpf.o").read_bytes()
        honest.stub.ResolveCore(pb.ResolveCoreRequest(object=obj), timeout=60)  # builds the CO-RE target
        list(honest.stub.ListTypes(pb.ListTypesRequest(name="*a*", match=pb.NAME_MATCH_GLOB), timeout=60))
        honest.lat.clear()
        honest.failures.clear()
        time.sleep(2)
        base = memory_bytes(daemon.pid)["uss"]
        fds0 = len(os.listdir(f"/proc/{daemon.pid}/fd"))
        t = threading.Thread(target=honest.run)
        t.start()
        if name == "sigterm":
            atk = [attack("idle-grpc", d, args.seconds), attack("glob", d, args.seconds)]
        else:
            atk = [attack(name, d, args.seconds)]
        peak, fdpeak, end = base, fds0, time.monotonic() + (min(args.seconds, 15) if name == "sigterm"
                                                             else args.seconds)
        while time.monotonic() < end:
            peak = max(peak, memory_bytes(daemon.pid)["uss"])
            fdpeak = max(fdpeak, len(os.listdir(f"/proc/{daemon.pid}/fd")))
            time.sleep(0.5)
        stop_s = float("nan")
        if name == "sigterm":
            t0 = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
            stop_s = time.monotonic() - t0
        for a in atk:
            a.kill()
            a.wait()
        honest.stop.set()
        t.join()
        if name == "sigterm":
            ok = stop_s <= STOP_S
            print(f"{name:12}  SIGTERM under attack: exited in {stop_s:.2f} s (rc {daemon.returncode})  "
                  f"{'PASS' if ok else 'FAIL'}", flush=True)
            failed += not ok
            continue
        time.sleep(args.after)
        after = memory_bytes(daemon.pid)["uss"]
        fds1 = len(os.listdir(f"/proc/{daemon.pid}/fd"))
        ok = (honest.p(0.99) <= P99_MS and not honest.failures and peak <= base + USS_DURING
              and after <= base + USS_AFTER)
        failed += not ok
        mib = 1 << 20
        print(f"{name:12}  {honest.p(0.5):7.1f} / {honest.p(0.99):7.1f}  {len(honest.failures):5}  "
              f"{base / mib:6.1f} / {peak / mib:6.1f} / {after / mib:6.1f}     {fds0:4} / {fdpeak:5} / {fds1:4}"
              f"      {'PASS' if ok else 'FAIL'} ({len(honest.lat)} lookups)", flush=True)
        for f in sorted(set(honest.failures))[:5]:
            print(f"    failure: {f}")
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
