"""The end-to-end tests' world: the service process, the CLI beside it, the database, the fake.

One service per module: a temporary SQLite database migrated by `donorbot db upgrade`, an
account file from `donorbot demo config` (no quiet hours and no automatic reminders, so
nothing depends on the time of day), a console account made by `donorbot user create`, and
`donorbot serve --fake-wechat P2` (the fake WeChat API in the same process; every message
the bot sends is recorded there and read back through its /_fake/ admin API).

The browser is Debian's `chromium` (/usr/bin/chromium, installed by `.ci/install-chromium`,
which `make test` runs), driven by Playwright's sync API; Playwright never downloads a
browser of its own. A missing Chromium fails the tests with a clear message, never skips.

Every request the page makes outside 127.0.0.1 is refused and recorded (the console must
load nothing from a CDN), and every JavaScript error is recorded; the tests assert both
lists are empty. Screenshots of each page go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# --headless etc. as the issue asks; the rest keep Chromium from phoning home, which this
# machine's closed network refuses. Playwright gives every launch a fresh, empty profile
# directory of its own (it refuses a --user-data-dir argument to launch()).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ZJJ = "zhangjiajie"
USERNAME = "e2e"
PASSWORD = "e2e-correct-horse-battery"
TIMEOUT_MS = 10_000

_BIN = Path(sys.executable).with_name("donorbot")
DONORBOT = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "bot"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def quiet_account_file(path: Path) -> None:
    """`donorbot demo config`'s accounts, made quiet: no quiet hours (a broadcast goes out
    whatever the time of day) and no automatic reminders (nothing but the test's messages)."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^(\[jurisdictions\.\w+\])$", r'\1\nquiet_hours = ""', text)
    text = text.replace("enabled = true", "enabled = false")
    path.write_text(text, encoding="utf-8")


@dataclass
class Service:
    """`donorbot serve` with its fake WeChat API, its database, and the CLI next to it."""

    tmp: Path
    env: dict[str, str] = field(repr=False)  # the whole environment: too long to show
    db_path: Path
    url: str = ""
    fake_url: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    ready: bool = False
    done: set[str] = field(default_factory=set)  # flows already run (`once`)
    failed: set[str] = field(default_factory=set)  # flows that failed (`once`)

    def once(self, name: str, flow: Callable[[], None]) -> None:
        """Run a flow that later tests build on, at most once; after it failed, later tests
        fail at once instead of trying (and timing out) again."""
        if name in self.done:
            return
        if name in self.failed:
            pytest.fail(f"an earlier step failed: {name} (see the first failure above)")
        try:
            flow()
        except BaseException:
            self.failed.add(name)
            raise
        self.done.add(name)

    # -- the CLI ------------------------------------------------------------------------

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`donorbot ARGS` against the service's database and account file; must succeed."""
        return self.run_all(args)[0]

    def run_all(self, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
        """Several `donorbot` commands at once (each costs seconds of start-up alone)."""
        procs = [
            (args, subprocess.Popen(
                [*DONORBOT, *args], env=self.env, text=True,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            ))
            for args in commands
        ]  # fmt: skip
        results = []
        for args, proc in procs:
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
            assert done.returncode == 0, (
                f"donorbot {' '.join(args)} exited {done.returncode}:\n{out}\n{err}"
            )
            results.append(done)
        return results

    def chat(self, text: str, openid: str = "o_e2e") -> str:
        """What the bot answers `openid` through the running server's webhook."""
        args = ("chat", "-j", ZJJ, "--openid", openid, "--url", self.url, "--say", text)
        return self.run(*args).stdout.strip()

    # -- the server ---------------------------------------------------------------------

    def launch(self) -> None:
        """Start `donorbot serve --fake-wechat` (then `wait_ready`)."""
        port, fake_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.fake_url = f"http://127.0.0.1:{fake_port}"
        self.env["DONORBOT_WECHAT_API_BASE"] = self.fake_url
        self.env["DONORBOT_WECOM_API_BASE"] = self.fake_url
        self.log_path = self.tmp / "serve.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*DONORBOT, "serve", "--port", str(port), "--fake-wechat", str(fake_port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        """Wait until the server and its fake answer (at once when they already have)."""
        if self.ready:
            return
        wait_for("donorbot serve to answer /healthz", lambda: self._up(self.url + "/healthz"), 60)
        wait_for("the fake WeChat API", lambda: self._up(self.fake_url + "/_fake/stats"), 60)
        self.ready = True

    def _up(self, url: str) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"donorbot serve exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-6000:]

    # -- the fake WeChat API --------------------------------------------------------------

    def fake(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.fake_url + path, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def messages_to(self, openid: str) -> list[dict[str, Any]]:
        return list(self.fake(f"/_fake/messages?touser={openid}")["messages"])

    # -- the database, read directly (an independent check of what the pages show) -------

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            return list(conn.execute(query, args).fetchall())
        finally:
            conn.close()


@dataclass
class Watch:
    """What the page did that it must not: requests off this machine, JavaScript errors."""

    offsite: list[str] = field(default_factory=list)
    js_errors: list[str] = field(default_factory=list)


def shot(tab: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as tests/artifacts/<name>.png for a reviewer to look at (the whole
    page, or only the first screenful of a very long one)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=full_page)
    return path
