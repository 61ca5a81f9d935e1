#!/usr/bin/env python3
"""Run a command; append "<wall seconds> <peak RSS KiB> <CPU seconds>" of that one run to a file.

Usage: timed.py OUTFILE CMD [ARGS...]. Wall time comes from perf_counter (ns resolution);
peak resident memory and CPU time (user + system, all threads; 10 ms resolution) from
GNU time's %M, %U and %S, which are the child's own (GNU time is a small C program, so
the copy of the parent a fork starts with is ~1 MiB, not this Python's ~13 MiB).
stdout is discarded; stderr is shown only if the command fails.
"""
import os, subprocess, sys, tempfile, time

out, cmd = sys.argv[1], sys.argv[2:]
with tempfile.NamedTemporaryFile("r") as mem:
    start = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", mem.name, *cmd],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.stderr.write(p.stderr.decode(errors="replace"))
        sys.exit(1)
    rss, user, system = mem.read().split()[-3:]
with open(out, "a") as f:
    f.write(f"{wall:.6f} {rss} {float(user) + float(system):.2f}\n")
