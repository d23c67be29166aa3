#!/usr/bin/env bash
# Rollout benchmark, Sluice against ansible-core (docs/benchmarks.md, "Rollout: Sluice vs
# ansible-core"). One package (acme-web 1.0 -> 1.1) on the same 20 private package roots, two
# hosts at a time, each host pre-checked, dry-run, installed and verified:
#
#   1. ansible-core 2.19 into a temporary venv (bench/ansible/requirements.txt, pinned);
#   2. the fleet: `sluice demo --fleet-only` (server, users, local apt repository, 20 roots on
#      acme-web 1.0 in env=prod, 20 enrolled agents);
#   3. ROUNDS times (default 3), alternately:
#      a. Ansible: bench/ansible/playbook.yml (serial: 2, max_fail_percentage: 0), timed;
#         the roots back on 1.0 (not timed), the server's inventories refreshed;
#      b. Sluice: a change through peer review and the CAB, scheduled (not timed), then timed:
#         `sluice rollout start CHG --spec spec.json --watch` until the rollout finished; the
#         roots back on 1.0, the inventories refreshed;
#   4. the floor: apt's own work for one host (dpkg-query, apt-get -s install, apt-get install,
#      dpkg-query), timed directly, before, between and after every run; a round's floor is
#      10 batches x the median host of the floor measurements around its two runs;
#   5. each round's figures and ratios, each ratio's median and spread (min-max) over the
#      rounds, and where Sluice's time went, batch by batch, in the last round.
#
# Needs root (dpkg installs nothing without it, even into a private root; the machine's own
# packages are never touched), dpkg-dev, apt, python3 with venv, and PyPI. Environment:
#   SLUICE=PATH      the sluice binary (default target/release/sluice, built when missing)
#   ROUNDS=N         Ansible and Sluice each run N times, alternately (default 3)
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
rounds=${ROUNDS:-3}
package=acme-web
old=1.0
target=1.1

