#!/usr/bin/env python3
"""Compare a run's mIoU values with stored ones; fail when any point fell.

    scripts/check_regression.py RESULTS/summary.json EXPECTED.json
    scripts/check_regression.py --write RESULTS/summary.json EXPECTED.json   # store anew

EXPECTED.json: {"tolerance": 0.5, "points": {"<point label>": mIoU, ...}}. A point whose mIoU
is below its stored value by more than the tolerance fails the check (exit 1), with a line
naming it; a point above it by more than the tolerance is reported (store the new values
with --write once the change is understood). A stored point missing from the run fails too.
Standard library only.
"""
import json
import sys


def main(argv):
    write = "--write" in argv
    args = [a for a in argv if a != "--write"]
    if len(args) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        with open(args[0]) as f:
            summary = json.load(f)
    except (OSError, ValueError) as e:
        print("check_regression: cannot read %s: %s" % (args[0], e), file=sys.stderr)
        return 2
    got = {p["label"] or "point %d" % p["index"]: p.get("mIoU") for p in summary["points"]}
    if write:
        with open(args[1], "w") as f:
            json.dump({"tolerance": 0.5, "points": {k: round(v, 2) for k, v in got.items()}},
                      f, indent=1)
            f.write("\n")
        print("stored %d points in %s" % (len(got), args[1]))
        return 0
    try:
        with open(args[1]) as f:
            expected = json.load(f)
    except (OSError, ValueError) as e:
        print("check_regression: cannot read %s: %s" % (args[1], e), file=sys.stderr)
        return 2
    tol = float(expected.get("tolerance", 0.5))
    failed = 0
    for label, want in expected["points"].items():
        have = got.get(label)
        if have is None:
            print("REGRESSION %s: missing from the run" % label)
            failed += 1
        elif have < want - tol:
            print("REGRESSION %s: mIoU %.2f, stored %.2f (tolerance %.2f)" % (label, have, want, tol))
            failed += 1
        elif have > want + tol:
            print("improved   %s: mIoU %.2f, stored %.2f" % (label, have, want))
    n = len(expected["points"])
    print("%s: %d of %d points within %.2f of the stored mIoU" % (
        summary.get("name", args[0]), n - failed, n, tol))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
