#!/usr/bin/env python3
"""Reference scores for tests/cvss_reference.rs, from the PyPI `cvss` package (Red Hat).

Reads one vector per line on stdin and writes one line per vector on stdout:
  OK <severity> <base> <temporal> <environmental> <defined>   for CVSS:3.x
  OK <severity> <score>                                       for CVSS:4.0
  ERR <message>                                               when the package refuses the vector
where <defined> says which optional groups the vector defines, by the package's own metric lists
(a metric set to X is not defined): "T" (temporal), "E" (environmental), "TE" or "-". The package
scores an undefined group anyway (as if neutral); Sluice has no score for it, so the test needs
to know which is which.
Exits 3, with a hint on stderr, when the package is not installed.
"""

import sys

try:
    from cvss import CVSS3, CVSS4
    from cvss.constants3 import ENVIRONMENTAL_METRICS, TEMPORAL_METRICS
    from cvss.exceptions import CVSSError
except ImportError as err:  # pragma: no cover - the point is the message
    sys.stderr.write(
        "the PyPI `cvss` package is missing ({}): run `pip install cvss`\n".format(err)
    )
    sys.exit(3)


def score(vector):
    if vector.startswith("CVSS:4.0/"):
        c = CVSS4(vector)
        return "OK {} {!r}".format(c.severity, float(c.base_score))
    c = CVSS3(vector)
    base, temporal, environmental = c.scores()

    def defines(group):
        return any(c.original_metrics.get(m, "X") != "X" for m in group)

    defined = ("T" if defines(TEMPORAL_METRICS) else "") + (
        "E" if defines(ENVIRONMENTAL_METRICS) else ""
    )
    return "OK {} {!r} {!r} {!r} {}".format(
        c.severities()[0], base, temporal, environmental, defined or "-"
    )


def main():
    out = []
    for line in sys.stdin:
        vector = line.rstrip("\n")
        try:
            out.append(score(vector))
        except CVSSError as err:
            out.append("ERR " + " ".join(str(err).split()))
    sys.stdout.write("\n".join(out))
    sys.stdout.write("\n")


main()
