"""Start-up failures that must end in a clear message and a non-zero exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.server.conftest import BTFD

AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]


def test_unreadable_vmlinux_is_a_permission_error_not_a_missing_btf(kernel_vmlinux: Path) -> None:
    """Run as a non-root uid (root reads mode-000 files anyway)."""
    d = Path(tempfile.mkdtemp(prefix="btfd-eacces-"))
    try:
        sysfs = d / "sys"
        sysfs.mkdir()
        shutil.copyfile(kernel_vmlinux, sysfs / "vmlinux")
        os.chmod(sysfs / "vmlinux", 0)
        run = d / "run"
        run.mkdir()
        for p in (d, sysfs, run):
            os.chown(p, 65534, 65534)
        os.chown(sysfs / "vmlinux", 0, 0)
        r = subprocess.run([*AS_NOBODY, BTFD, "--socket", str(run / "btfd.sock"), "--sysfs-btf-dir",
                            str(sysfs), "--metrics-address", "off"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0
        assert f"{sysfs / 'vmlinux'}: Permission denied" in r.stderr
        assert "btfd runs as uid 65534, which may not read it" in r.stderr
        assert "CONFIG_DEBUG_INFO_BTF" not in r.stderr
        assert "Traceback" not in r.stderr
        assert not (run / "btfd.sock").exists()
        # A missing file keeps the BTF hint.
        (sysfs / "vmlinux").unlink()
        r = subprocess.run([*AS_NOBODY, BTFD, "--socket", str(run / "btfd.sock"), "--sysfs-btf-dir",
                            str(sysfs), "--metrics-address", "off"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "CONFIG_DEBUG_INFO_BTF" in r.stderr
        assert "may not read it" not in r.stderr
    finally:
        subprocess.run(["rm", "-rf", str(d)], check=False)
