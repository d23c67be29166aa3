#!/usr/bin/env python3
"""Helpers of bench/ansible/run.sh (Python standard library only).

  helper.py inventory FLEET_JSON PYTHON        the Ansible inventory (INI) of the fleet
  helper.py median NUMBER...                   the median
  helper.py breakdown URL TOKEN ROLLOUT OUT    where the rollout's time went, per batch:
                                               a table on stdout, the figures as JSON in OUT
  helper.py refresh URL TOKEN                  asks every agent for a fresh inventory and
                                               waits until all of them sent one
  helper.py field JSON_FILE KEY...             one field of a JSON file (KEYs index into it)
  helper.py rounds ROUNDS_JSON                 per round and over all rounds (median, min-max):
                                               Sluice/floor, Ansible/Sluice, Ansible/floor
"""

import json
import statistics
import sys
import time
import urllib.request
from datetime import datetime


def inventory(fleet_path, python):
    fleet = json.load(open(fleet_path))
    lines = ["[prod]"]
    for host in fleet["hosts"]:
        lines.append(
            f"{host['name']} ansible_connection=local ansible_python_interpreter={python} "
            f"root={host['root']}"
        )
    print("\n".join(lines))


def get(url, token, path):
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read().decode()


def post(url, token, path, body):
    request = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read().decode()


def refresh(url, token):
    """The server's copy of every host's packages taken after now: what a rollout plans from."""
    agents = json.loads(get(url, token, "/api/v1/agents"))
    for agent in agents:
        post(url, token, f"/api/v1/agents/{agent['hostname']}/inventory-request", {})
    deadline = time.time() + 120
    while True:
        waiting = [a["hostname"] for a in json.loads(get(url, token, "/api/v1/agents"))
                   if a.get("inventory_requested_at")]
        if not waiting:
            return
        if time.time() > deadline:
            sys.exit(f"helper.py: no fresh inventory within 2 minutes from {', '.join(waiting)}")
        time.sleep(0.2)


def ts(text):
    """RFC 3339 with up to nanoseconds -> seconds since the epoch (microsecond precision)."""
    text = text.rstrip("Z")
    if "." in text:
        whole, fraction = text.split(".")
        text = f"{whole}.{fraction[:6]:0<6}"
    else:
        text += ".000000"
    return datetime.fromisoformat(text + "+00:00").timestamp()


def events(url, token, rollout):
    """The rollout's logged events, from its (finished, so finite) event stream."""
    out, kind = [], None
    for line in get(url, token, f"/api/v1/rollouts/{rollout}/events").splitlines():
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:") and kind != "snapshot":
            out.append(json.loads(line[5:]))
    return out


# The job steps that are apt's and dpkg's own work (inspect reads dpkg's database; dry-run
# includes `apt-get update` unless the agent runs with --no-refresh).
APT_STEPS = {"inspect", "dry-run", "apply", "verify"}


