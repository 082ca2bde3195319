"""The console's broadcast pages: compose (live count and preview), confirm, progress, cancel,
retry — handler level, against the real service, the in-process worker and the fake WeChat.

The world is tests/test_broadcasts.py's: 张家界's 2018 plan, three units with a bound liaison
each, the clock in March 2018.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import SESSIONS, broadcast_worker
from bot.console.page_broadcasts import KEY
from bot.fake_wechat.state import Fault
from bot.imports.plans import import_plan_file
from models.broadcasts import Broadcast, Delivery
from models.people import AuditEntry
from models.plans import Unit
from models.units import normalize_unit_name
from models.users import Binding
from tests.console_world import Staff, add_users, login
from tests.test_liaison_chat import bind

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seed_plans"
ZJJ = "zhangjiajie"
UNITS = ("慈利县", "市公安消防支队", "市人民医院(含市妇幼保健院)")
BASE = f"/console/j/{ZJJ}/broadcasts"
EVIL_UNIT = "<img src=x onerror=alert(1)>消防队"
EVIL_FIELD = "<script>alert(2)</script>"
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
KEY_FIELD = re.compile(r'name="key" value="([^"]+)"')


@pytest.fixture
async def world(make_bot: Any) -> Any:
    bot = await make_bot(broadcast_rate=0)
    await add_users(bot)
    await import_plan_file(
        bot.app[SESSIONS], bot.settings, SEEDS / "zhangjiajie-2018.csv", actor="t"
    )
    bot.clock.set(datetime(2018, 3, 5, 4, 0, tzinfo=UTC))  # noon in Beijing
    for i, unit in enumerate(UNITS):
        await bind(bot, ZJJ, unit, f"o_liaison_{i}")
    bot.fake.messages.clear()  # binding replies are not broadcasts
    return bot


@pytest.fixture
async def office(world: Any) -> Staff:
    return await login(world.client, "zjj_office")


def fields(**kw: str) -> dict[str, str]:
    out = {
        "audience": "liaisons",
        "channel": "template",
        "template_id": "TPL-drive",
        "fields": "thing1={{ unit }}献血提醒\ntime2={{ month }}",
        "send_at": "",
    }
    out.update(kw)
    return out


async def fresh_key(staff: Staff) -> str:
    status, page = await staff.get(f"{BASE}/new")
    assert status == 200
    found = KEY_FIELD.search(page)
    assert found and KEY.fullmatch(found.group(1))
    return found.group(1)


def hidden_fields(page: str) -> dict[str, str]:
    """The confirm page's form, as the browser would post it back."""
    form = page.split(f'action="{BASE}"', 1)[1].split("</form>", 1)[0]
    return {name: html.unescape(value) for name, value in HIDDEN.findall(form)}


async def confirm_page(staff: Staff, **kw: str) -> tuple[int, str]:
    return await staff.post(f"{BASE}/new", {**fields(**kw), "key": await fresh_key(staff)})


async def create(staff: Staff, **kw: str) -> int:
    """Compose → confirm → create, as a user without JavaScript would; the broadcast's id."""
    status, page = await confirm_page(staff, **kw)
    assert status == 200, page
    resp = await staff.client.post(BASE, data=hidden_fields(page), allow_redirects=False)
    assert resp.status == 303, await resp.text()
    return int(resp.headers["Location"].rsplit("/", 1)[1])


async def drain(bot: Any, rounds: int = 20) -> None:
    worker, _ = broadcast_worker(bot.app)
    for _ in range(rounds):
        if await worker.run_once() == 0:
            break


async def progress_of(staff: Staff, broadcast_id: int) -> dict[str, Any]:
    resp = await staff.client.get(f"{BASE}/{broadcast_id}/progress.json")
    assert resp.status == 200 and resp.content_type == "application/json"
    data: dict[str, Any] = await resp.json()
    return data


async def rows(bot: Any, model: Any) -> int:
    async with bot.app[SESSIONS]() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def audit_of(bot: Any, action: str) -> list[AuditEntry]:
    async with bot.app[SESSIONS]() as s:
        return list(await s.scalars(select(AuditEntry).where(AuditEntry.action == action)))


# ---- the live count and preview ------------------------------------------------------------


async def test_the_audience_count_is_the_number_of_bound_liaisons(
    world: Any, office: Staff
) -> None:
    async with world.app[SESSIONS]() as s:
        bound = await s.scalar(
            select(func.count()).where(Binding.jurisdiction == ZJJ, Binding.role == "liaison")
        )
    resp = await world.client.get(f"{BASE}/audience", params={"audience": "liaisons"})
    assert resp.status == 200 and resp.content_type == "application/json"
    data = await resp.json()
    assert data["count"] == bound == 3
    assert len(data["sample"]) == 3 and data["sample"][0]["params"]["month"] == "3月"
    one = await world.client.get(
        f"{BASE}/audience", params={"audience": "liaisons", "l_unit": "慈利县"}
    )
    assert (await one.json())["count"] == 1
    # the other kind's filters are not this kind's: ignored, not an error
    office_kind = await world.client.get(
        f"{BASE}/audience", params={"audience": "office", "l_month": "3"}
    )
    assert (await office_kind.json())["count"] == 0


