#!/usr/bin/env python3
"""Times a newcomer's walk through `cutover demo`: starts it in tmux and presses only the keys
the footer's `▶ next:` hint names, until it says `done:`. Prints each step with its time.

Usage: tests/tools/demo-walkthrough.py target/release/cutover [WIDTHxHEIGHT] [demo args…]
e.g.   tests/tools/demo-walkthrough.py target/release/cutover 80x24
"""
import os
import re
import subprocess
import sys
import time


def tmux(*args, check=True):
    return subprocess.run(["tmux", *args], check=check, capture_output=True, text=True).stdout


def main():
    binary = sys.argv[1]
    size = sys.argv[2] if len(sys.argv) > 2 else "80x24"
    width, height = size.split("x")
    extra = " ".join(sys.argv[3:])
    name = f"cutover-walk-{os.getpid()}"
    env = "env -u DATABASE_URL"
    tmux("new-session", "-d", "-s", name, "-x", width, "-y", height, f"{env} {binary} demo {extra}")
    started = time.monotonic()
    try:
        first_key = None
        extras_done = set()
        last = None
        while True:
            screen = tmux("capture-pane", "-p", "-t", name, check=False)
            hint = next((l.split("▶ ", 1)[1].strip() for l in screen.splitlines() if "▶ " in l), None)
            now = time.monotonic() - started
            if hint is None:
                if now > 600:
                    sys.exit(f"no hint after {now:.0f}s:\n{screen}")
                time.sleep(0.2)
                continue
            if hint != last:
                print(f"{now:6.1f}s  {hint}", flush=True)
                last = hint
            if hint.startswith("done:"):
                break
            meanwhile = re.search(r"· meanwhile (:\w+)", hint)
            keys = []
            if meanwhile and meanwhile.group(1) not in extras_done:
                extras_done.add(meanwhile.group(1))
                keys = [meanwhile.group(1)]
            elif hint.startswith("next: wait") or " must sign off " in hint:
                keys = []
            elif hint.endswith("(a, then Y)"):
                keys = ["a", "Y"]
            elif hint.endswith("(:app v2)"):
                keys = [":app v2"]
            else:
                m = re.search(r"\((\w)\)…?$", hint)
                keys = [m.group(1)] if m else []
            for k in keys:
                if first_key is None:
                    first_key = time.monotonic()
                if k.startswith(":"):
                    tmux("send-keys", "-t", name, ":")
                    tmux("send-keys", "-t", name, "-l", k[1:])
                    tmux("send-keys", "-t", name, "Enter")
                else:
                    if k == "Y":
                        time.sleep(0.4)
                    tmux("send-keys", "-t", name, k)
            time.sleep(0.5 if keys else 0.3)
        total = time.monotonic() - started
        from_key = time.monotonic() - (first_key or started)
        print(f"contract applied: {total:.1f}s after start, {from_key:.1f}s after the first key")
    finally:
        tmux("send-keys", "-t", name, "q", check=False)
        time.sleep(3)
        tmux("kill-session", "-t", name, check=False)


main()
