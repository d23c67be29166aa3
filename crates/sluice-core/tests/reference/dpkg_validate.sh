#!/bin/sh
# Reference oracle for tests/version_reference.rs: dpkg's own judgment of a version's syntax.
# Usage: sh dpkg_validate.sh VERSIONS VERDICTS
# Reads one version a line and writes one verdict a line:
#   valid                 `dpkg --validate-version` exits 0 and says nothing;
#   invalid <message>     it exits 1 (a syntax warning) or 2 (a syntax error) saying "bad syntax";
#   unexpected <what>     anything else (the test fails on it).
# One dpkg process per version: dpkg has no batch mode for this.
set -u
while IFS= read -r v; do
  err=$(dpkg --validate-version -- "$v" 2>&1 >/dev/null)
  rc=$?
  err=$(printf '%s' "$err" | tr '\n' ' ')
  case "$rc:$err" in
    0:) echo valid ;;
    1:*"bad syntax"* | 2:*"bad syntax"*) echo "invalid $err" ;;
    *) echo "unexpected exit $rc: $err" ;;
  esac
done < "$1" > "$2"
