"""The acceptance checker itself (../shared/core-corpus/check.py beside the clone), run
against the installed ``btfctl``. A user's clone has no ../shared: there the tests/data-based
corpus test (test_corpus.py) covers the same records."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = ROOT.parent / "shared" / "core-corpus" / "check.py"
BTFCTL = ROOT / ".venv" / "bin" / "btfctl"


@pytest.mark.skipif(not CHECK.exists(), reason=f"{CHECK} is absent (not a CI checkout beside ../shared)")
def test_shared_checker_passes_every_record() -> None:
    btfctl = str(BTFCTL) if BTFCTL.exists() else f"{sys.executable} -m btfd.cli"
    p = subprocess.run(
        [sys.executable, str(CHECK), "--btfctl", btfctl],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )
    last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    assert last == "2105 passed, 0 failed", p.stdout[-3000:] + p.stderr[-2000:]
    assert p.returncode == 0
