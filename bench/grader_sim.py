#!/usr/bin/env python3
"""grader_sim.py - study ways of turning forest scores into is_anomaly,
offline, on the protocol's NAB splits (bench/README, "Grader study").

    bench/grader_sim.py [--splits "tuning"] [--opt] SCORE_DIR... -- CONFIG...

SCORE_DIR: the raw forest scores of one engine run over the whole corpus
(or DIR1+DIR2: a run in parts, say the tuning and the held-back files)
(bench/nab_engine --mode score; the forest does not depend on the grader,
so every grader can be tried on the same scores).  CONFIG: name=key:value,...
for the grader below, e.g.  base=z:4  ratio2=z:4,ratio:2 ; keys:

  z        z_factor (4)               floor   score_floor (0.8)
  h        score_horizon (3000)       sup     suppress (100)
  warm     warm-up scores (8)         w       short window averaged (1)
  ratio    also require avg > ratio * mean (0: off)
  wmean    1: learn the mean/variance of the short-window averages, not of
           single scores (Numenta's anomaly likelihood does so)
  clip     learn each score clipped to mean + clip * sd (0: off), so an
           anomaly does not widen the distribution it is tested against
  log      1: statistics of log(score) instead of score
  esc      escalation while muted (2)
  sdf      floor of the deviation relative to the mean (0.001)
  rearm    end the muting early once a score falls below mean + rearm * sd
           (0: off; muting lasts sup points)
  feat     grade per-feature scores (SCORE_DIR from --mode fscore; a file
           with one feature is graded on its score as without): 1 = the
           most deviant feature against its own statistics, 2 = that or
           the total score, 3 / 4 = the largest / the root of the sum of
           squares of the positive per-feature deviations, graded as a
           score, 5 = the total at z, confirmed by one feature at zf
           (0: the total only; bench/README, "Third study")
  bonf     with feat: a feature fires zf = z + bonf * ln(features)
           deviations above its mean (0)
  fz       with feat: zf itself, in place of the rule above (0: unset)
  fsub     feat 5: the features' statistics learn every fsub-th point (1)
  fwarm    feat 3 / 4: points before the statistic is graded; feat 5:
           samples before the features are tested, the total alone at zf
           until then (32)

  mem      fire only at a deviation of at least mem times the largest of
           the earlier firings (0: off); memh: that memory's half-life in
           points (3000); memf 1: remember candidates that did not fire
  q        also require the averaged score above the q quantile (times qf,
           1) of the last qh (3000) averaged scores (0: off); qonly 1:
           that quantile replaces the deviation test
  trcf     1: the AWS thresholded forest's BasicThresholder instead of the
           grader (grade_trcf; tz, sdiff, secd, pdisc, adj, norm, gmin,
           sup; bench/README, "Fifth study")

The default of every key is the engine's grader as it is (src/rcf/grade.c,
CUSUM off).  Prints per config, seed and split the NAB normalised scores
at the fixed threshold (every is_anomaly row) and, with --opt, at NAB's
optimised threshold, then the median over the SCORE_DIRs (seeds):
  grader_sim config=.. seed=.. split=.. threshold_mode=.. standard=.. ...
"""
import bisect
import math
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NAB_ROOT = os.environ.get("NAB_ROOT", os.path.join(ROOT, "..", "shared", "nab"))
NAB_SCORE = os.environ.get("NAB_SCORE",
                           os.path.join(ROOT, "..", "shared", "tools", "nab_score.py"))
sys.path.insert(0, os.path.dirname(NAB_SCORE))
sys.path.insert(0, HERE)
import nab_score  # noqa: E402
import nab_protocol  # noqa: E402

PROFILES = [("standard", "standard"), ("reward_low_FP_rate", "reward_low_FP"),
            ("reward_low_FN_rate", "reward_low_FN")]
DEFAULTS = dict(z=4.0, floor=0.8, h=3000.0, sup=100, warm=8, w=1, ratio=0.0,
                wmean=0, clip=0.0, log=0, esc=2.0, sdf=1e-3, rearm=0.0,
                feat=0, bonf=0.0, fz=0.0, fwarm=32, fsub=1, mem=0.0, memh=3000.0,
                memf=0.0, trcf=0, tz=3.0, sdiff=0.5, secd=0.01, pdisc=0.0,
                adj=1, gmin=0.0, norm=1, q=0.0, qf=1.0, qh=3000, qonly=0)


