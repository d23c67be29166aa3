#!/usr/bin/env bash
# Rollout benchmark, Sluice against ansible-core (docs/benchmarks.md, "Rollout: Sluice vs
# ansible-core"). One package (acme-web 1.0 -> 1.1) on the same 20 private package roots, two
# hosts at a time, each host pre-checked, dry-run, installed and verified:
#
#   1. ansible-core 2.19 into a temporary venv (bench/ansible/requirements.txt, pinned);
#   2. the fleet: `sluice demo --fleet-only` (server, users, local apt repository, 20 roots on
#      acme-web 1.0 in env=prod, 20 enrolled agents);
#   3. Ansible: bench/ansible/playbook.yml (serial: 2, max_fail_percentage: 0), timed;
#   4. the roots back on 1.0 (not timed), the server's inventories refreshed;
#   5. Sluice: a change through peer review and the CAB, scheduled (not timed), then timed:
#      `sluice rollout start CHG --spec spec.json --watch` until the rollout finished;
#   6. the floor: apt's own work for one host (dpkg-query, apt-get -s install, apt-get install,
#      dpkg-query), timed directly, in rounds before, between and after the two runs;
#      floor = 10 batches x the median host;
#   7. one summary, and where Sluice's time went, batch by batch.
#
# Needs root (dpkg installs nothing without it, even into a private root; the machine's own
# packages are never touched), dpkg-dev, apt, python3 with venv, and PyPI. Environment:
#   SLUICE=PATH      the sluice binary (default target/release/sluice, built when missing)
#   FLOOR_ROOTS=N    hosts timed one at a time per floor round (default 5; 2N more in pairs)
#   KEEP=1           keep the working directory (logs, server database) for a look afterwards
#   OUT=FILE         also write the results as JSON to FILE
#   REFRESH=1        agents run `apt-get update` before each dry run, their default in production
#                    (default 0: like the playbook, neither side refreshes the package lists, so
#                    both do the same work)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
hosts=20
batches=$((hosts / 2))
floor_roots=${FLOOR_ROOTS:-5}
package=acme-web
old=1.0
target=1.1

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$floor_roots" -ge 1 ] && [ $((floor_roots * 3)) -le "$hosts" ] ||
    die "FLOOR_ROOTS=$floor_roots: from 1 to $((hosts / 3)) (N roots one at a time and 2N in pairs, of $hosts)"

[ "$(id -u)" = 0 ] || die "needs root: dpkg installs nothing without it, even into the private roots (the machine's own packages are never touched)"
for tool in python3 apt-get dpkg-query dpkg-deb dpkg-scanpackages df; do
    command -v "$tool" >/dev/null || die "needs $tool (dpkg-dev, apt, python3)"
done

sluice=${SLUICE:-$repo/target/release/sluice}
if [ ! -x "$sluice" ]; then
    say "building the release binary (cargo build --release -p sluice)"
    (cd "$repo" && cargo build --release -p sluice)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-ansible.XXXXXX")
