#!/usr/bin/env bash
# Agent footprint (docs/benchmarks.md, "Agent"): what `sluice agent` costs a host when idle, and
# what a job costs beyond apt's own work. Prints numbers; asserts nothing.
#
#   1. a server and enrolled hosts: `sluice demo --fleet-only --agents 3` (its smallest fleet:
#      private package roots on acme-web 1.0 from a local apt repository); its agents are
#      stopped and the first host's is started again here, alone, with the agent's default
#      settings (`--poll-wait` 25 s) and `--no-refresh`;
#   2. idle: after SETTLE seconds, the agent's CPU time from /proc/PID/stat (utime + stime, in
#      clock ticks) over MINUTES minutes, and its memory from /proc/PID/status at the end (VmRSS,
#      of which RssAnon and RssFile, and VmHWM);
#   3. per job: the server and the agent stopped, JOBS times alternately (a) apt's own work for
#      acme-web 1.0 -> 1.1 in the root, timed directly (dpkg-query, apt-get -s install, apt-get
#      install, dpkg-query: what the job runs), and (b) `sluice job run --no-refresh` of the same
#      upgrade (no checks), timed, with the sluice process's peak RSS (VmHWM, read every 2 ms);
#      the root back on 1.0 (not timed) before each; overhead = median (b) - median (a).
#
# Needs root (dpkg installs nothing without it, even into a private root; the machine's own
# packages are never touched), dpkg-dev, apt and python3. Environment:
#   SLUICE=PATH   the sluice binary (default target/release/sluice, built when missing)
#   MINUTES=N     idle minutes measured (default 2)
#   SETTLE=S      seconds the agent runs before the idle measurement starts (default 15)
#   JOBS=N        jobs timed, and as many floor runs (default 7)
#   KEEP=1        keep the working directory
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
minutes=${MINUTES:-2}
settle=${SETTLE:-15}
jobs=${JOBS:-7}
package=acme-web
old=1.0
target=1.1