BAD_AUDIENCES = [
    ({"audience": "liaisons", "l_month": "13"}, "13"),
    ({"audience": "liaisons", "l_month": "三月"}, "1～12"),
    ({"audience": "donors", "d_blood_type": "C"}, "血型"),
    ({"audience": "liaisons", "l_unit": "没有这个单位"}, "没有这个单位"),
    ({"audience": "everyone"}, "未知的受众"),
]


async def test_a_bad_audience_is_a_json_error(world: Any, office: Staff) -> None:
    for query, words in BAD_AUDIENCES:
        resp = await world.client.get(f"{BASE}/audience", params=query)
        assert resp.status == 400 and resp.content_type == "application/json", query
        assert words in (await resp.json())["error"], query


async def test_the_preview_is_what_the_first_recipient_sees(world: Any, office: Staff) -> None:
    async with world.app[SESSIONS]() as s:
        names = await s.scalars(
            select(Unit.name)
            .join(Binding, Binding.unit_id == Unit.id)
            .where(Binding.jurisdiction == ZJJ, Binding.role == "liaison")
        )
        first_unit = min(names)  # recipients are ordered by unit name, by code point
    body = fields(
        fields=f"first=您好\nthing1={{{{ unit }}}}献血提醒\nthing2={'长' * 30}\nremark=谢谢"
    )
    resp = await world.client.post(
        f"{BASE}/preview", data=body, headers={"X-CSRF-Token": office.csrf}
    )
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["shown"] == {"thing1": f"{first_unit}献血提醒", "thing2": "长" * 20 + "…"}
    assert data["hidden"] == ["first", "remark"]  # WeChat no longer shows them
    assert data["recipient"]["unit"] == first_unit and data["count"] == 3
    custom = await world.client.post(
        f"{BASE}/preview",
        json=fields(channel="custom", fields="content={{ unit }}：\n本月请安排献血"),
        headers={"X-CSRF-Token": office.csrf},
    )
    assert (await custom.json())["shown"] == {"content": f"{first_unit}：\n本月请安排献血"}


async def test_the_preview_needs_the_csrf_token(world: Any, office: Staff) -> None:
    no_header = await world.client.post(f"{BASE}/preview", data=fields())
    assert no_header.status == 403 and "安全令牌" in await no_header.text()
    forged = await world.client.post(
        f"{BASE}/preview", json=fields(), headers={"X-CSRF-Token": "x" * 43}
    )
    assert forged.status == 403


async def test_the_preview_leaves_out_opted_out_users_unless_critical(
    world: Any, office: Staff
) -> None:
    async with world.app[SESSIONS]() as s:
        rows_ = await s.execute(
            select(Unit.name, Binding.openid)
            .join(Binding, Binding.unit_id == Unit.id)
            .where(Binding.jurisdiction == ZJJ)
        )
        first_unit, first_openid = min(rows_.all())
    await world.say(ZJJ, "退订", openid=first_openid)
    normal = await world.client.post(
        f"{BASE}/preview", data=fields(), headers={"X-CSRF-Token": office.csrf}
    )
    assert (await normal.json())["recipient"]["unit"] != first_unit
    critical = await world.client.post(
        f"{BASE}/preview", data=fields(critical="1"), headers={"X-CSRF-Token": office.csrf}
    )
    assert (await critical.json())["recipient"]["unit"] == first_unit


# ---- compose → confirm → create ------------------------------------------------------------


async def test_compose_confirm_and_a_double_submit_creates_one_broadcast(
    world: Any, office: Staff
) -> None:
    status, page = await confirm_page(office)
    assert status == 200 and "确认群发" in page
    assert '<strong id="confirm-total">3</strong>' in page and "慈利县献血提醒" in page
    assert await rows(world, Broadcast) == 0  # the confirm page is a dry run
    posted = hidden_fields(page)
    assert KEY.fullmatch(posted["key"]) and posted["_csrf"] == office.csrf
    first = await world.client.post(BASE, data=posted, allow_redirects=False)
    again = await world.client.post(BASE, data=posted, allow_redirects=False)
    assert first.status == again.status == 303
    assert first.headers["Location"] == again.headers["Location"]
    assert await rows(world, Broadcast) == 1 and await rows(world, Delivery) == 3
    made = await audit_of(world, "broadcast.create")
    assert [e.actor for e in made] == ["console:zjj_office"]
    status, listing = await office.get(BASE)
    # the app's embedded worker may already have sent some: 0/3 … 3/3
    assert status == 200 and first.headers["Location"] in listing
    assert re.search(r"\b[0-3]/3\b", listing), "the list shows sent/total"


