"""nab_common.py - what the Python benches on NAB share (bench/multifeature.py,
bench/nab_protocol.py, bench/warmup.py): where the corpus and NAB's scorer
are, the fixed threshold, NAB's three profiles, and the command line of a
bench that passes options on to bench/nab_engine."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NAB_ROOT = os.environ.get("NAB_ROOT", os.path.join(ROOT, "..", "shared", "nab"))
NAB_SCORE = os.environ.get("NAB_SCORE",
                           os.path.join(ROOT, "..", "shared", "tools", "nab_score.py"))
FIXED = os.environ.get("NAB_FIXED_THRESHOLD", "0.000001")
# (name in nab_score.py's JSON, name in our lines)
PROFILES = [("standard", "standard"), ("reward_low_FP_rate", "reward_low_FP"),
            ("reward_low_FN_rate", "reward_low_FN")]


def engine_args(argv, opts, flags=()):
    """Parses a bench's command line: "--name value" for the names in opts
    (a dict of defaults, updated in place), the flags alone, then "--" and
    bench/nab_engine's options.  Returns (the set of flags given, the engine's
    options), or None on anything else."""
    given = set()
    argv = list(argv)
    while argv:
        a = argv.pop(0)
        if a == "--":
            return given, argv
        if a in flags:
            given.add(a)
        elif a in opts and argv:
            opts[a] = argv.pop(0)
        else:
            return None
    return given, []
