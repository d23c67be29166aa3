#!/bin/sh
# Reference oracle for tests/version_reference.rs: dpkg itself.
# Usage: sh dpkg_compare.sh PAIRS VERDICTS
# Reads "a<TAB>b" lines and writes one verdict per line: -1, 0 or 1 as dpkg --compare-versions
# orders a and b, or E when dpkg exits with an error (status 2).
set -u
tab=$(printf '\t')
while IFS="$tab" read -r a b; do
  dpkg --compare-versions "$a" lt "$b"
  rc=$?
  if [ "$rc" -eq 0 ]; then
    echo -1
  elif [ "$rc" -eq 1 ]; then
    dpkg --compare-versions "$a" eq "$b"
    rc=$?
    if [ "$rc" -eq 0 ]; then echo 0; elif [ "$rc" -eq 1 ]; then echo 1; else echo E; fi
  else
    echo E
  fi
done < "$1" > "$2"
