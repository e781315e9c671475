#!/usr/bin/env python3
"""Measures the command center: idle CPU and RSS of a viewing TUI while the backfill runs, key
latency (keypress → screen), and cross-terminal latency (action in TUI A → visible in TUI B).

Usage: DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres tests/tools/tui-perf.py [BIN] [ACCOUNTS]
BIN defaults to target/release/cutover. Creates and drops its own database `cutover_perf_<pid>`.
Needs tmux and psql.
"""
import os
import statistics
import subprocess
import sys
import time
import urllib.parse

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/cutover")
ACCOUNTS = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
PLAN = os.path.abspath("plans/accounts-balance-cents.toml")
SERVER = os.environ["DATABASE_URL"]
DB = f"cutover_perf_{os.getpid()}"
u = urllib.parse.urlparse(SERVER)
URL = urllib.parse.urlunparse(u._replace(path="/" + DB))
TICKS = os.sysconf("SC_CLK_TCK")


def psql(url, sql):
    return subprocess.run(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def tmux(*args):
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def start(name, cmd):
    tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40", f"exec env DATABASE_URL='{URL}' {cmd}")
    return int(tmux("display", "-p", "-t", name, "#{pane_pid}").strip())


def screen(name):
    return tmux("capture-pane", "-p", "-t", name)


def wait_for(name, needle, present=True, timeout=10.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if (needle in screen(name)) == present:
            return time.monotonic() - t0
        time.sleep(0.002)
    raise SystemExit(f"{name}: {needle!r} {'never appeared' if present else 'never went away'}:\n{screen(name)}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def setup():
    psql(SERVER, f"CREATE DATABASE {DB}")
    with open("assets/demo/schema.sql") as f:
        subprocess.run(["psql", "-qX", "-v", "ON_ERROR_STOP=1", URL], input=f.read(), text=True,
                       check=True, capture_output=True)
    psql(URL, f"SELECT cutover_demo_seed({ACCOUNTS}, 1000, 1000)")


def main():
    setup()
    try:
        run()
    finally:
        for s in ("perf-a", "perf-b", "perf-bf"):
            subprocess.run(["tmux", "kill-session", "-t", s], capture_output=True)
        time.sleep(1)
        psql(SERVER, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def run():
    # Viewer B first (read-only), then A (which runs the phases and the backfill in-process).
    a = start("perf-a", f"{BIN} tui {PLAN}")
    wait_for("perf-a", "● live")
    b = start("perf-b", f"{BIN} tui --read-only {PLAN}")
    wait_for("perf-b", "● live")
    # Cap the backfill so it outlasts the measurement, then drive the migration to the backfill
    # from the CLI (the same commands an operator has).
    subprocess.run([BIN, "--database-url", URL, "backfill", "tune", PLAN, "--max-rows-per-second", "20000"],
                   check=True, capture_output=True)
    for gate, roles in (("expand", ["lead"]), ("dual_write", ["app_owner"]), ("backfill", ["data_owner"])):
        for role in roles:
            subprocess.run([BIN, "--database-url", URL, "signoff", PLAN, "--gate", gate, "--role", role],
                           check=True, capture_output=True)
        r = subprocess.run([BIN, "--database-url", URL, "advance", PLAN], capture_output=True, text=True)
        if r.returncode != 0:
            subprocess.run([BIN, "--database-url", URL, "override", PLAN, "--gate", gate, "--reason",
                            "perf measurement: probes not under test"], check=True, capture_output=True)
            subprocess.run([BIN, "--database-url", URL, "advance", PLAN], check=True, capture_output=True)
    wait_for("perf-b", "Backfill running", timeout=30)
    time.sleep(3)
    # Idle CPU and RSS of viewer B while A runs the backfill.
    t0, c0 = time.monotonic(), cpu_ticks(b)
    time.sleep(20)
    cpu = (cpu_ticks(b) - c0) / TICKS / (time.monotonic() - t0) * 100
    ca = cpu_ticks(a)
    print(f"viewer TUI while the backfill runs: CPU {cpu:.2f} % of a core over 20 s, RSS {rss_mib(b):.1f} MiB")
    print(f"backfilling TUI (A): RSS {rss_mib(a):.1f} MiB")
    # Key latency: '?' opens the help overlay, Esc closes it.
    lat = []
    for _ in range(20):
        tmux("send-keys", "-t", "perf-b", "?")
        lat.append(wait_for("perf-b", "Keys — Esc closes"))
        tmux("send-keys", "-t", "perf-b", "Escape")
        lat.append(wait_for("perf-b", "Keys — Esc closes", present=False))
    lat_ms = sorted(x * 1000 for x in lat)
    print(f"key → screen: median {statistics.median(lat_ms):.0f} ms, p95 {lat_ms[int(len(lat_ms) * .95) - 1]:.0f} ms, "
          f"max {lat_ms[-1]:.0f} ms over {len(lat_ms)} keys (includes tmux capture polling)")
    # Cross-terminal: Space in A pauses/resumes; B must show it.
    cross = []
    for _ in range(5):
        tmux("send-keys", "-t", "perf-a", "Space")
        cross.append(wait_for("perf-b", "Backfill paused"))
        time.sleep(0.5)
        tmux("send-keys", "-t", "perf-a", "Space")
        cross.append(wait_for("perf-b", "Backfill paused", present=False))
        time.sleep(0.5)
    cross_ms = sorted(x * 1000 for x in cross)
    print(f"action in A → visible in B: median {statistics.median(cross_ms):.0f} ms, max {cross_ms[-1]:.0f} ms "
          f"over {len(cross_ms)} pause/resume actions")
    print(f"backfilling TUI (A): CPU while measured {(cpu_ticks(a) - ca) / TICKS / (time.monotonic() - t0) * 100:.1f} % of a core")


main()