fleet_pid=""
cleanup() {
    local rc=$?
    set +e
    if [ -n "$fleet_pid" ] && kill -0 "$fleet_pid" 2>/dev/null; then
        # The demo stops its agents, then its server, on SIGTERM.
        kill -TERM "$fleet_pid"
        for _ in $(seq 200); do kill -0 "$fleet_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$fleet_pid" 2>/dev/null
    fi
    # Whatever the demo could not stop (it was killed): its processes, by the ids it printed.
    if [ -s "$work/fleet.json" ]; then
        for pid in $(python3 "$here/helper.py" field "$work/fleet.json" pids |
            tr -c '0-9' ' '); do
            kill -KILL "$pid" 2>/dev/null
        done
    fi
    wait 2>/dev/null
    if [ "${KEEP:-0}" = 1 ]; then
        say "kept $work"
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() { printf '%s' "$EPOCHREALTIME"; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

# 1. ansible-core, pinned, in a venv of its own.
say "installing ansible-core into $work/venv (bench/ansible/requirements.txt)"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
ansible_version=$("$work/venv/bin/python" -c 'import importlib.metadata as m; print(m.version("ansible-core"))')
# (awk reads to the end: `head` would close the pipe early, and pipefail would end the script)
apt_version=$(apt-get --version | awk 'NR == 1 {print $2}')
dpkg_version=$(dpkg --version | awk 'NR == 1 {for (i = 1; i < NF; i++) if ($i == "version") print $(i + 1)}')
sluice_version=$("$sluice" --version | awk 'NR == 1 {print $2}')
cores=$(nproc)

# 2. The fleet: server, users, repository, 20 roots on 1.0 in env=prod, agents enrolled.
refresh_flag=--no-refresh
[ "${REFRESH:-0}" = 1 ] && refresh_flag=""
say "bringing up the fleet: sluice demo --fleet-only --agents $hosts $refresh_flag"
"$sluice" demo --fleet-only $refresh_flag --agents "$hosts" --dir "$work/fleet" \
    >"$work/fleet.json" 2>"$work/fleet.log" &
fleet_pid=$!
for _ in $(seq 600); do
    [ -s "$work/fleet.json" ] && break
    kill -0 "$fleet_pid" 2>/dev/null || { cat "$work/fleet.log" >&2; die "the fleet did not come up"; }
    sleep 0.2
done
[ -s "$work/fleet.json" ] || { cat "$work/fleet.log" >&2; die "the fleet did not come up within 2 minutes"; }
field() { python3 "$here/helper.py" field "$work/fleet.json" "$@"; }
url=$(field server)
password=$(field user_password)
mapfile -t roots < <(python3 -c 'import json,sys; [print(h["root"]) for h in json.load(open(sys.argv[1]))["hosts"]]' "$work/fleet.json")
[ "${#roots[@]}" = "$hosts" ] || die "the fleet has ${#roots[@]} hosts, not $hosts"
say "fleet up at $url ($(field setup_s | cut -c1-4) s): ${#roots[@]} roots under $work/fleet/agents"

# apt and dpkg in one root, confined to it as the agent confines them.
in_root() {
    local root=$1
    shift
    APT_CONFIG="$root/apt.conf" DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"
}
installed() { dpkg-query --admindir="$1/var/lib/dpkg" -W -f='${Version}' "$package"; }
all_on() {
    local want=$1 root wrong=()
    for root in "${roots[@]}"; do
        [ "$(installed "$root")" = "$want" ] || wrong+=("$root: $(installed "$root")")
    done
    [ "${#wrong[@]}" = 0 ] || die "not on $package $want: ${wrong[*]}"
}
set_all() {
    local version=$1 root
    for root in "${roots[@]}"; do
        in_root "$root" apt-get -q -y --allow-downgrades install "$package=$version" >>"$work/reset.log" 2>&1
    done
    all_on "$version"
}

# The floor: apt's own work for one host, with the agent's commands, timed directly. Measured
# in rounds before Ansible, between the two runs and after Sluice, so that it sees the
# machine as both runs did (the two cores are shared).
apt_opts=(-q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=0)
one_host() {
    # Prints five timestamps around the four commands (no process started for the printing:
    # with two hosts at once, the pair's time must be theirs alone).
    local root=$1 t0 t1 t2 t3 t4
    t0=$EPOCHREALTIME
    in_root "$root" dpkg-query --admindir="$root/var/lib/dpkg" -W "$package" >/dev/null
    t1=$EPOCHREALTIME
    in_root "$root" apt-get "${apt_opts[@]}" -s install "$package=$target" >/dev/null
    t2=$EPOCHREALTIME
    in_root "$root" apt-get "${apt_opts[@]}" install "$package=$target" >/dev/null
    t3=$EPOCHREALTIME
    [ "$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Version}' "$package")" = "$target" ]
    t4=$EPOCHREALTIME
    printf '%s %s %s %s %s\n' "$t0" "$t1" "$t2" "$t3" "$t4"
}
host_times=() query_times=() dry_times=() install_times=() verify_times=() pair_times=()
update_times=()
floor_round() {
    local i stamps a b t0 t1 pa pb
    for i in $(seq 0 $((floor_roots - 1))); do
        # What the agent adds to its dry run by default (it refreshes the lists first):
        # informative, not part of the floor.
        t0=$(now)
        in_root "${roots[$i]}" apt-get -q update >/dev/null
        update_times+=("$(elapsed "$t0" "$(now)")")
        stamps=$(one_host "${roots[$i]}")
        read -r tq ts ti tv total <<<"$(python3 -c 'import sys; t = [float(a) for a in sys.argv[1:]]; print(" ".join(f"{b - a:.4f}" for a, b in zip(t, t[1:])), f"{t[-1] - t[0]:.4f}")' $stamps)"
        query_times+=("$tq") dry_times+=("$ts") install_times+=("$ti") verify_times+=("$tv")
        host_times+=("$total")
    done
    # Two hosts at once, as a batch runs them: informative (the floor is one host's time).
    for i in $(seq 0 2 $((floor_roots * 2 - 1))); do
        a=${roots[$((floor_roots + i))]}
        b=${roots[$((floor_roots + i + 1))]}
        t0=$EPOCHREALTIME
        one_host "$a" >/dev/null &
        pa=$!
        one_host "$b" >/dev/null &
        pb=$!
        wait "$pa"
        wait "$pb"
        t1=$EPOCHREALTIME
        pair_times+=("$(elapsed "$t0" "$t1")")
    done
    set_all "$old"
}
load() { cut -d' ' -f1 /proc/loadavg; }
all_on "$old"
say "floor, round 1 of 3: the four commands on ${floor_roots} roots one at a time, on $((floor_roots * 2)) two at a time"
floor_round

# 3. Ansible.
python3 "$here/helper.py" inventory "$work/fleet.json" "$work/venv/bin/python" >"$work/inventory.ini"
mkdir -p "$work/ansible-home" "$work/ansible-tmp"
cat >"$work/ansible.cfg" <<EOF
[defaults]
inventory = $work/inventory.ini
home = $work/ansible-home
local_tmp = $work/ansible-tmp
retry_files_enabled = False
host_key_checking = False
interpreter_python = $work/venv/bin/python

[connection]
pipelining = True
EOF
say "Ansible: ansible-playbook $here/playbook.yml ($hosts hosts, serial 2)"
ansible_load=$(load)
start=$(now)
if ! ANSIBLE_CONFIG="$work/ansible.cfg" ANSIBLE_NOCOLOR=1 \
    "$work/venv/bin/ansible-playbook" "$here/playbook.yml" >"$work/ansible.log" 2>&1; then
    tail -n 40 "$work/ansible.log" >&2
    die "ansible-playbook failed"
fi
ansible_s=$(elapsed "$start" "$(now)")
all_on "$target"
say "Ansible: $ansible_s s; dpkg-query: all $hosts roots on $package $target"
ansible_tasks=$(grep -c '^TASK \[' "$work/ansible.log" || true)

# 4. Back to 1.0 (not timed), and the server's copy of every host's packages refreshed.
say "resetting the roots to $package $old"
set_all "$old"
say "floor, round 2 of 3"
floor_round
token() { python3 "$here/helper.py" field "$work/cfg/$1/sluice/credentials.json" token; }
as() {
    local user=$1
    shift
    XDG_CONFIG_HOME="$work/cfg/$user" "$sluice" "$@"
}
for user in alice olga bob carol sam chair; do
    mkdir -p "$work/cfg/$user"
    printf '%s\n' "$password" | as "$user" login --server "$url" --username "$user" --password-stdin \
        >>"$work/login.log" 2>&1 || { cat "$work/login.log" >&2; die "cannot log in as $user"; }
done
python3 "$here/helper.py" refresh "$url" "$(token alice)"

# 5. Sluice: the change through peer review and the CAB, scheduled; then the timed rollout.
cat >"$work/plan.json" <<'EOF'
{
  "implementation": ["acme-web 1.1 two hosts at a time; pre-check, dry run, install, verify on each"],
  "verification": ["dpkg shows 1.1 on every host", "the acme-web health script passes on every host"],
  "rollback_criteria": {"max_failed_check_share": 0.0, "detection_window": "0s"}
}
EOF
cat >"$work/spec.json" <<EOF
{
  "policy": {
    "ring_order": ["prod"],
    "batch": {"count": 2},
    "max_concurrency": 2,
    "breaker": {"per_batch": {"count": 1}, "per_ring": {"count": 1}},
    "on_trip": "pause",
    "soak": "0s",
    "manual_gate": false,
    "follow_the_sun": false
  },
  "job": {
    "preflight": {"free_space": [{"path": "/var", "min_bytes": 10000000}]},
    "checks": [{"type": "command", "argv": ["/bin/sh", "-c", "exec \"\$SLUICE_ROOT/usr/lib/acme-web/health\""], "timeout_secs": 10}],
    "rollback": {"on_failure": "rollback"}
  }
}
EOF
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
change=$(as alice change create --title "acme-web $target on prod, two hosts at a time" --type normal \
    --target "$package=$target@Debian:12" --scope env=prod --update-type security \
    --justification "benchmark: the same upgrade Ansible just made" --plan-file "$work/plan.json" \
    --output json | json_field id)
as alice change submit "$change" --output json >/dev/null
as olga change sign-off "$change" --comment "plan and rollback criteria read" --output json >/dev/null
state=$(as alice change review "$change" --output json | json_field state)
for voter in bob carol sam chair; do
    [ "$state" = in-review ] || break
    state=$(as "$voter" change approve "$change" --comment "approved for the benchmark" --output json | json_field state)
done
[ "$state" = approved ] || die "$change is $state after the CAB's votes"
window_start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
window_end=$(date -u -d '+2 hours' +%Y-%m-%dT%H:%M:%SZ)
as alice change schedule "$change" --start "$window_start" --end "$window_end" --output json >/dev/null
say "Sluice: $change approved by the CAB and scheduled; sluice rollout start $change --spec spec.json --watch"
sluice_load=$(load)
start=$(now)
if ! as alice rollout start "$change" --spec "$work/spec.json" --watch >"$work/watch.log" 2>&1; then
    tail -n 40 "$work/watch.log" >&2
    die "the rollout did not complete"
fi
sluice_s=$(elapsed "$start" "$(now)")
all_on "$target"
rollout=$(as alice rollout list --change "$change" --output json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
say "Sluice: $sluice_s s; dpkg-query: all $hosts roots on $package $target"
python3 "$here/helper.py" breakdown "$url" "$(token alice)" "$rollout" "$work/breakdown.json" \
    >"$work/breakdown.txt"
server_s=$(python3 "$here/helper.py" field "$work/breakdown.json" server_seconds | cut -c1-5)
say "floor, round 3 of 3"
set_all "$old"
floor_round

host_median=$(python3 "$here/helper.py" median "${host_times[@]}")
pair_median=$(python3 "$here/helper.py" median "${pair_times[@]}")
median() { python3 "$here/helper.py" median "$@"; }
update_median=$(median "${update_times[@]}")
per_command="dpkg-query $(median "${query_times[@]}") s, apt-get -s $(median "${dry_times[@]}") s, apt-get install $(median "${install_times[@]}") s, dpkg-query $(median "${verify_times[@]}") s"
floor_s=$(python3 -c "import sys; print(f'{float(sys.argv[1]) * int(sys.argv[2]):.3f}')" "$host_median" "$batches")
pair_floor_s=$(python3 -c "import sys; print(f'{float(sys.argv[1]) * int(sys.argv[2]):.3f}')" "$pair_median" "$batches")

# 7. The summary.
sluice_vs_floor=$(ratio "$sluice_s" "$floor_s")
ansible_vs_sluice=$(ratio "$ansible_s" "$sluice_s")
ansible_vs_floor=$(ratio "$ansible_s" "$floor_s")
cat <<EOF

Rollout: Sluice vs ansible-core ($hosts private roots, $package $old -> $target, 2 hosts at a time)
  machine        $cores cores, $(uname -r); apt $apt_version, dpkg $dpkg_version; ansible-core $ansible_version; sluice $sluice_version
  Ansible        $ansible_s s   ansible-playbook wall time ($ansible_tasks tasks; load average $ansible_load at its start)
  Sluice         $sluice_s s   sluice rollout start --watch wall time ($server_s s created -> finished on the server;
                 load average $sluice_load at its start)
  floor          $floor_s s   $batches batches x $host_median s (median of ${#host_times[@]} hosts, one at a time:
                 $per_command)
                 ($pair_floor_s s with the two hosts of a batch at once: $batches x $pair_median s, median of ${#pair_times[@]} pairs;
                 apt-get update, which the agent runs before its dry run, $update_median s more per host)
  Sluice/floor   ${sluice_vs_floor}x (goal <= 1.5x)
  Ansible/Sluice ${ansible_vs_sluice}x
  Ansible/floor  ${ansible_vs_floor}x

Where Sluice's time went ($rollout):
$(cat "$work/breakdown.txt")
EOF
if [ -n "${OUT:-}" ]; then
    python3 - "$OUT" <<EOF
import json, sys
json.dump({
    "hosts": $hosts, "cores": $cores, "apt": "$apt_version", "dpkg": "$dpkg_version",
    "ansible_core": "$ansible_version", "sluice": "$sluice_version",
    "load_average_at_start": {"ansible": $ansible_load, "sluice": $sluice_load},
    "floor_per_command": "$per_command",
    "ansible_s": $ansible_s, "sluice_s": $sluice_s, "sluice_server_s": $server_s,
    "floor_s": $floor_s, "floor_host_median_s": $host_median,
    "floor_host_samples_s": [$(IFS=,; echo "${host_times[*]}")],
    "pair_floor_s": $pair_floor_s, "pair_median_s": $pair_median, "apt_update_median_s": $update_median,
    "sluice_vs_floor": $sluice_vs_floor, "ansible_vs_sluice": $ansible_vs_sluice,
    "ansible_vs_floor": $ansible_vs_floor,
    "breakdown": json.load(open("$work/breakdown.json")),
}, open(sys.argv[1], "w"), indent=1)
EOF
    say "results in $OUT"
fi
