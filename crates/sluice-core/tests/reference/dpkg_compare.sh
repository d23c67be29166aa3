#!/bin/sh
# Reference oracle for tests/version_reference.rs: dpkg itself.
# Usage: sh dpkg_compare.sh PAIRS VERDICTS
# Reads "a<TAB>b" lines and writes one verdict per line: -1, 0 or 1 as dpkg --compare-versions
# orders a and b; "E <message>" when dpkg exits with an error (status 2); "W <message>" when dpkg
# says anything on stderr (a "bad syntax" warning: it then orders the texts anyway, so its answer
# is not a verdict on valid versions).
set -u
tab=$(printf '\t')

# dpkg --compare-versions A OP B, printing nothing; sets rc and err (stderr on one line).
compare() {
  err=$(dpkg --compare-versions -- "$1" "$2" "$3" 2>&1 >/dev/null)
  rc=$?
  err=$(printf '%s' "$err" | tr '\n' ' ')
}

while IFS="$tab" read -r a b; do
  compare "$a" lt "$b"
  if [ -n "$err" ]; then
    if [ "$rc" -eq 2 ]; then echo "E $err"; else echo "W $err"; fi
    continue
  fi
  if [ "$rc" -eq 0 ]; then
    echo -1
  elif [ "$rc" -eq 1 ]; then
    compare "$a" eq "$b"
    if [ -n "$err" ]; then
      if [ "$rc" -eq 2 ]; then echo "E $err"; else echo "W $err"; fi
    elif [ "$rc" -eq 0 ]; then echo 0
    elif [ "$rc" -eq 1 ]; then echo 1
    else echo "E exit $rc"
    fi
  else
    echo "E exit $rc"
  fi
done < "$1" > "$2"
