"""The node-side permission model of deploy/ and systemd/, run for real: the DaemonSet's init
container makes the kubelet-created socket directory usable by btfd (uid 4242) and by agents
in group 4242 (deploy/agent-example.yaml), through a read-only mount too; and why allow lists
and a private user namespace (systemd PrivateUsers=yes) do not mix."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from tests.server.conftest import FD_PEER, BtfdProcess, as_user, fd_request

ROOT = Path(__file__).resolve().parents[2]
BTFCTL = str(Path(sys.executable).with_name("btfctl"))
HOST_DIR = "/run/btfd"
DAEMONSET = yaml.safe_load((ROOT / "deploy" / "daemonset.yaml").read_text())
POD = DAEMONSET["spec"]["template"]["spec"]
AGENT = yaml.safe_load((ROOT / "deploy" / "agent-example.yaml").read_text())["spec"]

@pytest.fixture
def node_dir() -> Iterator[Path]:
    """Stands in for the node's /run: traversable by all (pytest's tmp dirs are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="btfd-node-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _btfd_as_pod(sockets: Path) -> BtfdProcess:
    """btfd with the DaemonSet's arguments and identity (runAsUser/runAsGroup, no other group),
    its socket directory moved to ``sockets``."""
    [c] = POD["containers"]
    extra = [a for a in c["args"] if not a.startswith(("--socket=", "--metrics-address="))]
    assert len(extra) == len(c["args"]) - 2
    d = BtfdProcess(sockets, *extra, "--metrics-address", "off", wait=False)
    assert d.socket == c["args"][0].replace("--socket=" + HOST_DIR, str(sockets))
    sc = POD["securityContext"]
    d.args = as_user(sc["runAsUser"], sc["runAsGroup"], [], *d.args)
    return d


def test_init_container_makes_the_socket_directory_work(node_dir: Path) -> None:
    sockets = node_dir / "btfd"
    sockets.mkdir(mode=0o755)  # what the kubelet creates for DirectoryOrCreate: root:root 0755
    os.chown(sockets, 0, 0)
    log_dir = node_dir / "logs"
    log_dir.mkdir()

    # Without the init container btfd cannot bind its sockets there.
    d = _btfd_as_pod(sockets)
    d.log_path = log_dir / "before.log"
    with pytest.raises(RuntimeError) as failed:
        d.start()
    d.stop()
    assert f"cannot serve on {d.socket}" in str(failed.value) and "Permission denied" in str(failed.value)

    # The init container, as it runs: uid 0 with the pod's runAsGroup, only CHOWN and FOWNER.
    [init] = POD["initContainers"]
    command = [a.replace(HOST_DIR, str(sockets)) for a in init["command"]]
    caps = ",".join("+" + c.lower() for c in init["securityContext"]["capabilities"]["add"])
    pod_gid = POD["securityContext"]["runAsGroup"]
    r = subprocess.run(["setpriv", f"--regid={pod_gid}", "--clear-groups", "--inh-caps=-all",
                        f"--bounding-set=-all,{caps}", *command], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    st = sockets.stat()
    assert (st.st_uid, st.st_gid) == (4242, 4242) and stat.S_IMODE(st.st_mode) == 0o750

    # Neither capability is superfluous: without FOWNER the chmod fails, without CHOWN the chown.
    for missing in init["securityContext"]["capabilities"]["add"]:
        os.chown(sockets, 0, 0)
        sockets.chmod(0o755)
        rest = ",".join("+" + c.lower() for c in init["securityContext"]["capabilities"]["add"] if c != missing)
        r = subprocess.run(["setpriv", f"--regid={pod_gid}", "--clear-groups", "--inh-caps=-all",
                            f"--bounding-set=-all,{rest}", *command], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "not permitted" in r.stderr, (missing, r.stderr)
    r = subprocess.run(command, capture_output=True, text=True, timeout=60)  # restore, as root
    assert r.returncode == 0, r.stderr

    d = _btfd_as_pod(sockets)
    d.log_path = log_dir / "after.log"
    try:
        d.start()
        for path in (d.socket, d.fd_socket):
            st = os.stat(path)
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4242, 4242, 0o660), path

        sc = AGENT["securityContext"]
        agent = as_user(sc["runAsUser"], sc["runAsUser"], sc["supplementalGroups"])
        stranger = as_user(sc["runAsUser"], sc["runAsUser"], [])
        health = [BTFCTL, "--socket", d.socket, "--timeout", "10", "health"]
        r = subprocess.run([*agent, *health], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert fd_request(d.fd_socket, *agent)["fds"] == 1
        # The agent's read-only mount of the directory (agent-example.yaml) is enough.
        [mount] = AGENT["containers"][0]["volumeMounts"]
        assert mount["readOnly"] is True
        ro = node_dir / "agent-view"
        ro.mkdir()
        r = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$1" "$2" && touch "$2/x" 2>&1; shift 2; '
                            'exec "$@"', "sh", str(sockets), str(ro), *agent, BTFCTL, "--socket",
                            str(ro / "btfd.sock"), "--timeout", "10", "health"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0 and "Read-only file system" in r.stdout, r.stdout + r.stderr
        # Outside group 4242 nothing gets through: no search permission on the directory.
        r = subprocess.run([*stranger, *health], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0, r.stdout
        r = subprocess.run([*stranger, sys.executable, "-c", FD_PEER, d.fd_socket], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode != 0 and "PermissionError" in r.stderr, r.stderr
    finally:
        d.stop()


def test_private_user_namespace_hides_peers_from_allow_lists(node_dir: Path) -> None:
    """What PrivateUsers=yes does to --allow-uid: the same daemon and peer, with and without a
    user namespace of btfd's own (unshare -U -r maps only root, as systemd maps only root and
    btfd), answer differently, because the peer's uid reads as 65534 inside."""
    agent = as_user(1000, 1000, [])
    answers = []
    for name, prefix in (("host", []), ("userns", ["unshare", "-U", "-r"])):
        d = BtfdProcess(node_dir / name, "--allow-uid", "1000", "--socket-mode", "0666",
                        "--metrics-address", "off", wait=False)
        (node_dir / name).chmod(0o755)
        d.args = [*prefix, *d.args]
        try:
            d.start()
            answers.append(fd_request(d.fd_socket, *agent))
        finally:
            d.stop()
    host, userns = answers
    assert host["fds"] == 1 and host["answer"]["spec"] == "vmlinux", host
    assert userns == {"answer": {"error": "peer uid/gid not allowed", "code": "PERMISSION_DENIED"}, "fds": 0}
