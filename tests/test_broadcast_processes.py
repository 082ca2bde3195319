"""Broadcast reliability with real processes: PostgreSQL, Redis, `donorbot worker` and
`donorbot fake-wechat` each in their own process (issue 6, "Reliability tests").

Per test: a throwaway PostgreSQL database migrated by `donorbot db upgrade`, an account
file from `donorbot demo config` (no quiet hours, no automatic reminders, so nothing
depends on the time of day or the calendar), N liaison bindings of 张家界 inserted
directly, and a template broadcast to all of them created by `donorbot broadcast create`.
Workers and the fake are started with Popen and killed in the fixture's teardown.

What the fake saw is read from its /_fake/stats: `repeat_recipients` counts recipients
who received a message twice (WeChat delivered it twice), `dropped_repeats` the resends
WeChat dropped because they carried a `client_msg_id` it had already accepted. The
first must be 0; the second is printed (a worker killed mid-batch leaves rows it had
sent but not recorded; they are sent again when the lease runs out and dropped).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
from click.testing import CliRunner

from bot.cli import main
from bot.fake_wechat import TEMPLATE_PATH

REDIS_URL = os.environ.get("DONORBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ZJJ = "zhangjiajie"
LEASE = 3.0  # seconds: a killed worker's rows come back this fast
_BIN = Path(sys.executable).with_name("donorbot")
DONORBOT = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "bot"]


# ---- helpers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def sql(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def execute(dsn: str, script: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(script)
        finally:
            await conn.close()

    asyncio.run(go())


def tcp_sockets(pid: int) -> list[tuple[int, int]]:
    """(local port, remote port) of the TCP sockets process `pid` holds open (from /proc)."""
    inodes = set()
    with_fds = Path(f"/proc/{pid}/fd")
    for fd in with_fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[9] in inodes:
                found.append(
                    (int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16))
                )
    return found


@dataclass
class World:
    """One test's database, account file, fake WeChat and worker processes."""

    tmp: Path
    dsn: str  # asyncpg form of the test database's URL
    env: dict[str, str]
    appid: str
    openids: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    fake_url: str = ""
    _logs: int = 0

    # -- processes --------------------------------------------------------------------

    def run(self, *args: str, **env: str) -> str:
        done = subprocess.run(
            [*DONORBOT, *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"donorbot {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        self._logs += 1
        log = (self.tmp / f"{self._logs:02d}-{name}.log").open("wb")
        proc = subprocess.Popen(
            [*DONORBOT, *args], env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        proc.log_path = log.name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def start_fake(self) -> None:
        port = free_port()
        self.start("fake", "fake-wechat", "--port", str(port))
        self.fake_url = f"http://127.0.0.1:{port}"
        self.env["DONORBOT_WECHAT_API_BASE"] = self.fake_url
        wait_for("the fake WeChat API", self._fake_up, timeout=30)

    def _fake_up(self) -> bool:
        try:
            self.stats()
        except OSError:
            return False
        return True

    def start_worker(self, name: str = "worker", **env: str) -> subprocess.Popen[bytes]:
        return self.start(name, "worker", **env)

    def start_workers_ready(self, *names: str, **env: str) -> list[subprocess.Popen[bytes]]:
        """Workers that are all polling the database (so all can claim from the start)."""
        workers = [self.start_worker(name, **env) for name in names]
        pg_port = int(self.dsn.rsplit(":", 1)[1].split("/")[0])

        def reached(pid: int) -> bool:
            return any(remote == pg_port for _, remote in tcp_sockets(pid))

        for w in workers:
            wait_for("a worker to reach the database", partial(reached, w.pid), timeout=60)
        return workers

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            self.kill(proc)

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]

    # -- the fake ---------------------------------------------------------------------

    def fake(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.fake_url + path, data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def stats(self) -> dict[str, Any]:
        return self.fake("/_fake/stats")

    def accepted(self) -> int:
        return int(self.stats()["accepted"].get(TEMPLATE_PATH, 0))

    def fault(self, **fault: Any) -> None:
        assert self.fake("/_fake/faults", {"path": TEMPLATE_PATH, **fault}) == {"ok": True}

    # -- the broadcast ----------------------------------------------------------------

    def bind(self, n: int) -> None:
        self.openids = [f"o_rel_{i:05d}" for i in range(1, n + 1)]

        async def go() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(
                    "INSERT INTO jurisdictions (code, name, timezone) VALUES ($1, $2, $3)",
                    ZJJ,
                    "张家界市",
                    "Asia/Shanghai",
                )
                await conn.copy_records_to_table(
                    "bindings",
                    records=[(ZJJ, o, "liaison") for o in self.openids],
                    columns=["jurisdiction", "openid", "role"],
                )
            finally:
                await conn.close()

        asyncio.run(go())

    def create(self, *message: str) -> int:
        message = message or (
            "--channel", "template", "--template-id", "TPL_RELIABILITY",
            "--param", "thing1=献血提醒", "--param", "time2={{ month }}",
        )  # fmt: skip
        out = self.run(
            "broadcast", "create", "-j", ZJJ, "--audience", "liaisons", *message,
            "--key", f"reliability-{uuid.uuid4().hex[:8]}",
        )  # fmt: skip
        last = out.strip().splitlines()[-1]
        assert last.isdigit(), out
        return int(last)

    def counts(self, bid: int) -> dict[str, int]:
        rows = sql(
            self.dsn,
            "SELECT status, count(*) FROM deliveries WHERE broadcast_id = $1 GROUP BY status",
            bid,
        )
        return {r[0]: int(r[1]) for r in rows}

    def wait_done(self, bid: int, timeout: float) -> dict[str, int]:
        def done() -> dict[str, int] | None:
            c = self.counts(bid)
            return c if not c.get("pending") and not c.get("sending") else None

        result: dict[str, int] = wait_for(f"broadcast {bid} to finish", done, timeout, 0.25)
        status = json.loads(self.run("broadcast", "status", str(bid), "--json"))
        assert {k: v for k, v in status.items() if v} == result
        return result

    def deliveries(self, bid: int) -> list[asyncpg.Record]:
        return sql(
            self.dsn,
            "SELECT openid, status, msgid, error, attempts FROM deliveries"
            " WHERE broadcast_id = $1 ORDER BY openid",
            bid,
        )

    def assert_each_sent_once(
        self, bid: int, failed: frozenset[str] = frozenset(), *, msgids: bool = True
    ) -> None:
        """Every recipient has exactly one delivery, `sent` (or `failed` if listed), and
        the fake accepted exactly one message for each sent one and none for the others.
        (`msgids`: template sends get WeChat's msgid; customer-service sends get none.)"""
        rows = self.deliveries(bid)
        assert [r["openid"] for r in rows] == self.openids  # one row each, none missing
        sent = [r for r in rows if r["status"] == "sent"]
        assert {r["openid"] for r in rows if r["status"] != "sent"} == failed
        if msgids:
            assert all(r["msgid"] for r in sent)
            assert len({r["msgid"] for r in sent}) == len(sent)  # WeChat's msgid, one each
        stats = self.stats()
        assert sum(stats["accepted"].values()) == len(sent)
        assert stats["recipients"] == len(sent)
        assert stats["repeat_recipients"] == 0, stats


def account_file(tmp: Path) -> Path:
    """`donorbot demo config`'s accounts with no quiet hours and no automatic reminders."""
    path = tmp / "donorbot.toml"
    result = CliRunner().invoke(main, ["demo", "config", "--path", str(path)])
    assert result.exit_code == 0, result.output
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^(\[jurisdictions\.\w+\])$", r'\1\nquiet_hours = ""', text)
    text = text.replace("enabled = true", "enabled = false")
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def world(pg_url: str, tmp_path: Path) -> Iterator[World]:
    prefix = f"donorbot-test:procs:{uuid.uuid4().hex[:8]}:"
    shared = redis.Redis.from_url(REDIS_URL)
    try:
        shared.ping()
    except redis.RedisError as exc:  # a loud failure, never a skip
        pytest.fail(f"Redis is required at {REDIS_URL} and is not reachable: {exc}")
    account = account_file(tmp_path)
    appid = tomllib.loads(account.read_text(encoding="utf-8"))["jurisdictions"][ZJJ]["wechat"][
        "appid"
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONORBOT_")}
    env.update(
        DONORBOT_CONFIG=str(account),
        DONORBOT_DATABASE_URL=pg_url,
        DONORBOT_REDIS_URL=REDIS_URL,
        DONORBOT_REDIS_PREFIX=prefix,
        DONORBOT_BROADCAST_RATE="0",
        DONORBOT_BROADCAST_LEASE_SECONDS=str(LEASE),
        DONORBOT_LOG_JSON="false",
        PYTHONUNBUFFERED="1",
    )
    w = World(tmp_path, pg_url.replace("postgresql+asyncpg://", "postgresql://"), env, appid)
    try:
        w.run("db", "upgrade")
        yield w
    finally:
        w.stop_all()
        keys = list(shared.scan_iter(match=prefix + "*"))
        if keys:
            shared.delete(*keys)
        shared.close()


# ---- the tests ----------------------------------------------------------------------------


def test_kill_9_a_worker_ten_times_and_every_recipient_gets_one_message(world: World) -> None:
    """kill -9 at random moments while it sends: nothing lost, nothing delivered twice."""
    n = 5000
    world.bind(n)
    world.start_fake()
    bid = world.create()
    rng = random.Random()
    # a shared rate limit keeps the broadcast going through all ten kills
    rate = {"DONORBOT_BROADCAST_RATE": "250"}
    leased_at_kill = []

    def sent_more(than: int) -> bool:
        return world.accepted() > than

    for i in range(10):
        worker = world.start_worker(f"worker{i}", **rate)
        wait_for(f"worker {i} to send", partial(sent_more, world.accepted()), 60, every=0.02)
        time.sleep(rng.uniform(0.0, 0.8))
        world.kill(worker)  # SIGKILL: no clean-up of any kind
        counts = world.counts(bid)
        assert counts.get("pending", 0) + counts.get("sending", 0) > 0, "finished too early"
        leased_at_kill.append(counts.get("sending", 0))
    final = world.start_worker("final", **rate)
    counts = world.wait_done(bid, timeout=90)
    assert counts == {"sent": n}
    assert final.poll() is None
    world.assert_each_sent_once(bid)
    stats = world.stats()
    print(
        f"\nkill -9 ×10: rows leased to the killed worker at each kill {leased_at_kill}; "
        f"resends WeChat dropped by client_msg_id: {stats['dropped_repeats']}; "
        f"recipients seen twice without being dropped: {stats['repeat_recipients']}"
    )


def test_two_workers_at_once_share_the_broadcast_and_send_nobody_twice(world: World) -> None:
    n = 3000
    world.bind(n)
    # which worker recorded each `sent`: the client port of its database connection
    execute(
        world.dsn,
        """
        CREATE TABLE sent_by (port integer);
        CREATE FUNCTION note_sender() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO sent_by VALUES (inet_client_port()); RETURN NEW; END $$;
        CREATE TRIGGER note_sender AFTER UPDATE ON deliveries FOR EACH ROW
        WHEN (NEW.status = 'sent' AND OLD.status <> 'sent') EXECUTE FUNCTION note_sender();
        """,
    )
    world.start_fake()
    workers = world.start_workers_ready("worker-a", "worker-b")
    bid = world.create()
    counts = world.wait_done(bid, timeout=90)
    assert counts == {"sent": n}
    world.assert_each_sent_once(bid)
    by_port = {int(r[0]): int(r[1]) for r in sql(
        world.dsn, "SELECT port, count(*) FROM sent_by GROUP BY port"
    )}  # fmt: skip
    split = []
    for w in workers:
        assert w.poll() is None, world.log(w)
        mine = {local for local, _ in tcp_sockets(w.pid)}
        split.append(sum(k for port, k in by_port.items() if port in mine))
    assert sum(split) == n, (split, by_port)
    assert all(share > 0 for share in split), split
    print(f"\ntwo workers: sent {split[0]} and {split[1]}; dropped repeats "
          f"{world.stats()['dropped_repeats']}")  # fmt: skip


def test_faults_end_with_the_right_statuses_and_one_token_refresh(world: World) -> None:
    """45011 then success, HTTP 503 for two seconds, 40001 once, 43004 for some users."""
    n = 1000
    world.bind(n)
    world.start_fake()
    unfollowed = frozenset(world.openids[7::100])  # 10 users
    world.fault(errcode=43004, openids=sorted(unfollowed))
    world.fault(errcode=45011, times=20)  # the first twenty sends
    world.fault(errcode=40001, times=1)  # then one "invalid token"
    bid = world.create()
    worker = world.start_worker(DONORBOT_BROADCAST_RATE="250")
    wait_for("200 sends", lambda: world.accepted() >= 200, timeout=60, every=0.05)
    world.fault(status=503, seconds=2)
    during = world.accepted()
    time.sleep(1.8)
    assert world.accepted() - during <= 32  # only what was in flight got through
    counts = world.wait_done(bid, timeout=90)
    assert counts == {"sent": n - len(unfollowed), "failed": len(unfollowed)}
    assert worker.poll() is None
    world.assert_each_sent_once(bid, failed=unfollowed)
    rows = world.deliveries(bid)
    for r in rows:
        if r["openid"] in unfollowed:
            assert r["error"] == "用户未关注或已取消关注（43004）", r
        else:
            assert r["error"] is None
    retried = sum(1 for r in rows if r["attempts"] > 1)
    assert retried >= 20 + 100, retried  # the 45011s and the 503s were retried
    stats = world.stats()
    # one token at start-up, one forced refresh after the 40001; nothing else
    assert (stats["token_requests"], stats["force_refreshes"]) == (2, 1), stats
    print(f"\nfaults: {retried} deliveries retried; {stats}")


def test_redis_restarted_mid_broadcast_workers_reconnect_and_finish(
    world: World, tmp_path: Path
) -> None:
    """A private redis-server (the shared one on 6379 is left alone), stopped for three
    seconds while two workers send, then started again empty."""
    server = shutil.which("redis-server")
    assert server, "redis-server is required for this test"
    port = free_port()
    own = redis.Redis(port=port)

    def up() -> bool:
        try:
            return bool(own.ping())
        except redis.RedisError:
            return False

    def start_redis_server() -> subprocess.Popen[bytes]:
        log = (tmp_path / f"redis-{time.monotonic_ns()}.log").open("wb")
        proc = subprocess.Popen(
            [server, "--port", str(port), "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--bind", "127.0.0.1"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        world.procs.append(proc)
        wait_for("redis-server", up, timeout=20)
        return proc

    n = 2000
    world.bind(n)
    redis_proc = start_redis_server()
    world.env["DONORBOT_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    world.start_fake()
    bid = world.create()
    rate = {"DONORBOT_BROADCAST_RATE": "400"}  # every send counts in Redis
    workers = [world.start_worker("worker-a", **rate), world.start_worker("worker-b", **rate)]
    wait_for("400 sends", lambda: world.accepted() >= 400, timeout=60, every=0.05)
    world.kill(redis_proc, signal.SIGTERM)
    time.sleep(0.5)  # what was past the rate limiter when Redis went away lands
    stalled = world.accepted()
    time.sleep(2.5)
    assert world.accepted() == stalled  # nothing is sent without the shared rate limit
    start_redis_server()
    counts = world.wait_done(bid, timeout=90)
    assert counts == {"sent": n}
    world.assert_each_sent_once(bid)
    for w in workers:
        assert w.poll() is None, world.log(w)
    logs = "".join(world.log(w) for w in workers)
    assert "storage unavailable" in logs  # the workers did see Redis go away
    own.close()


def test_a_batch_that_outlasts_its_lease_is_not_sent_again_by_an_idle_worker(
    world: World,
) -> None:
    """A live worker's rows must not be taken over while it is still sending them.

    One claim takes the whole broadcast (120 rows ≤ the batch of 200); at 20 sends/s the
    worker needs 6 s for it, longer than the 3 s lease. The second worker, idle, claims
    the same rows when the lease runs out and sends them too. Customer-service messages
    carry no client_msg_id, so WeChat delivers every such resend: users get it twice.
    (The same happens with the defaults, 200 rows at 50/s shared by every worker and a
    60 s lease, once more than 15 workers share the rate, or with a rate below 3.4/s.)
    """
    n = 120
    world.bind(n)
    world.start_fake()
    for openid in world.openids:  # each wrote to the account: a 48-hour window is open
        world.fake("/_fake/interactions", {"appid": world.appid, "openid": openid})
    workers = world.start_workers_ready("worker-a", "worker-b", DONORBOT_BROADCAST_RATE="20")
    bid = world.create("--channel", "custom", "--param", "content=明天上午献血车到单位")
    counts = world.wait_done(bid, timeout=90)
    stats = world.stats()
    print(f"\nbatch longer than the lease: {stats}")
    assert counts == {"sent": n}
    for w in workers:
        assert w.poll() is None, world.log(w)
    assert stats["repeat_recipients"] == 0, (
        f"{stats['repeat_recipients']} of {n} users got the message twice"
    )
    world.assert_each_sent_once(bid, msgids=False)