def grade_features(rows, c):
    """Grades of one file from its per-feature scores (rows of [score,
    f_1, .. f_K], bench/nab_engine --mode fscore): each feature's part of the
    score has its own running mean and deviation.  feat 1: a point fires when
    its most deviant feature stands zf deviations above its own mean, zf = z +
    bonf * ln K (or fz when given): the multiple test over K features raises
    the bar; feat 2: when that or the total score fires.  Muting, escalation
    (on the total), the floor (on the total) and the warm-up as grade()."""
    z, floor, hor = c["z"], c["floor"], c["h"]
    sup, warm, esc, sdf = int(c["sup"]), int(c["warm"]), c["esc"], c["sdf"]
    mode = int(c["feat"])
    nf = len(rows[0]) - 1 if rows else 1
    zf = c["fz"] if c["fz"] > 0 else z + c["bonf"] * math.log(nf)
    mean = var = 0.0
    fm = [0.0] * nf
    fv = [0.0] * nf
    count = left = fn = 0
    fsub, fwarm = int(c["fsub"]), int(c["fwarm"])
    peak = 0.0
    out = []
    for r in rows:
        s = r[0]
        if s <= 0.0:
            out.append(0.0)
            continue
        f = r[1:]
        sd = max(math.sqrt(var), sdf * mean)
        g = 0.0
        if count >= warm and sd > 0.0 and s > floor and (left == 0 or s > esc * peak):
            ex = -1.0
            for j in range(nf):
                sj = max(math.sqrt(fv[j]), sdf * fm[j])
                if sj > 0.0:
                    ex = max(ex, (f[j] - fm[j]) / sj - zf)
            if mode == 2:
                ex = max(ex, (s - mean - z * sd) / sd)
            elif mode == 5 and fn < fwarm:
                # the features' statistics are not ready: the total alone
                ex = (s - mean - zf * sd) / sd
            elif mode == 5:
                # the total passes a lower bar, confirmed by one feature
                # standing zf deviations above its own mean
                ex = (s - mean - z * sd) / sd if ex > 0.0 else -1.0
            if ex > 0.0:
                g = max(ex / (1 + ex), 1e-6)
        out.append(g)
        if g > 0:
            left = sup
            peak = s
        elif left > 0:
            left -= 1
        count += 1
        a = 1.0 / (count if count < hor else hor)
        d = s - mean
        mean += a * d
        var = (1 - a) * (var + a * d * d)
        if mode != 5 or (count - 1) % fsub == 0:
            # mode 5 learns the features' parts on every fsub-th point only
            # (the engine computes them there and where the total passes)
            fn += 1
            a = 1.0 / (fn if fn < hor / fsub else hor / fsub)
            for j in range(nf):
                d = f[j] - fm[j]
                fm[j] += a * d
                fv[j] = (1 - a) * (fv[j] + a * d * d)
    return out


def grade(scores, c, totals=None):
    """Grades of one file's raw scores (0 where is_anomaly is false); with
    totals, scores is a statistic derived from them (feat 3, 4) and the
    floor applies to the totals."""
    z, floor, hor = c["z"], c["floor"], c["h"]
    w, sup, warm = int(c["w"]), int(c["sup"]), int(c["warm"])
    ratio, wmean, clip, lg, esc = c["ratio"], c["wmean"], c["clip"], c["log"], c["esc"]
    mean = var = 0.0
    count = 0
    left = 0
    peak = 0.0
    ring = []
    out = []
    fpeak = 0.0
    mdec = 0.5 ** (1.0 / c["memh"]) if c["memh"] > 0 else 1.0
    qwin = []
    qsorted = []
    for i, s in enumerate(scores):
        fpeak *= mdec
        if s <= 0.0 or (totals is not None and totals[i] <= 0.0):
            out.append(0.0)
            continue
        ring.append(s)
        if len(ring) > w:
            ring.pop(0)
        avg = sum(ring) / len(ring)
        v = math.log(avg) if lg else avg
        sd = math.sqrt(var)
        if not lg and sd < c["sdf"] * mean:
            sd = c["sdf"] * mean
        thr = mean + z * sd
        if c["q"] > 0 and qsorted:
            qv = qsorted[min(len(qsorted) - 1, int(c["q"] * len(qsorted)))] * c["qf"]
            if c["qonly"]:
                thr = max(qv, mean)
            elif qv > thr:
                thr = qv
        g = 0.0
        if count >= warm and sd > 0.0:
            if ((avg if totals is None else totals[i]) > floor and (left == 0 or avg > esc * peak) and v > thr and
                    (ratio <= 0 or avg > ratio * (math.exp(mean) if lg else mean))):
                ex = (v - thr) / sd
                dev = (v - mean) / sd
                if c["mem"] <= 0 or dev >= c["mem"] * fpeak:
                    g = max(ex / (1 + ex), 1e-6)
                if c["memf"] > 0 or g > 0:
                    fpeak = max(fpeak, dev)
        out.append(g)
        # learn
        if g > 0:
            left = sup
            peak = avg
        elif left > 0:
            left -= 1
            # re-armed early once the scores are back near the mean
            if c["rearm"] > 0 and v < mean + c["rearm"] * sd:
                left = 0
        count += 1
        if c["q"] > 0:
            bisect.insort(qsorted, avg)
            qwin.append(avg)
            if len(qwin) > c["qh"]:
                old = qwin.pop(0)
                del qsorted[bisect.bisect_left(qsorted, old)]
        x = v if wmean else (math.log(s) if lg else s)
        if clip > 0 and count > warm and sd > 0:
            x = min(x, mean + clip * sd)
        a = 1.0 / (count if count < hor else hor)
        d = x - mean
        mean += a * d
        var = (1 - a) * (var + a * d * d)
    return out