say() { printf 'bench: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ "$floor_roots" -ge 1 ] && [ $((floor_roots * 3)) -le "$hosts" ] ||
    die "FLOOR_ROOTS=$floor_roots: from 1 to $((hosts / 3)) (N roots one at a time and 2N in pairs, of $hosts)"

[ "$rounds" -ge 1 ] 2>/dev/null || die "ROUNDS=$rounds: a number of rounds, 1 or more (3 or more to report a spread)"

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
floor_starts=()
floor_round() {
    local i stamps a b t0 t1 pa pb
    floor_starts+=("${#host_times[@]}")
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
# The host samples of floor rounds FIRST..LAST (indexes into floor_starts), one a line.
floor_samples() {
    local first=$1 last=$2 from to
    from=${floor_starts[$first]}
    if [ $((last + 1)) -lt "${#floor_starts[@]}" ]; then
        to=${floor_starts[$((last + 1))]}
    else
        to=${#host_times[@]}
    fi
    printf '%s\n' "${host_times[@]:$from:$((to - from))}"
}
all_on "$old"
say "floor, before round 1: the four commands on ${floor_roots} roots one at a time, on $((floor_roots * 2)) two at a time"
floor_round

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

# 3. The rounds: Ansible, then Sluice, ROUNDS times; the floor before, between and after.
round_lines=()
for round in $(seq 1 "$rounds"); do
    say "round $round of $rounds: Ansible: ansible-playbook $here/playbook.yml ($hosts hosts, serial 2)"
    ansible_load=$(load)
    start=$(now)
    if ! ANSIBLE_CONFIG="$work/ansible.cfg" ANSIBLE_NOCOLOR=1 \
        "$work/venv/bin/ansible-playbook" "$here/playbook.yml" >"$work/ansible-$round.log" 2>&1; then
        tail -n 40 "$work/ansible-$round.log" >&2
        die "ansible-playbook failed"
    fi
    ansible_s=$(elapsed "$start" "$(now)")
    all_on "$target"
    say "round $round: Ansible $ansible_s s (load average $ansible_load at its start); dpkg-query: all $hosts roots on $package $target"
    ansible_tasks=$(grep -c '^TASK \[' "$work/ansible-$round.log" || true)

    # Back to 1.0 (not timed), the floor, and the server's copy of every host's packages.
    set_all "$old"
    say "floor, between Ansible and Sluice in round $round"
    floor_round
    python3 "$here/helper.py" refresh "$url" "$(token alice)"

    change=$(as alice change create --title "acme-web $target on prod, two hosts at a time (round $round)" \
        --type normal --target "$package=$target@Debian:12" --scope env=prod --update-type security \
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
    say "round $round: Sluice: $change approved by the CAB and scheduled; sluice rollout start $change --spec spec.json --watch"
    sluice_load=$(load)
    start=$(now)
    if ! as alice rollout start "$change" --spec "$work/spec.json" --watch >"$work/watch-$round.log" 2>&1; then
        tail -n 40 "$work/watch-$round.log" >&2
        die "the rollout did not complete"
    fi
    sluice_s=$(elapsed "$start" "$(now)")
    all_on "$target"
    rollout=$(as alice rollout list --change "$change" --output json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
    say "round $round: Sluice $sluice_s s (load average $sluice_load at its start); dpkg-query: all $hosts roots on $package $target"
    python3 "$here/helper.py" breakdown "$url" "$(token alice)" "$rollout" "$work/breakdown-$round.json" \
        >"$work/breakdown-$round.txt"
    server_s=$(python3 "$here/helper.py" field "$work/breakdown-$round.json" server_seconds | cut -c1-5)

    set_all "$old"
    say "floor, after Sluice in round $round"
    floor_round
    python3 "$here/helper.py" refresh "$url" "$(token alice)"

    # This round's floor: the floor rounds just before, between and just after its two runs.
    f=$((2 * (round - 1)))
    mapfile -t samples < <(floor_samples "$f" $((f + 2)))
    round_host=$(python3 "$here/helper.py" median "${samples[@]}")
    round_floor=$(python3 -c "import sys; print(f'{float(sys.argv[1]) * int(sys.argv[2]):.3f}')" "$round_host" "$batches")
    round_lines+=("{\"ansible_s\": $ansible_s, \"sluice_s\": $sluice_s, \"sluice_server_s\": $server_s, \"floor_s\": $round_floor, \"floor_host_median_s\": $round_host, \"floor_host_samples\": ${#samples[@]}, \"ansible_load\": $ansible_load, \"sluice_load\": $sluice_load, \"ansible_tasks\": $ansible_tasks, \"rollout\": \"$rollout\"}")
done

# 4. The floor over all rounds, per command.
median() { python3 "$here/helper.py" median "$@"; }
pair_median=$(median "${pair_times[@]}")
update_median=$(median "${update_times[@]}")
per_command="dpkg-query $(median "${query_times[@]}") s, apt-get -s $(median "${dry_times[@]}") s, apt-get install $(median "${install_times[@]}") s, dpkg-query $(median "${verify_times[@]}") s"
results=${OUT:-$work/results.json}
python3 - "$results" <<PYTHON
import json, sys
json.dump({
    "hosts": $hosts, "cores": $cores, "kernel": "$(uname -r)", "apt": "$apt_version",
    "dpkg": "$dpkg_version", "ansible_core": "$ansible_version", "sluice": "$sluice_version",
    "floor_per_command_median": "$per_command",
    "floor_host_samples_s": [$(IFS=,; echo "${host_times[*]}")],
    "pair_median_s": $pair_median, "apt_update_median_s": $update_median,
    "rounds": [$(IFS=,; echo "${round_lines[*]}")],
    "breakdown_last_round": json.load(open("$work/breakdown-$rounds.json")),
}, open(sys.argv[1], "w"), indent=1)
PYTHON

# 5. The summary.
cat <<EOF

Rollout: Sluice vs ansible-core ($hosts private roots, $package $old -> $target, 2 hosts at a time, $rounds rounds)
  machine   $cores cores, $(uname -r); apt $apt_version, dpkg $dpkg_version; ansible-core $ansible_version; sluice $sluice_version
  Ansible   ansible-playbook wall time ($ansible_tasks tasks)
  Sluice    sluice rollout start --watch wall time
  floor     $batches batches x the median host of the floor rounds around the round's two runs
            (medians over all ${#host_times[@]} hosts: $per_command;
            two hosts at once: $pair_median s, median of ${#pair_times[@]} pairs;
            apt-get update, which the agent runs before its dry run by default: $update_median s more a host)
$(python3 "$here/helper.py" rounds "$results")

Where Sluice's time went, round $rounds:
$(cat "$work/breakdown-$rounds.txt")
EOF
if [ -n "${OUT:-}" ]; then say "results in $OUT"; fi
