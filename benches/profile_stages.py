#!/usr/bin/env python3
"""Groups a `perf report --no-children --sort comm,sym --stdio` listing into stages.

Usage: perf report ... | profile_stages.py TITLE CORES
Prints one table: stage, share of all samples, core-seconds (from perf's event count:
cpu-clock counts nanoseconds), and the same per thread.
"""
import re
import sys
from collections import defaultdict

title, cores = sys.argv[1], int(sys.argv[2])

# First match wins. Patterns apply to the symbol; the thread decides the rest.
STAGES = [
    ("SHA-256", r"sha2::"),
    ("AES-GCM: AES-CTR", r"aes::|StreamCipher|ctr::"),
    ("AES-GCM: GHASH", r"polyval::|ghash::|universal_hash::"),
    ("kernel: read (copy from page cache)", r"_copy_to_iter|filemap_read|filemap_get|copy_page_to_iter|readv"),
    ("kernel: write (page cache, ext4)", r"copy_folio_from_iter|ext4_|generic_perform_write|__es_|dquot|folio|memcg|alloc_pages|shmem"),
    ("libc memcpy (inside AES-CTR)", r"__memmove|__memcpy"),
    ("idle", r"pv_native_safe_halt|default_idle|cpu_idle"),
]

rows = defaultdict(float)          # stage -> percent
threads = defaultdict(float)       # thread -> percent
others = defaultdict(float)        # symbol -> percent, for what no stage matched
total_ns = 0
line_re = re.compile(r"^\s+([\d.]+)%\s+(\S+)\s+\[([.k])\]\s+(.*)$")
for line in sys.stdin:
    if line.startswith("# Event count"):
        total_ns = int(line.split(":")[1])
    m = line_re.match(line)
    if not m:
        continue
    pct, comm, _space, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
    threads[comm] += pct
    if comm == "swapper":
        stage = "idle"
    elif comm.startswith("kworker") or comm == "vault-flush":
        stage = "write-back (flush thread, kworkers)"
    else:
        stage = next((name for name, pat in STAGES if re.search(pat, sym)), "other")
    rows[stage] += pct
    if stage == "other":
        others[sym.strip()[:60]] += pct

core_s = total_ns / 1e9
wall = core_s / cores

print(f"== {title}: {wall:.3f} s recorded x {cores} cores = {core_s:.3f} core-seconds")
print(f"{'stage':42} {'share':>7} {'core-s':>8}")
for stage, pct in sorted(rows.items(), key=lambda kv: -kv[1]):
    print(f"{stage:42} {pct:6.1f}% {pct / 100 * wall * cores:8.3f}")
top = ", ".join(f"{sym} {pct:.1f}%" for sym, pct in sorted(others.items(), key=lambda kv: -kv[1])[:4])
print(f"  (largest in other: {top})")
print(f"{'by thread':42}")
for comm, pct in sorted(threads.items(), key=lambda kv: -kv[1])[:6]:
    print(f"  {comm:40} {pct:6.1f}% {pct / 100 * wall * cores:8.3f}")
print()
