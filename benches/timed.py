#!/usr/bin/env python3
"""Run a command; append "<wall seconds> <peak RSS KiB> <CPU seconds>" of that one run to a file.

Usage: timed.py OUTFILE CMD [ARGS...]. Wall time comes from perf_counter (ns resolution);
peak resident memory from GNU time's %M, which is the child's own (GNU time is a small C
program, so the copy of the parent a fork starts with is ~1 MiB, not this Python's
~13 MiB); CPU time (user + system, all threads, microseconds) from this process's
RUSAGE_CHILDREN before and after, which includes GNU time's own fraction of a millisecond.
stdout is discarded; stderr is shown only if the command fails.
"""
import os, resource, subprocess, sys, tempfile, time

out, cmd = sys.argv[1], sys.argv[2:]
with tempfile.NamedTemporaryFile("r") as mem:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", mem.name, *cmd],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.stderr.write(p.stderr.decode(errors="replace"))
        sys.exit(1)
    rss = int(mem.read().split()[-1])
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
with open(out, "a") as f:
    f.write(f"{wall:.6f} {rss} {cpu:.6f}\n")
