#!/usr/bin/env python3
"""Reference occurrences for tests/calendar_reference.rs and sluice's cli_window.rs, from
python-dateutil's rrule (RRULE cases), croniter (cron cases) and zoneinfo (the zones).

Reads a JSON array of cases on stdin, each
  {"kind": "rrule" | "cron", "rule": str, "from": "YYYY-MM-DD", "start": "HH:MM",
   "duration_minutes": int, "tz": str, "offset_days": int, "count": int, "horizon_year": int}
and writes a JSON array with, per case, {"occurrences": [[start_utc, end_utc, start_local,
end_local], ...]} or {"error": message}.

Sluice's semantics, written independently of its code:
- RRULE: DTSTART is `from` at `start` (naive local time; aware in the zone when UNTIL is UTC, as
  dateutil requires). cron: the days croniter chooses for `0 0 DOM MON DOW`.
- Each rule date moves by offset_days, gets the start time, and becomes an instant through
  zoneinfo with fold=0: a nonexistent time uses the offset before the gap (so it lands later by
  the gap's length), an ambiguous one its first occurrence.
- Only occurrences starting at or after local midnight of `from` (fold=0) count; the first
  `count` are listed, none whose local start date is after horizon_year.
- end = start + duration (elapsed); times are RFC 3339, UTC with Z, local with its offset.
"""

import json
import sys
import types
from datetime import date, datetime, time, timedelta, timezone

try:
    import datetime as datetime_module
    import dateutil.rrule
    from dateutil.rrule import rrulestr
    from zoneinfo import ZoneInfo
    from croniter import croniter
except ImportError as err:  # pragma: no cover - the point is the message
    sys.stderr.write(
        "a reference package is missing ({}): run `pip install python-dateutil croniter`\n".format(err)
    )
    sys.exit(3)


class _DatetimeModule(types.ModuleType):
    """datetime, with a MAXYEAR of our choosing, for dateutil.rrule's year limit."""

    def __getattr__(self, name):
        return getattr(datetime_module, name)


DATETIME_FOR_DATEUTIL = _DatetimeModule("datetime")
dateutil.rrule.datetime = DATETIME_FOR_DATEUTIL


def utc_text(instant):
    return instant.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_text(instant, zone):
    return instant.astimezone(zone).isoformat()


def to_croniter(dow):
    """Sluice writes the last Friday as FRIL or 5L; croniter as L5."""
    names = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
    items = []
    for item in dow.split(","):
        upper = item.upper()
        if upper.endswith("L") and len(upper) > 1:
            day = upper[:-1]
            number = names.index(day) if day in names else int(day) % 7
            items.append("L{}".format(number))
        else:
            items.append(item)
    return ",".join(items)


def rule_dates(case, zone):
    start = datetime.strptime(case["start"], "%H:%M").time()
    first = date.fromisoformat(case["from"])
    if case["kind"] == "rrule":
        text = case["rule"]
        parts = dict(p.split("=", 1) for p in text.upper().split(":")[-1].split(";") if "=" in p)
        aware = parts.get("UNTIL", "").endswith("Z")
        dtstart = datetime.combine(first, start)
        if aware:
            dtstart = dtstart.replace(tzinfo=zone)
        # A rule that never matches makes dateutil walk day by day to datetime.MAXYEAR; its
        # module sees a MAXYEAR just past the horizon instead (the comparison ends there).
        DATETIME_FOR_DATEUTIL.MAXYEAR = case["horizon_year"] + 3
        for occurrence in rrulestr(text, dtstart=dtstart):
            yield occurrence.date()
    else:
        fields = case["rule"].split()
        expr = "0 0 {} {} {}".format(fields[2], fields[3], to_croniter(fields[4]))
        begin = datetime.combine(first - timedelta(days=case["offset_days"] + 3), time(0))
        it = croniter(expr, begin - timedelta(seconds=1))
        while True:
            try:
                yield it.get_next(datetime).date()
            except Exception:  # croniter gives up on days it cannot find
                return


def expand(case):
    zone = ZoneInfo(case["tz"])
    start = datetime.strptime(case["start"], "%H:%M").time()
    first = date.fromisoformat(case["from"])
    floor = datetime.combine(first, time(0), tzinfo=zone).astimezone(timezone.utc)
    duration = timedelta(minutes=case["duration_minutes"])
    out = []
    for day in rule_dates(case, zone):
        if day.year > case["horizon_year"] + 2 or len(out) >= case["count"]:
            break
        try:
            moved = day + timedelta(days=case["offset_days"])
        except OverflowError:
            break
        local = datetime.combine(moved, start, tzinfo=zone)  # fold=0
        start_utc = local.astimezone(timezone.utc)
        if start_utc < floor:
            continue
        if start_utc.astimezone(zone).year > case["horizon_year"]:
            break
        end_utc = start_utc + duration
        out.append([utc_text(start_utc), utc_text(end_utc), local_text(start_utc, zone),
                    local_text(end_utc, zone)])
    return out


def main():
    cases = json.load(sys.stdin)
    answers = []
    for case in cases:
        try:
            answers.append({"occurrences": expand(case)})
        except Exception as err:  # reported per case; the test decides
            answers.append({"error": "{}: {}".format(type(err).__name__, err)})
    json.dump(answers, sys.stdout)
    sys.stdout.write("\n")


main()