async def test_coming_back_to_a_sent_form_warns_and_makes_a_new_key(
    world: Any, office: Staff
) -> None:
    status, page = await confirm_page(office)
    posted = hidden_fields(page)
    await world.client.post(BASE, data=posted, allow_redirects=False)
    status, page = await office.post(f"{BASE}/new", posted)  # the same form, again
    assert status == 200 and "已经创建过" in page
    assert hidden_fields(page)["key"] != posted["key"]


async def test_a_create_without_the_forms_key_is_refused(world: Any, office: Staff) -> None:
    status, page = await office.post(BASE, fields())
    assert status == 400 and "提交编号" in page
    assert await rows(world, Broadcast) == 0


async def test_progress_reaches_all_sent_and_each_liaison_got_it_once(
    world: Any, office: Staff
) -> None:
    broadcast_id = await create(office)
    status, page = await office.get(f"{BASE}/{broadcast_id}")
    assert status == 200 and f"{BASE}/{broadcast_id}/progress.json" in page
    assert "/console/static/broadcasts.js" in page
    await drain(world)
    data = await progress_of(office, broadcast_id)
    assert data["done"] and data["percent"] == 100 and data["state"] == "已完成"
    assert data["counts"] == {"pending": 0, "sending": 0, "sent": 3, "failed": 0, "skipped": 0}
    got = Counter(m["touser"] for m in world.fake.messages)
    assert got == {"o_liaison_0": 1, "o_liaison_1": 1, "o_liaison_2": 1}
    values = {m["payload"]["data"]["thing1"]["value"] for m in world.fake.messages}
    assert values == {f"{u}献血提醒" for u in UNITS}