class Dev:
    """A discounted mean and deviation as the AWS thresholded forest keeps
    them (its statistics.Deviation)."""

    def __init__(self, discount):
        self.d = discount
        self.s = self.q = self.w = 0.0
        self.n = 0

    def update(self, x):
        f = 1.0 if self.d == 0 else min(1 - self.d, 1 - 1.0 / (self.n + 2))
        self.s = self.s * f + x
        self.q = self.q * f + x * x
        self.w = self.w * f + 1.0
        self.n += 1

    def mean(self):
        return self.s / self.w if self.w > 0 else 0.0

    def dev(self):
        if self.w <= 0:
            return 0.0
        m = self.s / self.w
        v = self.q / self.w - m * m
        return math.sqrt(v) if v > 0 else 0.0


def grade_trcf(scores, c):
    """The AWS thresholded forest's BasicThresholder (fifth study): primary
    statistics of the scores (discount pdisc, default 1 / (10 * 256)),
    secondary of score differences (discount secd), a deviation of scores
    below the mean; threshold mean + (f - 1) * long-term deviation + primary
    deviation; z factor tz scaled down when the mean score is below 0.9
    (adj, with a transform); muting sup points after a firing (the
    predictor-corrector's effect, approximately); grades under gmin
    dropped."""
    pd = c["pdisc"] if c["pdisc"] > 0 else 1.0 / 2560
    prim, sec, thd = Dev(pd), Dev(c["secd"]), Dev(pd / 2)
    count = 0
    last = 0.0
    left = 0
    out = []
    shingle = 8
    for s in scores:
        if s <= 0.0:
            out.append(0.0)
            continue
        if count < 10:
            frac = 0.0
        elif count > 20:
            frac = 1.0
        else:
            frac = (count - 10) / 10.0
        m = prim.mean()
        f = c["tz"]
        if c["adj"] and m < 0.9 and c["norm"]:
            f = m * f / 0.9
        f = max(f, 2.0)
        first = prim.dev()
        if not c["norm"]:
            first = min(first, math.sqrt(2.0) * thd.dev())
        lt = c["sdiff"] * first + (1 - c["sdiff"]) * sec.dev()
        sdv = (f - 1) * lt + prim.dev()
        ready = count >= 10 and prim.n >= 10 and sec.n >= 10
        thr = max(0.8, frac * (m + sdv) + (1 - frac) * 1.5) if ready else 1.5
        g = 0.0
        if s >= thr and thr > 0 and left == 0:
            base = min(thr, max(0.8, m))
            t = min(f, (s - base) / (sdv / f)) if sdv > 0 else 2 * f
            g = max(0.0, t / f)
            if g < c["gmin"]:
                g = 0.0
        out.append(g)
        if g > 0:
            left = int(c["sup"])
        elif left > 0:
            left -= 1
        gap = m - s
        if gap > 0:
            thd.update(gap)
        prim.update(s)
        sec.update(s - last)
        count += 1
        last = s
    return out


