#!/usr/bin/env python3
"""Reference scores for tests/cvss_reference.rs, from the PyPI `cvss` package (Red Hat).

Reads one vector per line on stdin and writes one line per vector on stdout:
  OK <severity> <base> <temporal> <environmental>   for CVSS:3.x
  OK <severity> <score>                             for CVSS:4.0
  ERR <message>                                     when the package refuses the vector
Exits 3, with a hint on stderr, when the package is not installed.
"""

import sys

try:
    from cvss import CVSS3, CVSS4
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
    return "OK {} {!r} {!r} {!r}".format(c.severities()[0], base, temporal, environmental)


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
