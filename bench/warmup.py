#!/usr/bin/env python3
"""warmup.py - is the first real spike after the forest's warm-up flagged?

    bench/warmup.py [--series 200] [--length 400] -- NAB_ENGINE_OPTIONS...

NAB cannot tell: its scorer ignores the first 15 % of every file (the
probationary period), far longer than the forest's warm-up (sample_size / 4
points) plus the grader's (`warmup` scores).  So this bench builds its own
series: Gaussian noise (mean 100, deviation 1, a daily-like sine of
amplitude 2 in half of them) with one spike of +8 deviations at a point drawn
uniformly from [forest warm-up, forest warm-up + 160), deterministic per
series; runs bench/nab_engine in grade mode with the given options; and
counts
  caught   series whose spike fires within 4 points of it
  false    firings farther than that from the spike (per 1000 graded points)
  early    series with a false firing in the first 64 graded points
Prints one line:
  warmup series=.. caught=.. caught_pct=.. false_per_1000=.. early_false=.. options=..
"""
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile

from nab_common import HERE, engine_args


def main(argv):
    opts = {"--series": "200", "--length": "400"}
    parsed = engine_args(argv, opts)
    if parsed is None:
        print(__doc__)
        return 2
    engine = parsed[1]
    series, length = int(opts["--series"]), int(opts["--length"])
    samples = 256
    if "--samples" in engine:
        samples = int(engine[engine.index("--samples") + 1])
    start = max(1, samples // 4)
    tmp = tempfile.mkdtemp(prefix="warmup.")
    try:
        spikes = {}
        os.makedirs(os.path.join(tmp, "nab", "data", "synthetic"))
        for i in range(series):
            rng = random.Random(1000 + i)
            spike = start + rng.randrange(160)
            name = "s%03d.csv" % i
            spikes[name] = spike
            with open(os.path.join(tmp, "nab", "data", "synthetic", name), "w") as f:
                f.write("timestamp,value\n")
                for r in range(length):
                    v = 100 + rng.gauss(0, 1)
                    if i % 2:
                        v += 2 * math.sin(2 * math.pi * r / 96)
                    if r == spike:
                        v += 8
                    f.write("2000-01-01 %02d:%02d:00,%.6f\n" % (r // 60 % 24, r % 60, v))
        out = os.path.join(tmp, "out")
        subprocess.run([os.path.join(HERE, "nab_engine"), "--nab", os.path.join(tmp, "nab"),
                        "--out", out, "--mode", "grade"] + engine, check=True)
        caught = false = early = graded = 0
        for name, spike in spikes.items():
            with open(os.path.join(out, "synthetic", name)) as f:
                grades = [float(ln.split(",")[1]) for ln in f.readlines()[1:]]
            caught += any(g > 0 for g in grades[spike:spike + 5])
            fires = [r for r, g in enumerate(grades) if g > 0 and not spike <= r < spike + 5]
            false += len(fires)
            early += any(r < start + 64 for r in fires)
            graded += length - start
        print("warmup series=%d caught=%d caught_pct=%.1f false_per_1000=%.2f early_false=%d options=%s"
              % (series, caught, 100.0 * caught / series, 1000.0 * false / graded, early,
                 ",".join(engine) or "-"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