say() { printf 'footprint: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

python3 -c 'import sys; float(sys.argv[1]) > 0 or sys.exit(1)' "$minutes" 2>/dev/null ||
    die "MINUTES=$minutes: a positive number of minutes"
[ "$jobs" -ge 1 ] 2>/dev/null || die "JOBS=$jobs: 1 or more"
[ "$settle" -ge 0 ] 2>/dev/null || die "SETTLE=$settle: seconds, 0 or more"
[ "$(id -u)" = 0 ] || die "needs root: dpkg installs nothing without it, even into a private root (the machine's own packages are never touched)"
for tool in python3 apt-get dpkg-query dpkg-deb dpkg-scanpackages getconf; do
    command -v "$tool" >/dev/null || die "needs $tool (dpkg-dev, apt, python3)"
done

sluice=${SLUICE:-$repo/target/release/sluice}
if [ ! -x "$sluice" ]; then
    say "building the release binary (cargo build --release -p sluice)"
    (cd "$repo" && cargo build --release -p sluice)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-footprint.XXXXXX")
fleet_pid=""
agent_pid=""
stop() {
    # Stops process $1 with SIGTERM, then SIGKILL after 20 s.
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    set +e
    stop "$agent_pid"
    stop "$fleet_pid"
    if [ -s "$work/fleet.json" ]; then
        for pid in $(python3 -c 'import json,sys; p=json.load(open(sys.argv[1]))["pids"]; print(p["server"], *p["agents"])' "$work/fleet.json"); do
            kill -KILL "$pid" 2>/dev/null
        done
    fi
    wait 2>/dev/null
    if [ "${KEEP:-0}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

load() { cut -d' ' -f1-3 /proc/loadavg; }
field() { python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))
for k in sys.argv[2:]: v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$work/fleet.json" "$@"; }

# 1. The server and one host.
say "bringing up the smallest fleet: sluice demo --fleet-only --agents 3 --no-refresh"
"$sluice" demo --fleet-only --no-refresh --agents 3 --dir "$work/fleet" \
    >"$work/fleet.json" 2>"$work/fleet.log" &
fleet_pid=$!
for _ in $(seq 600); do
    [ -s "$work/fleet.json" ] && break
    kill -0 "$fleet_pid" 2>/dev/null || { cat "$work/fleet.log" >&2; die "the fleet did not come up"; }
    sleep 0.2
done
[ -s "$work/fleet.json" ] || die "the fleet did not come up within 2 minutes"
url=$(field server)
name=$(field hosts 0 name)
root=$(field hosts 0 root)
state=$(field hosts 0 state)
for pid in $(python3 -c 'import json,sys; print(*json.load(open(sys.argv[1]))["pids"]["agents"])' "$work/fleet.json"); do
    stop "$pid"
done
"$sluice" agent --server "$url" --hostname "$name" --state-dir "$state" --root "$root" --no-refresh \
    >"$work/agent.log" 2>&1 &
agent_pid=$!
say "agent $agent_pid for $name (root $root), server $url"

# 2. Idle.
ticks_per_s=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$agent_pid/stat"; }
status_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$agent_pid/status"; }
sleep "$settle"
kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log" >&2; die "the agent exited"; }
idle_load_start=$(load)
ticks_start=$(cpu_ticks)
t_start=$EPOCHREALTIME
say "idle: measuring for $minutes minute(s) (load average $idle_load_start)"
sleep "$(python3 -c 'import sys; print(float(sys.argv[1]) * 60)' "$minutes")"
kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log" >&2; die "the agent exited while idle"; }
ticks_end=$(cpu_ticks)
t_end=$EPOCHREALTIME
idle_load_end=$(load)
rss=$(status_kb VmRSS) anon=$(status_kb RssAnon) file=$(status_kb RssFile) hwm=$(status_kb VmHWM)
idle_s=$(python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$t_start" "$t_end")
idle_ticks=$((ticks_end - ticks_start))
stop "$agent_pid"
agent_pid=""
stop "$fleet_pid"
fleet_pid=""

# 3. Per job: apt's own work against `sluice job run`, alternately.
in_root() { APT_CONFIG="$root/apt.conf" DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
installed() { dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Version}' "$package"; }
reset_root() {
    in_root apt-get -q -y --allow-downgrades install "$package=$old" >>"$work/reset.log" 2>&1
    [ "$(installed)" = "$old" ] || die "$package is $(installed) in the root, not $old"
}
apt_opts=(-q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=0)
floor_once() {
    local t0 t1
    t0=$EPOCHREALTIME
    in_root dpkg-query --admindir="$root/var/lib/dpkg" -W "$package" >/dev/null
    in_root apt-get "${apt_opts[@]}" -s install "$package=$target" >/dev/null
    in_root apt-get "${apt_opts[@]}" install "$package=$target" >/dev/null
    [ "$(installed)" = "$target" ] || die "the floor run left $package at $(installed)"
    t1=$EPOCHREALTIME
    python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.4f}")' "$t0" "$t1"
}
# Runs a command; prints its wall time (s) and its own peak RSS (VmHWM, kB, read every 2 ms).
timed() {
    python3 - "$@" <<'PYTHON'
import subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
peak = 0
while child.poll() is None:
    try:
        with open(f"/proc/{child.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
    except OSError:
        pass
    time.sleep(0.002)
wall = time.perf_counter() - start
if child.returncode != 0:
    sys.exit(f"{sys.argv[1:]} exited {child.returncode}: {child.stderr.read().decode()}")
print(f"{wall:.4f} {peak}")
PYTHON
}
floor_times=() job_times=() job_peaks=()
jobs_load_start=$(load)
say "per job: $jobs floor runs and $jobs sluice job runs, alternately (load average $jobs_load_start)"
for k in $(seq 1 "$jobs"); do
    reset_root
    floor_times+=("$(floor_once)")
    reset_root
    cat >"$work/job-$k.json" <<EOF
{"id": "footprint-$k", "idempotency_key": "footprint/$k", "targets": [{"package": "$package", "version": "$target"}]}
EOF
    read -r wall peak <<<"$(timed "$sluice" job run --job "$work/job-$k.json" --state-dir "$work/job-state" --root "$root" --no-refresh)"
    [ "$(installed)" = "$target" ] || die "sluice job run left $package at $(installed)"
    job_times+=("$wall")
    job_peaks+=("$peak")
done
jobs_load_end=$(load)

median() { python3 -c 'import statistics, sys; print(f"{statistics.median(float(a) for a in sys.argv[1:]):.4f}")' "$@"; }
spread() { python3 -c 'import sys; v = [float(a) for a in sys.argv[1:]]; print(f"{min(v):.4f}-{max(v):.4f}")' "$@"; }
floor_median=$(median "${floor_times[@]}")
job_median=$(median "${job_times[@]}")
overhead_ms=$(python3 -c 'import sys; print(f"{(float(sys.argv[1]) - float(sys.argv[2])) * 1000:.1f}")' "$job_median" "$floor_median")
cat <<EOF

Agent footprint ($(nproc) cores, $(uname -r); sluice $("$sluice" --version | awk 'NR == 1 {print $2}'))
  idle, $idle_s s after $settle s of settling (load average $idle_load_start at the start, $idle_load_end at the end):
    CPU          $idle_ticks clock ticks (1 tick = 1/$ticks_per_s s) of utime + stime
    memory       VmRSS $rss kB (RssAnon $anon kB, RssFile $file kB), VmHWM $hwm kB
    (the agent long-polls for jobs, up to 25 s a poll, and checks its inventory after each)
  per job, $package $old -> $target in a private root, no checks, --no-refresh
  (load average $jobs_load_start at the start, $jobs_load_end at the end):
    apt's own work      median $floor_median s ($(spread "${floor_times[@]}"), $jobs runs)
    sluice job run      median $job_median s ($(spread "${job_times[@]}"), $jobs runs)
    overhead            $overhead_ms ms (difference of the medians)
    peak RSS            sluice job run: $(median "${job_peaks[@]}" | cut -d. -f1) kB median VmHWM of the sluice process (apt-get's own not counted)
EOF