async def test_cancel_and_retry_work_and_are_audited(world: Any, office: Staff) -> None:
    later = await create(office, send_at="2018-03-06T09:00")  # tomorrow, Beijing time
    assert (await progress_of(office, later))["state"] == "定时待发"
    resp = await world.client.post(
        f"{BASE}/{later}/cancel", data={"_csrf": office.csrf}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"].endswith("did=cancel&n=3")
    status, page = await office.get(resp.headers["Location"])
    assert status == 200 and "3 条尚未发送的消息不再发送" in page
    data = await progress_of(office, later)
    assert data["status"] == "cancelled" and data["counts"]["skipped"] == 3 and data["done"]
    status, page = await office.post(f"{BASE}/{later}/cancel")
    assert status == 400 and "已经取消" in page
    status, page = await office.post(f"{BASE}/{later}/retry")
    assert status == 400 and "不能重试" in page
    assert [e.actor for e in await audit_of(world, "broadcast.cancel")] == ["console:zjj_office"]

    world.fake.add_fault("/cgi-bin/message/template/send", Fault(errcode=47003, times=3))
    bad = await create(office)
    await drain(world)
    data = await progress_of(office, bad)
    assert data["counts"]["failed"] == 3 and data["errors"][0]["count"] == 3
    status, page = await office.get(f"{BASE}/{bad}")
    assert html.escape(data["errors"][0]["reason"], quote=False) in page
    status, _ = await office.post(f"{BASE}/{bad}/retry")
    assert status == 303
    await drain(world)
    assert (await progress_of(office, bad))["counts"]["sent"] == 3
    retried = await audit_of(world, "broadcast.retry_failed")
    assert [(e.actor, e.detail["queued"]) for e in retried] == [("console:zjj_office", 3)]


# ---- bad input ---------------------------------------------------------------------------


BAD_INPUT = [
    ({"fields": "thing1={% include '/etc/passwd' %}"}, "不能引用其他模板或文件"),
    ({"fields": "thing1={{ unit_nmae }}"}, "unit_nmae"),
    ({"fields": "thing1={{ unit "}, "模板有误"),
    ({"fields": "novalue"}, "key=value"),
    ({"template_id": ""}, "template-id"),
    ({"channel": "custom"}, "客服消息"),
    ({"send_at": "tomorrow"}, "发送时间"),
    ({"audience": "office"}, "没有可发送的人"),
    ({"l_unit": "没有这个单位"}, "没有这个单位"),
]


async def test_bad_input_is_the_form_again_with_the_message_and_nothing_is_written(
    world: Any, office: Staff
) -> None:
    key = await fresh_key(office)
    for kw, words in BAD_INPUT:
        for path in (f"{BASE}/new", BASE):  # the confirm step, and a confirm posted by hand
            status, page = await office.post(path, {**fields(**kw), "key": key})
            assert status == 400 and 'id="compose"' in page, (kw, path)
            assert words in html.unescape(page), (kw, path)
            assert f'name="key" value="{key}"' in page  # the form keeps its key
        resp = await world.client.post(
            f"{BASE}/preview", data=fields(**kw), headers={"X-CSRF-Token": office.csrf}
        )
        assert resp.status == 400 and words in (await resp.json())["error"], kw
    assert await rows(world, Broadcast) == 0 and await rows(world, Delivery) == 0
    assert not await audit_of(world, "broadcast.create")


async def test_an_office_user_of_another_place_never_sees_the_broadcast(
    world: Any, office: Staff
) -> None:
    broadcast_id = await create(office, send_at="2018-03-06T09:00")
    assert (await office.post("/console/logout"))[0] == 302
    rugao = await login(world.client, "rugao_office")
    own = f"/console/j/rugao/broadcasts/{broadcast_id}"
    for path in (f"{BASE}/{broadcast_id}", f"{BASE}/{broadcast_id}/progress.json"):
        assert (await rugao.get(path))[0] == 403
    for path in (own, f"{own}/progress.json"):
        assert (await rugao.get(path))[0] == 404  # as if it did not exist
    for action in ("cancel", "retry"):
        assert (await rugao.post(f"{own}/{action}"))[0] == 404
        assert (await rugao.post(f"{BASE}/{broadcast_id}/{action}"))[0] == 403
    status, listing = await rugao.get("/console/j/rugao/broadcasts")
    assert status == 200 and f"#{broadcast_id}<" not in listing and "还没有群发" in listing
    assert (await rugao.get(f"{BASE}/audience?audience=liaisons"))[0] == 403
    assert (await rugao.post(f"{BASE}/new", {**fields(), "key": "console:" + "0" * 32}))[0] == 403
    assert (await rugao.post(BASE, {**fields(), "key": "console:" + "1" * 32}))[0] == 403
    assert await rows(world, Broadcast) == 1
    async with world.app[SESSIONS]() as s:
        row = await s.get(Broadcast, broadcast_id)
    assert row is not None and row.status == "active"


async def test_html_in_a_unit_name_or_a_field_is_text_everywhere(world: Any, office: Staff) -> None:
    async with world.app[SESSIONS]() as s:
        s.add(Unit(jurisdiction=ZJJ, name=EVIL_UNIT, normalized=normalize_unit_name(EVIL_UNIT)))
        await s.commit()
    await bind(world, ZJJ, EVIL_UNIT, "o_evil")
    kw = {"l_unit": EVIL_UNIT, "fields": f"thing1={EVIL_FIELD}{{{{ unit }}}}"}

    # JSON is JSON: the raw text, for the script to put in with textContent
    resp = await world.client.get(f"{BASE}/audience", params=fields(**kw))
    assert resp.content_type == "application/json"
    assert json.loads(await resp.text())["sample"][0]["unit"] == EVIL_UNIT
    resp = await world.client.post(
        f"{BASE}/preview", data=fields(**kw), headers={"X-CSRF-Token": office.csrf}
    )
    assert (await resp.json())["shown"]["thing1"].startswith(EVIL_FIELD[:20])

    def clean(page: str) -> None:
        assert "<img src=x" not in page and "<script>alert" not in page, page
        assert "&lt;img src=x" in page or "&lt;script&gt;alert" in page

    status, page = await confirm_page(office, **kw)
    assert status == 200
    clean(page)
    assert "&lt;img src=x onerror=alert(1)&gt;消防队" in page
    resp = await world.client.post(BASE, data=hidden_fields(page), allow_redirects=False)
    shown_at = resp.headers["Location"]
    for path in (BASE, shown_at):
        status, page = await office.get(path)
        assert status == 200
        clean(page)
    status, page = await office.get(f"{BASE}/new", params={"l_unit": EVIL_UNIT})
    assert status == 200
    clean(page)
    # an error message quoting the bad input
    status, page = await office.post(
        f"{BASE}/new", {**fields(l_unit="<b>nowhere</b>"), "key": await fresh_key(office)}
    )
    assert status == 400 and "<b>nowhere</b>" not in page and "&lt;b&gt;nowhere" in page


async def test_the_script_is_served_locally_and_never_writes_html(world: Any) -> None:
    resp = await world.client.get("/console/static/broadcasts.js")
    assert resp.status == 200
    script = await resp.text()
    assert "innerHTML" not in script and "outerHTML" not in script
    assert "insertAdjacentHTML" not in script and "document.write" not in script
    assert "http:" not in script and "https:" not in script  # nothing from a CDN
