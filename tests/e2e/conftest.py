"""Fixtures of the end-to-end console tests (tests/e2e/world.py says what they run)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.world import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    TIMEOUT_MS,
    USERNAME,
    ZJJ,
    Service,
    Watch,
    quiet_account_file,
    shot,
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("e2e")
    db_path = tmp / "donorbot.db"
    account = tmp / "donorbot.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONORBOT_")}
    env.update(
        DONORBOT_CONFIG=str(account),
        DONORBOT_DATABASE_URL=f"sqlite+aiosqlite:///{db_path}",
        DONORBOT_BROADCAST_RATE="0",
        DONORBOT_LOG_JSON="false",
        DONORBOT_REPORTS_DIR=str(tmp / "reports"),
        PYTHONUNBUFFERED="1",
    )
    svc = Service(tmp, env, db_path)
    svc.run_all(("demo", "config", "--path", str(account)), ("db", "upgrade"))
    quiet_account_file(account)
    password_file = tmp / "password"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    try:
        svc.launch()
        svc.run(
            "user", "create", "--jurisdiction", ZJJ, "--role", "office",
            "--username", USERNAME, "--password-file", str(password_file),
        )  # fmt: skip
        yield svc  # still starting: `page` waits for it once Chromium is up too
    finally:
        svc.stop()


# ---- the browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the end-to-end tests need Debian's chromium package. "
            "Run .ci/install-chromium (make test does), or "
            "`apt-get install --no-install-recommends chromium`."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module", autouse=True)
def _fresh_artifacts() -> None:
    """tests/artifacts/ shows this run only (a stale FAILED-*.png would mislead a reviewer)."""
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()


@pytest.fixture(scope="module")
def watch() -> Watch:
    return Watch()


@pytest.fixture(scope="module")
def page(service: Service, browser: Any, watch: Watch) -> Iterator[Any]:
    """One tab for the whole module (the tests follow one office user through the console)."""
    service.wait_ready()  # Chromium started while the server did
    context = browser.new_context(
        base_url=service.url,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        viewport={"width": 1280, "height": 900},
    )

    def guard(route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            watch.offsite.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.on("pageerror", lambda exc: watch.js_errors.append(f"{tab.url}: {exc}"))
    try:
        yield tab
    finally:
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def _shot_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """A failed test leaves tests/artifacts/FAILED-<test>.png: the page as it was."""
    yield
    if request.node.stash.get(_FAILED, False) and "page" in request.fixturenames:
        tab = request.getfixturevalue("page")
        try:
            shot(tab, f"FAILED-{request.node.name}")
        except Exception as exc:  # the page may be gone; the failure itself matters more
            print(f"no screenshot of the failure: {exc}")
