#!/usr/bin/env python3
"""nab_protocol.py - the validation protocol's NAB scoring (bench/README).

    bench/nab_protocol.py split [--nab-root DIR]
        prints each NAB file with its split: "tuning" or "heldback"
    bench/nab_protocol.py score [--config NAME] [--seed N] RESULTS_DIR...
        scores each results dir (one detector run over the whole corpus) on
        the tuning split, the held-back split and the full corpus, at NAB's
        corpus-optimised threshold and at the fixed threshold, and prints
        one machine-readable line per split and threshold:
          nab_protocol config=.. seed=.. split=tuning|heldback|full
              threshold_mode=opt|fixed standard=.. reward_low_FP=.. reward_low_FN=..
    bench/nab_protocol.py medians < LINES
        reads "nab_protocol ..." lines of several seeds and prints their
        medians per config, split and threshold (seed=median)
    bench/nab_protocol.py engine --config NAME [--seeds "1 2 3"] [--out DIR]
                                 [--splits tuning] -- NAB_ENGINE_OPTIONS...
        runs bench/nab_engine once per seed with the given options, scores
        each run, and prints the lines above plus the medians over the seeds
        (seed=median).  For sweeps: "--splits tuning" scores the tuning
        split only, which is all a choice of defaults may look at.

The split is a fixed rule: the 58 files sorted by "category/file" (byte
order), then taken alternately, the 1st, 3rd, 5th ... to the tuning split,
the 2nd, 4th ... to the held-back split.  Sorting by category first makes
the rule stratified: every category with two files or more has files on
both sides, so neither split lacks a kind of series (a split by category
would leave, say, all the Twitter series or all the artificial ones out of
tuning).  It does not look at the labels or at any score.

Each split is scored as its own corpus (nab_score.py --subset): its own
null and perfect detectors, and at "opt" its own optimised threshold.
The fixed threshold (NAB_FIXED_THRESHOLD, default 0.000001) counts every
row whose score is above 0 - for anomaly grades, every is_anomaly row.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from nab_common import HERE, NAB_ROOT, NAB_SCORE, FIXED, PROFILES


def corpus(nab_root):
    """The corpus's files, category/file.csv, in byte order."""
    data = os.path.join(nab_root, "data")
    files = []
    for cat in os.listdir(data):
        if os.path.isdir(os.path.join(data, cat)):
            files += [cat + "/" + f for f in os.listdir(os.path.join(data, cat))
                      if f.endswith(".csv")]
    return sorted(files, key=lambda s: s.encode())


def split(nab_root):
    """{"tuning": [...], "heldback": [...], "full": [...]} by the fixed rule."""
    files = corpus(nab_root)
    return {"tuning": files[0::2], "heldback": files[1::2], "full": files}


def score_split(results, files, threshold, tmp):
    """NAB's three normalised scores of results over files only."""
    sub = tempfile.mkdtemp(dir=tmp)
    for f in files:
        os.makedirs(os.path.join(sub, os.path.dirname(f)), exist_ok=True)
        os.symlink(os.path.abspath(os.path.join(results, f)), os.path.join(sub, f))
    out = os.path.join(sub, "score.json")
    cmd = [sys.executable, NAB_SCORE, sub, "--nab-root", NAB_ROOT, "--subset",
           "--name", "r", "--json", out]
    if threshold != "opt":
        cmd += ["--threshold", threshold]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    prof = json.load(open(out))["r"]["profiles"]
    shutil.rmtree(sub)
    return {short: prof[name]["normalised"] for name, short in PROFILES}


def score(results, config, seed, splits, tmp):
    """Lines (dicts) of one run: per split and threshold."""
    parts = split(NAB_ROOT)
    rows = []
    for sp in splits:
        for mode, thr in (("opt", "opt"), ("fixed", FIXED)):
            s = score_split(results, parts[sp], thr, tmp)
            rows.append(dict(config=config, seed=seed, split=sp,
                             threshold_mode=mode, **s))
    return rows


def line(r):
    return ("nab_protocol config=%s seed=%s split=%s threshold_mode=%s "
            "standard=%.2f reward_low_FP=%.2f reward_low_FN=%.2f" %
            (r["config"], r["seed"], r["split"], r["threshold_mode"],
             r["standard"], r["reward_low_FP"], r["reward_low_FN"]))


def medians(rows):
    """Median over seeds per config, split and threshold."""
    out = []
    keys = []
    for r in rows:
        k = (r["config"], r["split"], r["threshold_mode"])
        if k not in keys:
            keys.append(k)
    for c, sp, m in keys:
        sel = [r for r in rows if (r["config"], r["split"], r["threshold_mode"]) == (c, sp, m)
               and r["seed"] != "median"]
        out.append(dict(config=c, seed="median", split=sp, threshold_mode=m,
                        **{p: statistics.median(r[p] for r in sel)
                           for _, p in PROFILES}))
    return out


def main(argv):
    global NAB_ROOT
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    cmd, args = argv[0], argv[1:]
    opts = {"--config": "run", "--seed": "-", "--seeds": "1 2 3", "--out": None,
            "--splits": "tuning heldback full", "--nab-root": None}
    rest = []
    while args:
        a = args.pop(0)
        if a == "--":
            rest += args
            break
        if a in opts:
            opts[a] = args.pop(0)
        else:
            rest.append(a)
    if opts["--nab-root"]:
        NAB_ROOT = opts["--nab-root"]
    if not os.path.isdir(os.path.join(NAB_ROOT, "data")):
        print("nab_protocol: skipped, no NAB corpus at %s (set NAB_ROOT)" % NAB_ROOT)
        return 0
    splits = opts["--splits"].split()
    tmp = tempfile.mkdtemp(prefix="nab-protocol.")
    try:
        if cmd == "split":
            for sp in ("tuning", "heldback"):
                for f in split(NAB_ROOT)[sp]:
                    print(sp, f)
        elif cmd == "score":
            for d in rest:
                for r in score(d, opts["--config"], opts["--seed"], splits, tmp):
                    print(line(r))
        elif cmd == "medians":
            rows = []
            for ln in sys.stdin:
                if ln.startswith("nab_protocol "):
                    kv = dict(f.split("=", 1) for f in ln.split()[1:])
                    for _, p in PROFILES:
                        kv[p] = float(kv[p])
                    rows.append(kv)
            for r in medians(rows):
                print(line(r))
        elif cmd == "engine":
            rows = []
            engine = os.path.join(HERE, "nab_engine")
            base = opts["--out"] or tmp
            for seed in opts["--seeds"].split():
                out = os.path.join(base, "%s-seed%s" % (opts["--config"], seed))
                shutil.rmtree(out, ignore_errors=True)
                subprocess.run([engine, "--nab", NAB_ROOT, "--out", out,
                                "--mode", "grade", "--seed", seed] + rest, check=True)
                rows += score(out, opts["--config"], seed, splits, tmp)
                if not opts["--out"]:
                    shutil.rmtree(out)
            for r in rows + medians(rows):
                print(line(r))
            sys.stdout.flush()
        else:
            print("unknown command %s" % cmd, file=sys.stderr)
            return 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
