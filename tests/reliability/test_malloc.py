"""The daemon's malloc tuning (btfd.server.main.tune_malloc) does what its soak figures rely on:
a big block freed once does not move later big blocks onto the heap, where their pages
would stay resident."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# In a fresh interpreter (malloc state is per process): free one 1 MiB block, which glibc
# mapped, then allocate 256 KiB and ask mallinfo2 whether that block was mapped too.
PROBE = r"""
import ctypes, json, sys
sys.path.insert(0, sys.argv[1])
tuned = None
if sys.argv[2] == "tuned":
    from btfd.server.main import tune_malloc
    tuned = tune_malloc()

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                             "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
libc.free(libc.malloc(1 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(256 << 10)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(json.dumps({"tuned": tuned, "mapped": mapped}))
"""


def probe(mode: str) -> dict[str, object]:
    r = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), mode], capture_output=True, text=True,
                       timeout=60, check=True)
    return json.loads(r.stdout)


def test_big_blocks_stay_mapped_after_a_bigger_one_was_freed() -> None:
    # Untuned glibc raises its mmap threshold to 1 MiB on that free: the 256 KiB block comes
    # from the heap. This is the behaviour the tuning exists to stop (and shows the probe can tell).
    assert probe("default") == {"tuned": None, "mapped": 0}
    assert probe("tuned") == {"tuned": True, "mapped": 1}
