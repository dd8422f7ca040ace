"""Make docs/images/console.png: the sample app's development output in a real terminal.

``python docs/images/console_screenshot.py`` from the repository root (tmux and Chromium
installed, Playwright for Python): runs ``python -m sample_app`` in a detached tmux session,
sends it a few requests (a page, an account, a 404, the deliberate 500), captures the pane
with its colours (``tmux capture-pane -p -e``) and draws that text in headless Chromium.
"""

from __future__ import annotations

import html
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "console.png"
COLUMNS, ROWS = 168, 46
SOCKET = f"flask-observe-shot-{os.getpid()}"

#: xterm's palette, the 16 colours ANSI codes 30-37 and 90-97 name.
PALETTE = [
    "#2e3436", "#cc4a4a", "#6aa84f", "#c4a000", "#4f7fd0", "#a66ec0", "#3ea8b8", "#d3d7cf",
    "#6a6f70", "#ef6b6b", "#8ae234", "#fce94f", "#83a9ef", "#c99fe0", "#5fd7e6", "#eeeeec",
]  # fmt: skip
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tmux(*args: str) -> str:
    done = subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True)
    done.check_returncode()
    return done.stdout


def to_html(text: str) -> str:
    """The pane's text with its SGR sequences as styled spans."""
    out: list[str] = []
    style: dict[str, str] = {}
    position = 0

    def emit(chunk: str) -> None:
        if not chunk:
            return
        css = ";".join(f"{k}:{v}" for k, v in style.items())
        out.append(
            f'<span style="{css}">{html.escape(chunk)}</span>' if css else html.escape(chunk)
        )

    for match in SGR.finditer(text):
        emit(text[position : match.start()])
        position = match.end()
        codes = [int(c) for c in match[1].split(";") if c] or [0]
        while codes:
            code = codes.pop(0)
            if code == 0:
                style.clear()
            elif code == 1:
                style["font-weight"] = "bold"
            elif code == 2:
                style["opacity"] = "0.7"
            elif code == 22:
                style.pop("font-weight", None)
                style.pop("opacity", None)
            elif 30 <= code <= 37 or 90 <= code <= 97:
                style["color"] = PALETTE[code - 30 if code < 90 else code - 82]
            elif code == 39:
                style.pop("color", None)
            elif code == 38 and codes[:1] == [5]:
                index = codes[1]
                codes = codes[2:]
                if index < 16:
                    style["color"] = PALETTE[index]
    emit(text[position:])
    return "".join(out)


def main() -> None:
    port, platform_port = free_port(), free_port()
    work = Path(tempfile.mkdtemp(prefix="console-shot-"))
    command = (
        f"cd {work} && PYTHONPATH={ROOT} FLASK_SQLALCHEMY_DATABASE_URI=sqlite:///{work}/db.sqlite"
        f" {sys.executable} -m sample_app --port {port} --platform-port {platform_port}"
        " --platform-failure-rate 0; sleep 600"
    )
    tmux("new-session", "-d", "-s", "console", "-x", str(COLUMNS), "-y", str(ROWS), command)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/health/live", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        joined = tmux("capture-pane", "-p", "-J", "-t", "console")
        token = re.search(r"choose one\): (\S+)", joined)[1]  # type: ignore[index]
        requests.get(f"{base}/api/accounts/1", timeout=10)
        requests.get(f"{base}/api/accounts/999", timeout=10)
        requests.get(
            f"{base}/api/debug/fail", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        time.sleep(1)
        pane = tmux("capture-pane", "-p", "-e", "-t", "console")
    finally:
        tmux("kill-server")
    # The token is made per process and dies with it; shorten it anyway.
    pane = pane.replace(token, token[:6] + "…")
    lines = pane.rstrip("\n").split("\n")
    while lines and not SGR.sub("", lines[-1]).strip():
        lines.pop()
    page = (
        "<html><body style='margin:0;background:#1e1e1e'>"
        '<pre style="margin:0;padding:14px 16px;color:#d3d7cf;background:#1e1e1e;'
        "font:13px/1.35 'DejaVu Sans Mono',monospace\">"
        + "\n".join(to_html(line) for line in lines)
        + "</pre></body></html>"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        tab = browser.new_page(viewport={"width": 1400, "height": 400}, device_scale_factor=1)
        tab.set_content(page)
        tab.locator("pre").screenshot(path=str(OUT))
        browser.close()
    print(OUT)


if __name__ == "__main__":
    main()