def derived(rows, c):
    """Per point, a statistic of its per-feature z-scores (each feature's part
    against its own running mean and deviation, learned as the grader learns
    scores): feat 3 the largest, feat 4 the root of the sum of the squares
    of the positive ones; 0 before the first deviation is known."""
    nf = len(rows[0]) - 1
    hor, sdf = c["h"], c["sdf"]
    fm = [0.0] * nf
    fv = [0.0] * nf
    count = 0
    out = []
    for r in rows:
        if r[0] <= 0.0:
            out.append(0.0)
            continue
        zs = []
        for j in range(nf):
            sj = max(math.sqrt(fv[j]), sdf * fm[j])
            zs.append((r[1 + j] - fm[j]) / sj if sj > 0.0 else 0.0)
        if count < c["fwarm"]:
            t = 0.0
        elif c["feat"] == 3:
            t = max(zs)
        else:
            t = math.sqrt(sum(x * x for x in zs if x > 0))
        out.append(t)
        count += 1
        a = 1.0 / (count if count < hor else hor)
        for j in range(nf):
            d = r[1 + j] - fm[j]
            fm[j] += a * d
            fv[j] = (1 - a) * (fv[j] + a * d * d)
    return out


def load_scores(d, keys):
    res = {}
    for k in keys:
        path = [os.path.join(x, k) for x in d.split("+")
                if os.path.exists(os.path.join(x, k))][0]
        with open(path) as fh:
            next(fh)
            res[k] = [[float(v) for v in ln.split(",")[1:]] for ln in fh]
    return res


def nab(files, grades, keys, fixed):
    out = {}
    for prof, short in PROFILES:
        cost = nab_score.PROFILES[prof]
        sub = {k: grades[k] for k in keys}
        res = nab_score.evaluate(files, sub, prof, 0.000001 if fixed else None)
        nul = nab_score.evaluate(files, {k: [0.5] * files[k].n for k in keys}, prof)
        out[short] = nab_score.normalise(res["raw"], nul["raw"], res["n_windows"], cost)
    return out


def parse_config(text):
    name, _, body = text.partition("=")
    c = dict(DEFAULTS)
    for kv in filter(None, body.split(",")):
        k, v = kv.split(":")
        if k not in c:
            raise SystemExit("unknown key %s" % k)
        c[k] = float(v)
    return name, c


def main(argv):
    splits = ["tuning"]
    opt = False
    dirs = []
    while argv and argv[0] != "--":
        a = argv.pop(0)
        if a == "--splits":
            splits = argv.pop(0).split()
        elif a == "--opt":
            opt = True
        else:
            dirs.append(a)
    configs = [parse_config(t) for t in argv[1:]]
    files = nab_score.load_corpus(NAB_ROOT, os.path.join(NAB_ROOT, "labels",
                                                          "combined_windows.json"))
    parts = nab_protocol.split(NAB_ROOT)
    need = sorted(set(k for sp in splits for k in parts[sp]))
    raw = [load_scores(d, need) for d in dirs]
    for name, c in configs:
        rows = []
        for si, d in enumerate(dirs):
            g = {k: grade_features(raw[si][k], c)
                 if c["feat"] in (1, 2, 5) and len(raw[si][k][0]) > 2 else
                 grade(derived(raw[si][k], c), c, [r[0] for r in raw[si][k]])
                 if c["feat"] and len(raw[si][k][0]) > 2 else
                 grade_trcf([r[0] for r in raw[si][k]], c) if c["trcf"] else
                 grade([r[0] for r in raw[si][k]], c) for k in need}
            for sp in splits:
                for mode in (["fixed", "opt"] if opt else ["fixed"]):
                    r = nab(files, g, parts[sp], mode == "fixed")
                    rows.append((os.path.basename(d.rstrip("/")), sp, mode, r))
        for sp in splits:
            for mode in (["fixed", "opt"] if opt else ["fixed"]):
                sel = [r for (_, s, m, r) in rows if s == sp and m == mode]
                med = {p: statistics.median(x[p] for x in sel) for _, p in PROFILES}
                rows.append(("median", sp, mode, med))
        for seed, sp, mode, r in rows:
            if len(dirs) == 1 and seed == "median":
                continue
            print("grader_sim config=%s seed=%s split=%s threshold_mode=%s "
                  "standard=%.2f reward_low_FP=%.2f reward_low_FN=%.2f" %
                  (name, seed, sp, mode, r["standard"], r["reward_low_FP"],
                   r["reward_low_FN"]))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
