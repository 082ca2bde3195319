"""The office console end to end, in a real headless Chromium (issue 7, "Tests").

One office user of 张家界 goes through the console against `donorbot serve` and its fake
WeChat API, each step checked against what is independently observable — the SQLite file
read with the stdlib `sqlite3` module, the fake's record of the messages WeChat accepted,
the chat reply through the real webhook (`donorbot chat --url`):

1. logs in (a wrong password is refused on the page; the right one lands on the dashboard);
2. imports data/seed_plans/zhangjiajie-2018.csv through the upload form: preview, confirm;
3. sees the 2018 dashboard's numbers for 慈利县 equal the database's;
4. binds liaisons of two units by chat (`donorbot invite`, then 「绑定 CODE」), sees them on
   the liaisons page, composes a broadcast to one unit's liaisons (live count and preview),
   confirms, and watches the progress page reach 100% without reloading; the fake recorded
   the message for that liaison and nothing for the other;
5. edits a reply template (a broken edit is refused first) and sees the chat reply change;
6. finds the import, the broadcast and the template edit on the audit page, at local times.

Throughout, no page may load anything from off this machine or throw a script error.

The tests run in file order and share one service and one browser tab; each later flow
first makes sure the earlier ones it builds on have run (`Service.once`), so one test
can also be run alone, and a step that failed fails the later tests at once.
Screenshots: tests/artifacts/<name>.png (and FAILED-<test>.png of a failure).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.fake_wechat import TEMPLATE_PATH
from tests.e2e.world import PASSWORD, TIMEOUT_MS, USERNAME, ZJJ, Service, Watch, shot

REPO = Path(__file__).resolve().parents[2]
SEED_PLAN = REPO / "data" / "seed_plans" / "zhangjiajie-2018.csv"
SEED_CHECKS = SEED_PLAN.with_suffix(".checks.json")
BASE = f"/console/j/{ZJJ}"
SHANGHAI = ZoneInfo("Asia/Shanghai")  # 张家界's timezone in the account file
UNIT = "慈利县"
OPENID = "o_e2e"  # the liaison of 慈利县
OTHER = ("永定区", "o_e2e_yongding")  # a liaison the broadcast must not reach
TEMPLATE_ID = "TPL_E2E_NOTICE"
TEMPLATE = "help"  # the reply template edited in the console
TEMPLATE_AUDIT = "template.save"  # its audit action
MARKER = "【E2E】献血办工作时间：周一至周五 8:30-17:30"  # the line the edit adds
HELP_ASKER = "o_e2e_help"  # asks 「帮助」 before and after the edit

# 2018 donations of 慈利县 (and one of 永定区): loaded with `donorbot donations import`.
# Donor E2E-D-03 gives platelets twice in March, so March has 4 donations (人次) but
# 3 donors (人) — the dashboard must tell the two measures apart.
DONATIONS = [
    ("E2E-0001", "2018-01-09", "E2E-D-01", "全血", "400", "", UNIT),
    ("E2E-0002", "2018-01-20", "E2E-D-05", "全血", "200", "", UNIT),
    ("E2E-0003", "2018-03-05", "E2E-D-02", "全血", "300", "", UNIT),
    ("E2E-0004", "2018-03-05", "E2E-D-03", "机采血小板", "", "1", UNIT),
    ("E2E-0005", "2018-03-20", "E2E-D-03", "机采血小板", "", "2", UNIT),
    ("E2E-0006", "2018-03-28", "E2E-D-04", "全血", "400", "", UNIT),
    ("E2E-0007", "2018-04-02", "E2E-D-06", "全血", "400", "", UNIT),
    ("E2E-0008", "2018-05-11", "E2E-D-07", "全血", "400", "", "永定区"),
]


# ---- helpers --------------------------------------------------------------------------


def _open(tab: Any, path: str) -> None:
    """Go to a console page, which must answer 200 (after any redirect)."""
    response = tab.goto(path)
    assert response is not None and response.status == 200, (
        f"GET {path} answered {response.status if response else None} at {tab.url}:\n"
        f"{tab.locator('body').inner_text()[:500]}"
    )


def _login(tab: Any, username: str, password: str) -> None:
    _open(tab, "/console/login")
    tab.fill("input[name=username]", username)
    tab.fill("input[name=password]", password)
    tab.click("form[action='/console/login'] button[type=submit]")
    tab.wait_for_load_state()


def _ensure_logged_in(tab: Any, service: Service) -> None:
    def log_in() -> None:
        _login(tab, USERNAME, PASSWORD)
        assert tab.url.endswith(f"{BASE}/"), tab.url

    service.once("login", log_in)


def _plan_lines(service: Service) -> int:
    (count,) = service.sql(
        "SELECT count(*) FROM plan_lines l JOIN plans p ON p.id = l.plan_id"
        " WHERE p.jurisdiction = ? AND p.year = 2018 AND NOT p.is_demo",
        ZJJ,
    )[0]
    return int(count)


def _seed_rows() -> int:
    return len(SEED_PLAN.read_text(encoding="utf-8").splitlines()) - 1


def _import_plan(tab: Any, service: Service) -> None:
    """Upload the seed plan (and its checks file), preview it — a dry run, nothing written —
    then confirm it: everything written."""
    _ensure_logged_in(tab, service)
    _open(tab, f"{BASE}/imports")
    shot(tab, "03-imports-form")
    form = tab.locator("form[action$='/imports/preview']")
    form.locator("input[name=kind][value=plan]").check()
    form.locator("input[type=file][name=file]").set_input_files(str(SEED_PLAN))
    form.locator("input[type=file][name=checks]").set_input_files(str(SEED_CHECKS))
    form.locator("button[type=submit]").click()
    tab.wait_for_load_state()
    assert tab.url.endswith(f"{BASE}/imports/preview"), tab.url
    main = tab.locator("main")
    assert "试导入预览" in main.locator("h1").inner_text()
    assert SEED_PLAN.name in main.inner_text()
    assert tab.locator("[role=alert]").count() == 0, tab.locator("[role=alert]").all_inner_texts()
    assert int(main.locator("strong.rows").inner_text()) == _seed_rows()
    plans = main.locator("table#plans tbody tr")
    assert plans.count() == 2  # 附件1 in 人次 and 附件2 in 人, both new
    assert all("新计划" in row for row in plans.all_inner_texts())
    assert SEED_CHECKS.name in main.inner_text()  # reconciled against the checks file
    assert main.locator("table#checks tbody tr").count() > 0
    shot(tab, "04-imports-preview")
    assert _plan_lines(service) == 0  # a dry run: the whole import was rolled back
    main.locator("form[action$='/imports/confirm'] button[type=submit]").click()
    tab.wait_for_load_state()
    assert tab.url.endswith(f"{BASE}/imports/confirm"), tab.url
    assert "导入结果" in tab.locator("main h1").inner_text()
    shot(tab, "05-imports-done")
    assert _plan_lines(service) == _seed_rows()


def _ensure_plan(tab: Any, service: Service) -> None:
    service.once("plan", lambda: _import_plan(tab, service))


def _load_donations(service: Service) -> None:
    lines = ["记录号,献血日期,献血者编号,姓名,血型,献血类型,献血量,治疗量,单位,辖区"]
    lines += [
        f"{rid},{day},{donor},测试,A,{kind},{ml},{tu},{unit},{ZJJ}"
        for rid, day, donor, kind, ml, tu, unit in DONATIONS
    ]
    path = service.tmp / "donations-2018.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = service.run("donations", "import", str(path)).stdout
    assert f"新增献血记录 {len(DONATIONS)} 条" in out, out


def _months(bits: int) -> list[int]:
    return [m for m in range(1, 13) if bits & (1 << m)]


def _expected_lines(service: Service, unit: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Straight from the database: the 2018 plan lines of `unit` with their targets and done,
    keyed by (measure, the period's sort key: first month × 100 + number of months).

    done counts the donations credited to the unit in the line's months (a past year, so
    whole months): 人次 = donations, 人 = distinct donors. `unit` has no sub-units in the
    seed plan, so nothing rolls up into it.
    """
    (unit_id,) = service.sql("SELECT id FROM units WHERE jurisdiction = ? AND name = ?", ZJJ, unit)[
        0
    ]
    assert not service.sql("SELECT id FROM units WHERE parent_id = ?", unit_id)
    lines = service.sql(
        "SELECT p.measure, l.months, l.target FROM plan_lines l JOIN plans p ON p.id = l.plan_id"
        " WHERE l.unit_id = ? AND p.year = 2018 AND NOT p.is_demo",
        unit_id,
    )
    found = {}
    for measure, bits, target in lines:
        months = _months(bits)
        marks = ",".join("?" * len(months))
        counted = "count(*)" if measure == "人次" else "count(DISTINCT donor_id)"
        (done,) = service.sql(
            f"SELECT {counted} FROM donations WHERE unit_id = ?"
            f" AND substr(donated_at, 1, 7) IN ({marks})",
            unit_id,
            *(f"2018-{m:02d}" for m in months),
        )[0]
        key = (measure, str(months[0] * 100 + len(months)))
        assert key not in found
        found[key] = {"months": months, "target": int(target), "done": int(done)}
    return found


