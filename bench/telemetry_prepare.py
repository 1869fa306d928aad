#!/usr/bin/env python3
"""telemetry_prepare.py - NASA's SMAP and MSL spacecraft telemetry, labelled,
laid out as a NAB-style corpus for bench/nab_engine and nab_score.py.

    bench/telemetry_prepare.py SRC OUT [EVERY]

SRC holds labeled_anomalies.csv and train/<chan>.npy, test/<chan>.npy (the
layout of telemanom's data.zip, and of data/SMAP_MSL in
github.com/imperial-qore/TranAD); OUT receives
    data/SMAP/<chan>.csv, data/MSL/<chan>.csv
        timestamp,f0,f1,...: the channel's training rows, then its test rows
        (the telemetry value first, then the command columns), one minute
        apart from 2000-01-01 (the timestamps are synthetic: rows are what
        the scorer matches)
    labels/combined_windows.json
        each labelled anomaly sequence of the test rows as a NAB window
        (shifted by the number of training rows)
With EVERY (default 1), only every EVERY-th channel in name order
(spacecraft/channel) is kept: a smaller corpus for a shared machine (MSL's
channels have 55 features; with shingle 8 a channel takes tens of seconds).
The training rows come first so that the detector learns normal behaviour
before the labelled part, as the corpus intends; NAB's probationary period
(the first 15 %, at most 750 rows) then lies in them.  See bench/README.
"""
import ast
import csv
import datetime
import json
import os
import struct
import sys


def read_npy(path):
    """A 2-D little-endian float64 .npy file as a list of rows (stdlib only)."""
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise ValueError("%s: not an npy file" % path)
        major = f.read(2)[0]
        hlen = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))[0]
        header = ast.literal_eval(f.read(hlen).decode("latin1"))
        if header["descr"] not in ("<f8", "<f4") or header["fortran_order"]:
            raise ValueError("%s: unsupported layout %r" % (path, header))
        rows, cols = header["shape"] if len(header["shape"]) == 2 else (header["shape"][0], 1)
        size = 8 if header["descr"] == "<f8" else 4
        data = f.read(rows * cols * size)
        vals = struct.unpack("<%d%s" % (rows * cols, "d" if size == 8 else "f"), data)
        return [vals[r * cols:(r + 1) * cols] for r in range(rows)]


def main(src, out, every=1):
    t0 = datetime.datetime(2000, 1, 1)
    windows = {}
    with open(os.path.join(src, "labeled_anomalies.csv")) as f:
        labels = list(csv.DictReader(f))
    seen = set()
    keep = sorted({"%s/%s" % (lab["spacecraft"], lab["chan_id"]) for lab in labels})[::every]
    for lab in labels:
        if "%s/%s" % (lab["spacecraft"], lab["chan_id"]) not in keep:
            continue
        chan, craft = lab["chan_id"], lab["spacecraft"]
        if chan in seen:
            continue
        seen.add(chan)
        train = read_npy(os.path.join(src, "train", chan + ".npy"))
        test = read_npy(os.path.join(src, "test", chan + ".npy"))
        rows = train + test
        name = "%s/%s.csv" % (craft, chan)
        os.makedirs(os.path.join(out, "data", craft), exist_ok=True)
        stamp = lambda i: (t0 + datetime.timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S")
        with open(os.path.join(out, "data", name), "w") as f:
            f.write("timestamp," + ",".join("f%d" % j for j in range(len(rows[0]))) + "\n")
            for i, r in enumerate(rows):
                f.write(stamp(i) + "," + ",".join("%.10g" % v for v in r) + "\n")
        seqs = ast.literal_eval(lab["anomaly_sequences"])
        windows[name] = [[stamp(len(train) + a) + ".000000", stamp(len(train) + min(b, len(test) - 1)) + ".000000"]
                         for a, b in sorted(seqs)]
    os.makedirs(os.path.join(out, "labels"), exist_ok=True)
    with open(os.path.join(out, "labels", "combined_windows.json"), "w") as f:
        json.dump(windows, f, indent=1, sort_keys=True)
    print("telemetry_prepare: %d channels, %d windows in %s" %
          (len(windows), sum(len(w) for w in windows.values()), out))


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else 1)
