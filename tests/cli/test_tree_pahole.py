"""``btfctl lookup --format tree`` against ``pahole -F btf``: the same text.

The one intended difference is normalised out: pahole guesses
``__attribute__((__aligned__(N)))`` for members and structs from holes before cacheline-aligned
members (and counts them in a "forced alignments" line); BTF records no alignment and we print
the hole, not the guess. On lines where pahole printed the attribute, spacing is compared
loosely (pahole aligns the comment after the attribute text)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from btfd.btf import Kind, Spec
from btfd.cli._render import tree
from tests.server.conftest import BtfdProcess

BTFCTL = str(Path(sys.executable).with_name("btfctl"))
ALIGNED = re.compile(r" __attribute__\(\(__aligned__\(\d+\)\)\)")
FORCED = re.compile(r"\t/\* forced alignments: .* \*/")

# bitfields and bit holes (task_struct, sk_buff), byte holes (kstat, sock_fprog), anonymous
# unions and structs nested several deep (sk_buff, page, mm_struct), function pointers
# (file, super_block), `const T * const *` (super_block), cacheline markers everywhere.
NAMES = ["sk_buff", "task_struct", "kstat", "sock_fprog", "file_ra_state", "list_head", "mm_struct",
         "page", "inode", "sock", "net_device", "file", "super_block", "dentry", "bpf_prog", "bpf_map",
         "tcp_sock", "irq_desc", "request_queue"]


def same(pahole: str, ours: str) -> bool:
    want = [x for x in pahole.splitlines() if not FORCED.fullmatch(x)]
    got = ours.splitlines()
    if len(want) != len(got):
        return False
    for w, g in zip(want, got, strict=True):
        if ALIGNED.search(w):
            if ALIGNED.sub("", w).split() != g.split():
                return False
        elif w != g:
            return False
    return True


def pahole(path: Path, *names: str) -> str:
    args = ["pahole", "-F", "btf", str(path)] + (["-C", ",".join(names)] if names else [])
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.stdout, r.stderr[-2000:]
    return r.stdout


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, kernel_vmlinux: Path):  # type: ignore[no-untyped-def]
    with BtfdProcess(tmp_path_factory.mktemp("tree"), "--metrics-address", "off") as proc:
        yield proc


@pytest.mark.parametrize("name", NAMES)
def test_btfctl_tree_is_paholes_text(daemon, kernel_vmlinux: Path, name: str) -> None:
    r = subprocess.run([BTFCTL, "--socket", daemon.socket, "lookup", name, "--kind", "struct",
                        "--format", "tree"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    want = pahole(kernel_vmlinux, name)
    assert same(want, r.stdout), f"pahole:\n{want}\nbtfctl:\n{r.stdout}"


def test_tree_matches_pahole_for_nearly_every_struct_and_union(kernel_vmlinux: Path) -> None:
    """Every uniquely named struct and union of the running kernel, against pahole's full
    output. A few quirks of pahole are not reproduced (enumerators above INT_MAX printed
    unsigned, `[]` vs `[0]` for zero-length arrays inside nested structs, `const` on an
    inline anonymous struct): at most 1% may differ."""
    spec = Spec(kernel_vmlinux.read_bytes())
    blocks: dict[str, list[str]] = {}
    cur: list[str] | None = None
    key = ""
    for line in pahole(kernel_vmlinux).splitlines(keepends=True):
        if cur is None:
            m = re.match(r"(struct|union) (\w+) \{\n", line)
            if m:
                key, cur = f"{m.group(1)} {m.group(2)}", [line]
            continue
        cur.append(line)
        if line.startswith("}"):
            blocks.setdefault(key, []).append("".join(cur))
            cur = None
    checked, differ = 0, []
    for key, texts in blocks.items():
        kw, name = key.split()
        ids = spec.find_ids(name, Kind.STRUCT if kw == "struct" else Kind.UNION)
        if len(texts) != 1 or len(ids) != 1:
            continue
        checked += 1
        if not same(texts[0], tree(spec, ids[0])):
            differ.append(name)
    assert checked > 1000
    assert len(differ) <= checked // 100, (len(differ), checked, differ[:20])
