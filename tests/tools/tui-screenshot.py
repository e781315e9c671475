#!/usr/bin/env python3
"""Renders a tmux pane (captured with `tmux capture-pane -e -p`) as an SVG screenshot.

Usage: tmux capture-pane -e -p -t SESSION | tests/tools/tui-screenshot.py > assets/tui.svg
Then optionally: convert assets/tui.svg assets/tui.png
"""
import html
import re
import sys

PALETTE = {
    0: "#1d1f21", 1: "#cc6666", 2: "#b5bd68", 3: "#f0c674", 4: "#81a2be", 5: "#b294bb",
    6: "#8abeb7", 7: "#c5c8c6", 8: "#666666", 9: "#ff7777", 10: "#c9d36a", 11: "#ffd37a",
    12: "#99bbdd", 13: "#d7a8e0", 14: "#9fd8cf", 15: "#ffffff",
}
FG, BG = "#c5c8c6", "#1d1f21"
CW, CH = 8.4, 17


def parse(line):
    """Yields (text, fg, bg, bold, dim, underline) runs."""
    state = dict(fg=None, bg=None, bold=False, dim=False, ul=False, rev=False)
    pos = 0
    for m in re.finditer(r"\x1b\[([0-9;]*)m", line):
        if m.start() > pos:
            yield line[pos:m.start()], dict(state)
        codes = [int(c) if c else 0 for c in m.group(1).split(";")]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                state.update(fg=None, bg=None, bold=False, dim=False, ul=False, rev=False)
            elif c == 1: state["bold"] = True
            elif c == 2: state["dim"] = True
            elif c == 4: state["ul"] = True
            elif c == 7: state["rev"] = True
            elif c == 22: state.update(bold=False, dim=False)
            elif c == 24: state["ul"] = False
            elif c == 27: state["rev"] = False
            elif 30 <= c <= 37: state["fg"] = PALETTE[c - 30]
            elif 90 <= c <= 97: state["fg"] = PALETTE[c - 90 + 8]
            elif c == 39: state["fg"] = None
            elif 40 <= c <= 47: state["bg"] = PALETTE[c - 40]
            elif 100 <= c <= 107: state["bg"] = PALETTE[c - 100 + 8]
            elif c == 49: state["bg"] = None
            elif c in (38, 48) and i + 2 < len(codes) and codes[i + 1] == 5:
                n = codes[i + 2]
                state["fg" if c == 38 else "bg"] = PALETTE.get(n, FG)
                i += 2
            i += 1
        pos = m.end()
    if pos < len(line):
        yield line[pos:], dict(state)


def main():
    lines = sys.stdin.read().rstrip("\n").split("\n")
    width = max(len(re.sub(r"\x1b\[[0-9;]*m", "", l)) for l in lines)
    out = []
    for row, line in enumerate(lines):
        col = 0
        for text, s in parse(line):
            fg, bg = s["fg"] or FG, s["bg"]
            if s["rev"]:
                fg, bg = (s["bg"] or BG), (s["fg"] or FG)
            x, y = col * CW, row * CH
            if bg:
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{len(text) * CW:.1f}" height="{CH}" fill="{bg}"/>')
            style = []
            if s["bold"]: style.append('font-weight="bold"')
            if s["dim"]: style.append('opacity="0.6"')
            if s["ul"]: style.append('text-decoration="underline"')
            if text.strip():
                out.append(
                    f'<text x="{x:.1f}" y="{y + CH - 4}" fill="{fg}" {" ".join(style)} '
                    f'textLength="{len(text) * CW:.1f}" lengthAdjust="spacingAndGlyphs" '
                    f'xml:space="preserve">{html.escape(text)}</text>'
                )
            col += len(text)
    w, h = width * CW, len(lines) * CH
    print(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h}" '
          f'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="14">')
    print(f'<rect width="100%" height="100%" fill="{BG}"/>')
    print("\n".join(out))
    print("</svg>")


main()