def breakdown(url, token, rollout, out_path):
    view = json.loads(get(url, token, f"/api/v1/rollouts/{rollout}"))
    evs = events(url, token, rollout)
    jobs = {j["job"]["id"]: j for j in json.loads(get(url, token, "/api/v1/jobs?limit=1000"))}
    created, finished = ts(view["created_at"]), ts(view["finished_at"])
    starts = [e for e in evs if e["kind"] == "hosts-started"]
    succeeded = {e["detail"]["host"]: ts(e["at"]) for e in evs if e["kind"] == "host-succeeded"}
    updated = {e["detail"]["host"]: ts(e["at"]) for e in evs if e["kind"] == "host-updated"}
    batches = []
    for i, start in enumerate(starts):
        t0 = ts(start["at"])
        t_next = ts(starts[i + 1]["at"]) if i + 1 < len(starts) else finished
        hosts = []
        for h in start["detail"]["hosts"]:
            job = jobs[h["job"]]
            steps = job["report"]["steps"]
            first = ts(steps[0]["started_at"])
            last = ts(steps[-1]["finished_at"])
            apt = sum(ts(s["finished_at"]) - ts(s["started_at"]) for s in steps if s["step"] in APT_STEPS)
            by_step = {s["step"]: ts(s["finished_at"]) - ts(s["started_at"]) for s in steps}
            hosts.append({
                "host": h["host"],
                "queued": ts(job["created_at"]) - t0,
                "wake": ts(job["claimed_at"]) - ts(job["created_at"]),
                "claim_to_first_step": first - ts(job["claimed_at"]),
                "apt": apt,
                "agent_other": (last - first) - apt,
                "steps": by_step,
                "report": ts(job["finished_at"]) - last,
                "server_fold": updated[h["host"]] - ts(job["finished_at"]),
                "verified": succeeded[h["host"]] - updated[h["host"]],
                "done": succeeded[h["host"]] - t0,
            })
        critical = max(hosts, key=lambda x: x["done"])
        batches.append({
            "batch": start["detail"]["batch"],
            "seconds": t_next - t0,
            "critical": critical,
            "to_next": t_next - (t0 + critical["done"]),
            "hosts": hosts,
        })
    result = {
        "rollout": rollout,
        "server_seconds": finished - created,
        "request_to_first_batch": (ts(starts[0]["at"]) - created) if starts else None,
        "batches": batches,
    }
    json.dump(result, open(out_path, "w"), indent=1)

    ms = lambda s: f"{s * 1000:6.0f}"  # noqa: E731
    print(f"rollout {rollout}: {result['server_seconds']:.3f} s on the server's clock "
          f"(created -> finished); start request -> first batch {ms(result['request_to_first_batch'])} ms")
    print("per batch, the host that finished last (ms): wake = job queued -> claimed by the agent;"
          " apt = inspect + dry-run (with apt-get update under REFRESH=1) + apply + verify steps; agent = the job's other"
          " steps and gaps (journal, preflight, save-config, checks); report = last step -> report stored;"
          " fold = report -> folded by the rollout; verify = folded -> verified by a fresh inventory;"
          " next = -> next batch started")
    header = ["batch", "total", "queue", "wake", "start", "apt", "agent", "report", "fold", "verify", "next", "update+dry-run", "apply"]
    print(" ".join(f"{h:>7}" for h in header))
    sums = [0.0] * (len(header) - 1)
    for b in batches:
        c = b["critical"]
        row = [b["seconds"], c["queued"], c["wake"], c["claim_to_first_step"], c["apt"], c["agent_other"],
               c["report"], c["server_fold"], c["verified"], b["to_next"],
               c["steps"].get("dry-run", 0.0), c["steps"].get("apply", 0.0)]
        sums = [a + v for a, v in zip(sums, row)]
        print(f"{b['batch']:>7} " + " ".join(f"{ms(v):>7}" for v in row))
    n = max(len(batches), 1)
    print(f"{'mean':>7} " + " ".join(f"{ms(v / n):>7}" for v in sums))
    print(f"{'sum':>7} " + " ".join(f"{ms(v):>7}" for v in sums))
    every = [h for b in batches for h in b["hosts"]]
    names = []
    for h in every:
        names += [s for s in h["steps"] if s not in names]
    medians = {s: statistics.median(h["steps"][s] for h in every if s in h["steps"]) for s in names}
    result["step_medians"] = medians
    for key in ["wake", "claim_to_first_step", "report", "server_fold", "verified"]:
        result[f"median_{key}"] = statistics.median(h[key] for h in every)
    json.dump(result, open(out_path, "w"), indent=1)
    print(f"job steps, median of the {len(every)} jobs (ms): "
          + ", ".join(f"{s} {v * 1000:.1f}" for s, v in medians.items()))
    print("per job, median (ms): " + ", ".join(
        f"{k} {result['median_' + k] * 1000:.1f}"
        for k in ["wake", "claim_to_first_step", "report", "server_fold", "verified"]))


RATIOS = [
    ("Sluice/floor", "sluice_s", "floor_s"),
    ("Ansible/Sluice", "ansible_s", "sluice_s"),
    ("Ansible/floor", "ansible_s", "floor_s"),
]


def rounds(path):
    """The rounds of run.sh (ansible_s, sluice_s, floor_s, loads): one line each, then each
    ratio's median and spread (min-max) over the rounds; the summary also goes into the file."""
    data = json.load(open(path))
    runs = data["rounds"]
    for r in runs:
        for name, top, bottom in RATIOS:
            r[name] = r[top] / r[bottom]
    print(f"  {'round':<6}{'Ansible s':>10}{'Sluice s':>10}{'floor s':>9}"
          + "".join(f"{name:>16}" for name, _, _ in RATIOS) + "   load at start (Ansible, Sluice)")
    for i, r in enumerate(runs, 1):
        print(f"  {i:<6}{r['ansible_s']:>10.2f}{r['sluice_s']:>10.3f}{r['floor_s']:>9.3f}"
              + "".join(f"{r[name]:>15.2f}x" for name, _, _ in RATIOS)
              + f"   {r['ansible_load']}, {r['sluice_load']}")
    summary = {}
    for name, _, _ in RATIOS:
        values = [r[name] for r in runs]
        summary[name] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    for key in ["ansible_s", "sluice_s", "floor_s"]:
        values = [r[key] for r in runs]
        summary[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    print(f"  over {len(runs)} rounds, median (min-max):")
    for key, label, digits in [("ansible_s", "Ansible", 2), ("sluice_s", "Sluice", 3),
                               ("floor_s", "floor", 3)]:
        v = summary[key]
        print(f"    {label:<15}{v['median']:.{digits}f} s ({v['min']:.{digits}f}-{v['max']:.{digits}f})")
    for name, _, _ in RATIOS:
        v = summary[name]
        print(f"    {name:<15}{v['median']:.2f}x ({v['min']:.2f}-{v['max']:.2f})")
    data["summary"] = summary
    json.dump(data, open(path, "w"), indent=1)


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "inventory":
        inventory(*args)
    elif command == "median":
        print(f"{statistics.median(float(a) for a in args):.4f}")
    elif command == "breakdown":
        breakdown(*args)
    elif command == "refresh":
        refresh(*args)
    elif command == "rounds":
        rounds(*args)
    elif command == "field":
        value = json.load(open(args[0]))
        for key in args[1:]:
            value = value[int(key)] if isinstance(value, list) else value[key]
        print(value if isinstance(value, str) else json.dumps(value))
    else:
        sys.exit(f"helper.py: unknown command {command}")


if __name__ == "__main__":
    main()
