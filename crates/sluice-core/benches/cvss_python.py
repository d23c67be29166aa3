#!/usr/bin/env python3
"""Times the PyPI `cvss` package on the same fixture vectors as the `cvss` criterion benchmark,
so the two can be compared: python3 crates/sluice-core/benches/cvss_python.py"""
import pathlib
import time

from cvss import CVSS3, CVSS4

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "cvss"

for name, file, cls in (("3.1", "vectors_simple31", CVSS3), ("4.0", "vectors_simple4", CVSS4)):
    vectors = [line.split(" - ")[0] for line in (FIXTURES / file).read_text().splitlines() if line.startswith("CVSS:")]
    rounds = max(1, 20000 // len(vectors))
    start = time.perf_counter()
    for _ in range(rounds):
        for vector in vectors:
            c = cls(vector)
            c.scores() if cls is CVSS3 else c.base_score
    per = (time.perf_counter() - start) / (rounds * len(vectors))
    print(f"python cvss {name}: {per * 1e6:.1f} µs per vector ({rounds * len(vectors)} vectors)")
