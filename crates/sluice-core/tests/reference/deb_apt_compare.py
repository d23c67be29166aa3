"""Reference oracle for tests/version_reference.rs: apt's Debian version comparison.

Usage: /usr/bin/python3 deb_apt_compare.py PAIRS VERDICTS
Reads "a<TAB>b" lines from PAIRS and writes the sign of apt_pkg.version_compare(a, b)
(-1, 0 or 1) per line to VERDICTS. Exits 3 when python3-apt is missing.
"""

import sys

try:
    import apt_pkg
except ImportError:
    sys.stderr.write("apt_pkg is missing: install the apt package python3-apt\n")
    sys.exit(3)


def main(pairs_path, verdicts_path):
    apt_pkg.init_system()
    compare = apt_pkg.version_compare
    verdicts = []
    with open(pairs_path, encoding="utf-8") as pairs:
        for line in pairs:
            a, b = line.rstrip("\n").split("\t")
            r = compare(a, b)
            verdicts.append("-1" if r < 0 else "1" if r > 0 else "0")
    with open(verdicts_path, "w", encoding="utf-8") as out:
        out.write("\n".join(verdicts))
        out.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