def _cells(row: Any) -> list[str]:
    return [c.strip() for c in row.locator("td").all_inner_texts()]


def _number(text: str) -> str:
    found = re.search(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    assert found, text
    return found.group(0)


def _percent(done: int, target: int) -> str:
    tenths = done * 1000 // target  # rounded down to 0.1, as docs/progress.md says
    return f"{tenths // 10}" if tenths % 10 == 0 else f"{tenths // 10}.{tenths % 10}"


# ---- 1. logging in ----------------------------------------------------------------------


def test_a_wrong_password_is_refused_and_the_right_one_opens_the_dashboard(
    page: Any, service: Service
) -> None:
    _open(page, "/console/")
    assert page.url.endswith("/console/login"), page.url  # not logged in: the login page
    shot(page, "01-login")

    _login(page, USERNAME, "not the password at all")
    assert page.url.endswith("/console/login")
    alert = page.locator("[role=alert]")
    assert "用户名或密码不正确" in alert.inner_text()
    assert page.locator("input[name=username]").input_value() == USERNAME
    shot(page, "01-login-wrong-password")

    _login(page, USERNAME, PASSWORD)
    assert page.url.endswith(f"{BASE}/"), page.url
    assert USERNAME in page.locator("header").inner_text()
    cookie = next(c for c in page.context.cookies() if c["name"] == "donorbot_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    shot(page, "02-dashboard-after-login")
    service.done.add("login")
    actions = [a for (a,) in service.sql("SELECT action FROM audit_log ORDER BY id")]
    assert actions.count("console.login_failed") == 1 and "console.login" in actions


# ---- 2. importing the seed plan through the upload form ---------------------------------


def test_the_seed_plan_is_previewed_then_imported_through_the_upload_form(
    page: Any, service: Service
) -> None:
    _ensure_plan(page, service)
    (source,) = service.sql(
        "SELECT DISTINCT source FROM plans WHERE jurisdiction = ? AND year = 2018", ZJJ
    )[0]
    assert source  # the file's name is recorded with the plan


# ---- 3. the dashboard equals the database ----------------------------------------------


def test_the_2018_dashboard_shows_the_database_numbers_for_a_unit(
    page: Any, service: Service
) -> None:
    _ensure_plan(page, service)
    service.once("donations", lambda: _load_donations(service))
    expected = _expected_lines(service, UNIT)
    # 附件1: 2800 人次 in 1、3、8、10、12月; 附件2: 200+600+700+700+600 人, one line a month
    # (the first under 「慈利县(卫生计生系统)」, another unit)
    assert expected[("人次", "105")] == {"months": [1, 3, 8, 10, 12], "target": 2800, "done": 6}
    assert expected[("人", "301")] == {"months": [3], "target": 600, "done": 3}
    assert len(expected) == 5

    _open(page, f"{BASE}/?year=2018&month=3")
    assert "2018年3月" in page.locator("h1").first.inner_text()
    shot(page, "06-dashboard-2018-03", full_page=False)  # 220 rows: the first screenful

    seen: dict[str, set[tuple[str, str]]] = {"month-table": set(), "year-table": set()}
    for table, keys in seen.items():
        rows = page.locator(f"table#{table} tbody tr[data-unit='{UNIT}']")
        for i in range(rows.count()):
            row = rows.nth(i)
            cells = _cells(row)
            target = int(_number(cells[3]))
            measure = cells[3].removeprefix(str(target)).strip()
            line = expected[(measure, str(row.get_attribute("data-s-period")))]
            done = line["done"]
            assert (target, _number(cells[4])) == (line["target"], str(done)), (table, cells)
            assert _number(cells[5]) == str(max(target - done, 0)), (table, cells)
            assert _number(cells[6]) == _percent(done, target), (table, cells)
            keys.add((measure, str(row.get_attribute("data-s-period"))))
    # March's table has the monthly schedule (附件2) running in March; the year's, every line
    assert seen["month-table"] == {("人", "301")}
    assert seen["year-table"] == set(expected)

    # the unit filter works in place (static/dashboard.js), without going back to the server
    page.evaluate("() => { window.__e2eSamePage = true; }")
    page.fill("#dash-filter input[name=q]", "慈利")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#year-table tbody tr')]"
        ".every(r => r.hidden === !r.dataset.unit.includes('慈利'))"
    )
    assert page.evaluate("() => window.__e2eSamePage === true"), "filtering reloaded the page"
    shown = page.locator("table#year-table tbody tr:visible")
    names = {shown.nth(i).get_attribute("data-unit") for i in range(shown.count())}
    assert names == {UNIT, "慈利县(卫生计生系统)"}, names
    shot(page, "07-dashboard-2018-03-filtered", full_page=True)


# ---- 4. a broadcast to one unit's liaisons reaches 100% -----------------------------------


def _bind_liaisons(service: Service) -> None:
    """`donorbot invite` for 慈利县 and 永定区, then each liaison sends 「绑定 CODE」 through
    the running server's webhook (`donorbot chat --url`)."""
    people = [(UNIT, OPENID), OTHER]
    invited = service.run_all(*(("invite", "-j", ZJJ, "--unit", unit) for unit, _ in people))
    codes = []
    for done in invited:
        found = re.search(r"邀请码（只显示这一次）：(\S+)", done.stdout)
        assert found, done.stdout
        codes.append(found.group(1))
    replies = service.run_all(
        *(
            ("chat", "-j", ZJJ, "--openid", openid, "--url", service.url, "--say", f"绑定 {code}")
            for (_, openid), code in zip(people, codes, strict=True)
        )
    )
    for (unit, openid), done in zip(people, replies, strict=True):
        bound = service.sql(
            "SELECT u.name FROM bindings b JOIN units u ON u.id = b.unit_id"
            " WHERE b.jurisdiction = ? AND b.openid = ? AND b.role = 'liaison'",
            ZJJ,
            openid,
        )
        assert bound == [(unit,)], (openid, done.stdout)


def _broadcast(page: Any, service: Service) -> None:
    """Compose (live count and preview), confirm (a dry run), send; watch it reach 100%."""
    _ensure_plan(page, service)
    service.once("bound", lambda: _bind_liaisons(service))
    _open(page, f"{BASE}/broadcasts/new")
    form = page.locator("form#compose")
    form.locator("input[name=audience][value=liaisons]").check()
    form.locator("input[name=l_unit]").fill(UNIT)
    form.locator("select[name=channel]").select_option("template")
    form.locator("input[name=template_id]").fill(TEMPLATE_ID)
    form.locator("textarea[name=fields]").fill(
        "thing1={{ unit }}\nthing2=请组织本单位职工参加无偿献血"
    )
    # the live count and the live preview of the exact text (static/broadcasts.js)
    page.wait_for_function(
        "() => /[：:]\\s*1\\s*人/.test(document.getElementById('live-count').textContent)",
        timeout=TIMEOUT_MS,
    )
    page.wait_for_function(
        f"() => document.getElementById('live-preview').textContent.includes('{UNIT}')",
        timeout=TIMEOUT_MS,
    )
    shot(page, "09-broadcast-compose")

    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert "确认群发" in page.locator("main h1").inner_text()
    assert page.locator("#confirm-total").inner_text().strip() == "1"
    assert UNIT in page.locator("#confirm-sample").inner_text()
    assert service.sql("SELECT count(*) FROM broadcasts") == [(0,)]  # a dry run so far
    shot(page, "10-broadcast-confirm")

    # hold WeChat's answer to the first send for 3 s, so the progress page opens before the
    # worker is done and has to get to 100% by itself
    service.fake("/_fake/faults", {"path": TEMPLATE_PATH, "latency": 3, "times": 1})
    page.locator("form.bc-actions button[type=submit]").click()
    page.wait_for_load_state()
    found = re.search(rf"{BASE}/broadcasts/(\d+)$", page.url)
    assert found, page.url
    broadcast_id = int(found.group(1))
    page.evaluate("() => { window.__e2eSamePage = true; }")  # gone if the page reloads
    first = int(page.locator("#percent").inner_text())
    assert first < 100, "the broadcast finished before its progress page opened"
    shot(page, "11-broadcast-progress-started")

    page.wait_for_function(
        "() => document.getElementById('percent').textContent.trim() === '100'", timeout=30_000
    )
    assert page.evaluate("() => window.__e2eSamePage === true"), "the progress page reloaded"
    # the bar's 「sent」 segment grows (a CSS transition) to the whole bar
    page.wait_for_function(
        "() => { const bar = document.querySelector('[role=progressbar]');"
        " const sent = bar.querySelector('[data-seg=sent]');"
        " return sent.getBoundingClientRect().width >= bar.clientWidth - 1; }"
    )
    assert page.locator("td[data-count=sent]").inner_text().strip() == "1"
    assert page.locator("td[data-count=failed]").inner_text().strip() == "0"
    shot(page, "12-broadcast-progress-done")

    assert service.sql(
        "SELECT openid, status FROM deliveries WHERE broadcast_id = ?", broadcast_id
    ) == [(OPENID, "sent")]
    got = service.fake(f"/_fake/messages?touser={OPENID}&msgtype=template")["messages"]
    assert len(got) == 1, got
    assert got[0]["payload"]["template_id"] == TEMPLATE_ID
    assert UNIT in got[0]["content"] and "请组织本单位职工参加无偿献血" in got[0]["content"]
    assert service.fake(f"/_fake/messages?touser={OTHER[1]}&msgtype=template")["messages"] == []


def test_the_liaisons_page_shows_which_units_have_a_bound_liaison(
    page: Any, service: Service
) -> None:
    _ensure_plan(page, service)
    service.once("bound", lambda: _bind_liaisons(service))
    _open(page, f"{BASE}/liaisons")
    assert page.url.endswith(f"{BASE}/liaisons"), page.url
    shot(page, "08-liaisons")
    _open(page, f"{BASE}/liaisons?show=bound")
    rows = page.locator("main table tbody tr")
    for unit in (UNIT, OTHER[0]):
        assert rows.filter(has_text=unit).count() >= 1, f"{unit} is not listed as bound"
    assert rows.filter(has_text="桑植县").count() == 0  # a unit of the plan nobody is bound to
    bound = {name for (name,) in service.sql(
        "SELECT u.name FROM bindings b JOIN units u ON u.id = b.unit_id WHERE b.role = 'liaison'"
    )}  # fmt: skip
    assert bound == {UNIT, OTHER[0]}
    shot(page, "08-liaisons-bound")


def _ensure_broadcast(tab: Any, service: Service) -> None:
    service.once("broadcast", lambda: _broadcast(tab, service))


def test_a_broadcast_to_a_units_liaisons_reaches_100_percent_without_reloading(
    page: Any, service: Service
) -> None:
    _ensure_broadcast(page, service)


# ---- 5. editing a reply template changes the chat reply ---------------------------------


def _edit_template(page: Any, service: Service) -> None:
    """Ask 「帮助」 in chat (the editor previews against that real reply), refuse a broken
    edit, save a good one, and ask again: the reply has changed."""
    _ensure_logged_in(page, service)
    before = service.chat("帮助", openid=HELP_ASKER)
    assert "献血办的小助手" in before and MARKER not in before, before

    _open(page, f"{BASE}/templates")
    row = page.locator("table#templates tbody tr", has=page.locator(f"a:text-is('{TEMPLATE}')"))
    assert "有" in _cells(row)[4]  # the real reply just sent is there to preview against
    shot(page, "13-templates")
    row.locator("a").click()
    page.wait_for_load_state()
    assert page.url.endswith(f"{BASE}/templates/{TEMPLATE}"), page.url
    source = page.locator("textarea#source")
    shipped = source.input_value()
    assert "献血办的小助手" in shipped

    # a value the code does not give this template: refused with the reason, nothing saved
    source.fill(shipped + "{{ no_such_value }}\n")
    page.locator("#editor button[value=save]").click()
    page.wait_for_load_state()
    assert "no_such_value" in page.locator("#error").inner_text()
    assert service.sql("SELECT count(*) FROM reply_template_versions") == [(0,)]
    shot(page, "14-template-refused")

    # the live preview renders the draft against the real reply's data (static/templates.js)
    edited = f"{MARKER}\n{shipped.lstrip()}"
    source.fill(edited)
    page.wait_for_function(
        "([marker, name]) => { const t = document.getElementById('preview').textContent;"
        " return t.includes(marker) && t.includes(name); }",
        arg=[MARKER, "张家界市献血办的小助手"],
    )
    page.fill("#editor input[name=note]", "e2e：加上办公时间")
    shot(page, "15-template-edit-preview")
    page.locator("#editor button[value=save]").click()
    page.wait_for_load_state()
    assert page.url.endswith(f"{BASE}/templates/{TEMPLATE}?saved=1"), page.url
    assert page.locator("#saved").is_visible()
    assert page.locator("table#history tbody tr").count() == 2  # the shipped text is version 0
    shot(page, "16-template-saved")

    after = service.chat("帮助", openid=HELP_ASKER)
    assert after.startswith(MARKER), after
    assert after.replace(MARKER, "", 1).strip() == before.strip()  # and nothing else changed


def test_an_edited_reply_template_changes_the_chat_reply(page: Any, service: Service) -> None:
    _ensure_template_edit(page, service)


def _ensure_template_edit(tab: Any, service: Service) -> None:
    service.once("template", lambda: _edit_template(tab, service))


# ---- 6. the audit page lists what the office did ----------------------------------------


def test_the_audit_page_lists_the_import_the_broadcast_and_the_template_edit(
    page: Any, service: Service
) -> None:
    _ensure_plan(page, service)
    _ensure_broadcast(page, service)
    _ensure_template_edit(page, service)
    _open(page, f"{BASE}/audit")
    rows = page.locator("table#audit tbody tr")
    entries = [_cells(rows.nth(i)) for i in range(rows.count())]
    mine = {(e[2], e[3]) for e in entries if e[1] == f"console:{USERNAME}"}
    actions = {action for action, _ in mine}
    assert {"plan.import", "broadcast.create", TEMPLATE_AUDIT} <= actions, entries
    assert any(a == "plan.import" and SEED_PLAN.name in d for a, d in mine), mine
    assert any(a == TEMPLATE_AUDIT and TEMPLATE in d for a, d in mine), mine
    shot(page, "17-audit")


def test_the_audit_page_shows_when_in_the_offices_local_time(page: Any, service: Service) -> None:
    """Like every other time in the console (the broadcasts' 「创建」, the templates' history):
    张家界's clock, Asia/Shanghai, whatever the database hands back (SQLite: naive UTC)."""
    _ensure_plan(page, service)
    _open(page, f"{BASE}/audit")
    newest = _cells(page.locator("table#audit tbody tr").first)[0]
    shown = datetime.strptime(newest, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
    off = abs((datetime.now(SHANGHAI) - shown).total_seconds())
    assert off < 600, f"the newest entry is shown at {newest}, {off / 3600:.1f} h from now"


# ---- and throughout: nothing off this machine, no JavaScript errors ----------------------


def test_no_page_loaded_anything_from_off_this_machine_or_threw_a_script_error(
    page: Any, watch: Watch
) -> None:
    assert watch.offsite == [], "the console must load nothing from a CDN or elsewhere"
    assert watch.js_errors == []
