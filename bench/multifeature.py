#!/usr/bin/env python3
"""multifeature.py - does a feature that carries the signal survive features
that do not?  (bench/README, "Multi-feature bench")

    bench/multifeature.py [--seeds "1 2 3"] [--ks "1 3 7"] [--kinds "noise nab"]
                          [--transforms "none normalize"] [--units mixed]
                          [--telemetry] -- NAB_ENGINE_OPTIONS...

1. NAB: every series alone (k = 0), then with k extra features of pure noise
   ("noise") or of unrelated NAB series ("nab"), in other units (x1000 and
   x0.001 alternately; bench/nab_engine --extra), scored as one point by
   bench/nab_engine in grade mode with the given options and each transform,
   one run per seed; NAB's scores of the series' own labels at the
   corpus-optimised and the fixed threshold.  Prints per transform, kind
   and k the median over the seeds and its difference from the series alone
   with the same transform:
     multifeature corpus=nab transform=normalize kind=noise k=3 units=mixed
         threshold_mode=fixed seeds=1,2,3 standard=.. reward_low_FP=..
         reward_low_FN=.. delta_standard=..
2. With --telemetry: NASA's SMAP and MSL telemetry (25 and 55 features per
   channel, labelled; see bench/README), from the folder named by
   $TELEMETRY_SRC (labeled_anomalies.csv, train/, test/), converted by
   bench/telemetry_prepare.py; every channel with all its features, per
   transform:
     multifeature corpus=telemetry transform=.. threshold_mode=.. seeds=..
         standard=.. reward_low_FP=.. reward_low_FN=..
   Skipped, saying so, when $TELEMETRY_SRC is unset or absent.
   $TELEMETRY_EVERY=N keeps every N-th channel only (a smaller corpus).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from nab_common import HERE, NAB_ROOT, NAB_SCORE, FIXED, PROFILES, engine_args


def run(corpus, out, seed, opts):
    """bench/nab_engine over corpus; {(mode): {profile: score}}."""
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([os.path.join(HERE, "nab_engine"), "--nab", corpus, "--out", out,
                    "--mode", "grade", "--seed", seed] + opts, check=True)
    res = {}
    for mode, thr in (("opt", None), ("fixed", FIXED)):
        js = out + ".json"
        cmd = [sys.executable, NAB_SCORE, out, "--nab-root", corpus, "--name", "r",
               "--json", js]
        if thr:
            cmd += ["--threshold", thr]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        prof = json.load(open(js))["r"]["profiles"]
        res[mode] = {short: prof[name]["normalised"] for name, short in PROFILES}
    shutil.rmtree(out)
    return res


def median_of(runs, mode):
    return {p: statistics.median(r[mode][p] for r in runs) for _, p in PROFILES}


def main(argv):
    opts = {"--seeds": "1 2 3", "--ks": "1 3 7", "--kinds": "noise nab",
            "--transforms": "none normalize", "--units": "mixed"}
    parsed = engine_args(argv, opts, flags=("--telemetry",))
    if parsed is None:
        print(__doc__)
        return 2
    telemetry = "--telemetry" in parsed[0]
    engine = parsed[1]
    seeds = opts["--seeds"].split()
    tmp = tempfile.mkdtemp(prefix="multifeature.")
    lines = []

    def emit(s):
        print(s)
        sys.stdout.flush()
        lines.append(s)
    try:
        if not os.path.isdir(os.path.join(NAB_ROOT, "data")):
            print("multifeature: NAB skipped, no corpus at %s (set NAB_ROOT)" % NAB_ROOT)
        else:
            for tf in opts["--transforms"].split():
                o = engine + ["--transform", tf]
                alone = [run(NAB_ROOT, os.path.join(tmp, "r"), s, o) for s in seeds]
                base = {m: median_of(alone, m) for m in ("opt", "fixed")}
                for m in ("opt", "fixed"):
                    b = base[m]
                    emit("multifeature corpus=nab transform=%s kind=alone k=0 units=- "
                         "threshold_mode=%s seeds=%s standard=%.2f reward_low_FP=%.2f "
                         "reward_low_FN=%.2f delta_standard=0.00" %
                         (tf, m, ",".join(seeds), b["standard"], b["reward_low_FP"],
                          b["reward_low_FN"]))
                for kind in opts["--kinds"].split():
                    for k in opts["--ks"].split():
                        ox = o + ["--extra", k, "--extra-kind", kind,
                                  "--extra-units", opts["--units"]]
                        runs = [run(NAB_ROOT, os.path.join(tmp, "r"), s, ox) for s in seeds]
                        for m in ("opt", "fixed"):
                            r = median_of(runs, m)
                            emit("multifeature corpus=nab transform=%s kind=%s k=%s units=%s "
                                 "threshold_mode=%s seeds=%s standard=%.2f reward_low_FP=%.2f "
                                 "reward_low_FN=%.2f delta_standard=%.2f" %
                                 (tf, kind, k, opts["--units"], m, ",".join(seeds),
                                  r["standard"], r["reward_low_FP"], r["reward_low_FN"],
                                  r["standard"] - base[m]["standard"]))
        if telemetry:
            src = os.environ.get("TELEMETRY_SRC", "")
            if not src or not os.path.exists(os.path.join(src, "labeled_anomalies.csv")):
                print("multifeature: telemetry skipped, TELEMETRY_SRC (a folder with "
                      "labeled_anomalies.csv, train/, test/) is unset or absent")
            else:
                corpus = os.path.join(tmp, "telemetry")
                subprocess.run([sys.executable, os.path.join(HERE, "telemetry_prepare.py"),
                                src, corpus, os.environ.get("TELEMETRY_EVERY", "1")],
                               check=True)
                for tf in opts["--transforms"].split():
                    runs = [run(corpus, os.path.join(tmp, "t"), s, engine + ["--transform", tf])
                            for s in seeds]
                    for m in ("opt", "fixed"):
                        r = median_of(runs, m)
                        emit("multifeature corpus=telemetry transform=%s threshold_mode=%s "
                             "seeds=%s standard=%.2f reward_low_FP=%.2f reward_low_FN=%.2f" %
                             (tf, m, ",".join(seeds), r["standard"], r["reward_low_FP"],
                              r["reward_low_FN"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
