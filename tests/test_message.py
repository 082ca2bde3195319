"""Parsing WeChat's XML push: every message and event type, checked against wechatpy.

The payloads are the ones WeChat documents (官方文档「接收普通消息」「接收事件推送」
「订阅通知」), laid out the way WeChat sends them.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import wechatpy
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import BadMessage
from bot.wechat.message import MAX_FIELD, Message, parse_message

HEAD = """<xml>
  <ToUserName><![CDATA[gh_3f2a1b0c9d8e]]></ToUserName>
  <FromUserName><![CDATA[oDonor_8fX2kQ1vZ7]]></FromUserName>
  <CreateTime>1742032800</CreateTime>
"""


def push(msg_type: str, fields: str) -> bytes:
    return f"{HEAD}  <MsgType><![CDATA[{msg_type}]]></MsgType>\n{fields}</xml>".encode()


def event(name: str, fields: str = "") -> bytes:
    return push("event", f"  <Event><![CDATA[{name}]]></Event>\n{fields}")


POPUP_ONE = """  <SubscribeMsgPopupEvent>
    <List>
      <TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>
      <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString>
      <PopupScene>2</PopupScene>
    </List>
  </SubscribeMsgPopupEvent>
"""
POPUP_SEVERAL = """  <SubscribeMsgPopupEvent>
    <List>
      <TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>
      <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString>
      <PopupScene>2</PopupScene>
    </List>
    <List>
      <TemplateId><![CDATA[9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI]]></TemplateId>
      <SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString>
      <PopupScene>2</PopupScene>
    </List>
    <List>
      <TemplateId><![CDATA[zZ0aY9bX8cW7dV6eU5fT4gS3hR2iQ1jP0kO9lN8mM7n]]></TemplateId>
      <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString>
      <PopupScene>2</PopupScene>
    </List>
  </SubscribeMsgPopupEvent>
"""

PAYLOADS: dict[str, bytes] = {
    "text": push(
        "text",
        "  <Content><![CDATA[这个月我们单位还能献几次？]]></Content>\n"
        "  <MsgId>24561875124561875</MsgId>\n",
    ),
    "image": push(
        "image",
        "  <PicUrl><![CDATA[http://mmbiz.qpic.cn/mmbiz_jpg/abc/0]]></PicUrl>\n"
        "  <MediaId><![CDATA[media_id_image_1]]></MediaId>\n"
        "  <MsgId>24561875124561876</MsgId>\n",
    ),
    "voice": push(
        "voice",
        "  <MediaId><![CDATA[media_id_voice_1]]></MediaId>\n"
        "  <Format><![CDATA[amr]]></Format>\n"
        "  <MsgId>24561875124561877</MsgId>\n",
    ),
    "voice-recognised": push(
        "voice",
        "  <MediaId><![CDATA[media_id_voice_2]]></MediaId>\n"
        "  <Format><![CDATA[amr]]></Format>\n"
        "  <Recognition><![CDATA[查询本月献血进度]]></Recognition>\n"
        "  <MsgId>24561875124561878</MsgId>\n",
    ),
    "video": push(
        "video",
        "  <MediaId><![CDATA[media_id_video]]></MediaId>\n"
        "  <ThumbMediaId><![CDATA[thumb_media_id]]></ThumbMediaId>\n"
        "  <MsgId>24561875124561879</MsgId>\n",
    ),
    "shortvideo": push(
        "shortvideo",
        "  <MediaId><![CDATA[media_id_short]]></MediaId>\n"
        "  <ThumbMediaId><![CDATA[thumb_media_id]]></ThumbMediaId>\n"
        "  <MsgId>24561875124561880</MsgId>\n",
    ),
    "location": push(
        "location",
        "  <Location_X>23.134521</Location_X>\n"
        "  <Location_Y>113.358803</Location_Y>\n"
        "  <Scale>20</Scale>\n"
        "  <Label><![CDATA[广州市天河区献血屋]]></Label>\n"
        "  <MsgId>24561875124561881</MsgId>\n",
    ),
    "link": push(
        "link",
        "  <Title><![CDATA[无偿献血知识]]></Title>\n"
        "  <Description><![CDATA[献血前后注意事项]]></Description>\n"
        "  <Url><![CDATA[https://mp.weixin.qq.com/s/abc]]></Url>\n"
        "  <MsgId>24561875124561882</MsgId>\n",
    ),
    "subscribe": event("subscribe", "  <EventKey><![CDATA[]]></EventKey>\n"),
    "subscribe-qrscene": event(
        "subscribe",
        "  <EventKey><![CDATA[qrscene_unit-1024]]></EventKey>\n"
        "  <Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3"
        "TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw==]]></Ticket>\n",
    ),
    "unsubscribe": event("unsubscribe", "  <EventKey><![CDATA[]]></EventKey>\n"),
    "click": event("CLICK", "  <EventKey><![CDATA[MY_PROGRESS]]></EventKey>\n"),
    "view": event(
        "VIEW",
        "  <EventKey><![CDATA[https://donor.example.cn/console]]></EventKey>\n"
        "  <MenuId>208379533</MenuId>\n",
    ),
    "scan": event(
        "SCAN",
        "  <EventKey><![CDATA[unit-1024]]></EventKey>\n"
        "  <Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8v]]></Ticket>\n",
    ),
    "location-event": event(
        "LOCATION",
        "  <Latitude>23.137466</Latitude>\n"
        "  <Longitude>113.352425</Longitude>\n"
        "  <Precision>119.385040</Precision>\n",
    ),
    "templatesendjobfinish": event(
        "TEMPLATESENDJOBFINISH",
        "  <MsgID>200163836</MsgID>\n  <Status><![CDATA[success]]></Status>\n",
    ),
    "popup-one": event("subscribe_msg_popup_event", POPUP_ONE),
    "popup-several": event("subscribe_msg_popup_event", POPUP_SEVERAL),
}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def wechatpy_view(body: bytes) -> dict[str, Any]:
    """wechatpy's reading of the payload, in our field names."""
    wp = wechatpy.parse_message(body.decode())
    data = wp._data
    view: dict[str, Any] = {
        "source": wp.source,
        "target": wp.target,
        "create_time": wp.time,
        "msg_id": str(wp.id) if wp.id else "",
        "content": "",
        "event": "",
        "event_key": "",
        "location": None,
    }
    if wp.type == "text":
        view["content"] = wp.content
    elif wp.type == "voice":
        view["content"] = wp.recognition or ""
    elif wp.type == "location" and data["MsgType"] == "location":
        view["location"] = (float(wp.location_x), float(wp.location_y))
    if data["MsgType"] == "event":
        # wechatpy renames a subscribe through a QR code to "subscribe_scan"; we keep
        # WeChat's event name and, like wechatpy, strip the qrscene_ prefix from the key.
        name = data["Event"].lower()
        view["event"] = "subscribe" if name == "subscribe_scan" else name
        for attr in ("key", "scene_id", "url"):
            value = getattr(wp, attr, None)
            if value is not None:
                view["event_key"] = value
                break
        if view["event"] == "location":
            view["location"] = (wp.latitude, wp.longitude)
    return view


def our_view(message: Message) -> dict[str, Any]:
    return {
        "source": message.source,
        "target": message.target,
        "create_time": message.create_time,
        "msg_id": message.msg_id,
        "content": message.content,
        "event": message.event,
        "event_key": message.event_key,
        "location": message.location,
    }


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_fields_match_wechatpy(name: str) -> None:
    body = PAYLOADS[name]
    assert our_view(parse_message(body)) == wechatpy_view(body)


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_sender_and_time_of_every_type(name: str) -> None:
    message = parse_message(PAYLOADS[name])
    assert message.source == "oDonor_8fX2kQ1vZ7"
    assert message.target == "gh_3f2a1b0c9d8e"
    assert message.create_time == 1742032800
    assert message.is_event == (message.msg_type == "event")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("text", {"msg_type": "text", "content": "这个月我们单位还能献几次？"}),
        ("image", {"msg_type": "image", "content": ""}),
        ("voice", {"msg_type": "voice", "content": ""}),
        # With speech recognition on, what the donor said is handled like typed text.
        ("voice-recognised", {"msg_type": "voice", "content": "查询本月献血进度"}),
        ("video", {"msg_type": "video", "msg_id": "24561875124561879"}),
        ("shortvideo", {"msg_type": "shortvideo", "msg_id": "24561875124561880"}),
        (
            "location",
            {"location": (23.134521, 113.358803), "label": "广州市天河区献血屋"},
        ),
        ("link", {"msg_type": "link", "msg_id": "24561875124561882"}),
        ("subscribe", {"event": "subscribe", "event_key": ""}),
        ("subscribe-qrscene", {"event": "subscribe", "event_key": "unit-1024"}),
        ("unsubscribe", {"event": "unsubscribe"}),
        ("click", {"event": "click", "event_key": "MY_PROGRESS"}),
        ("view", {"event": "view", "event_key": "https://donor.example.cn/console"}),
        ("scan", {"event": "scan", "event_key": "unit-1024"}),
        ("location-event", {"event": "location", "location": (23.137466, 113.352425)}),
        ("templatesendjobfinish", {"event": "templatesendjobfinish", "msg_id": "200163836"}),
    ],
)
def test_what_handlers_see(name: str, expected: dict[str, Any]) -> None:
    message = parse_message(PAYLOADS[name])
    assert {key: getattr(message, key) for key in expected} == expected


def test_template_report_status_is_available() -> None:
    assert parse_message(PAYLOADS["templatesendjobfinish"]).raw["Status"] == "success"


@pytest.mark.parametrize(
    ("name", "statuses"),
    [
        ("popup-one", ["accept"]),
        ("popup-several", ["accept", "reject", "accept"]),
    ],
)
def test_subscription_popup_is_always_a_list(name: str, statuses: list[str]) -> None:
    body = PAYLOADS[name]
    subscriptions = parse_message(body).extra["subscriptions"]

    assert isinstance(subscriptions, list)
    assert [s["SubscribeStatusString"] for s in subscriptions] == statuses
    # wechatpy gives one <List> as a dict and several as a list; the items agree.
    theirs = wechatpy.parse_message(body.decode())._data["SubscribeMsgPopupEvent"]["List"]
    assert subscriptions == as_list(theirs)


@pytest.mark.parametrize(
    "popup",
    [
        "",
        "  <SubscribeMsgPopupEvent></SubscribeMsgPopupEvent>\n",
        "  <SubscribeMsgPopupEvent>not a list</SubscribeMsgPopupEvent>\n",
        "  <SubscribeMsgPopupEvent><List>text</List></SubscribeMsgPopupEvent>\n",
    ],
)
def test_subscription_popup_without_items_is_an_empty_list(popup: str) -> None:
    message = parse_message(event("subscribe_msg_popup_event", popup))
    assert message.extra["subscriptions"] == []


# --- refused input --------------------------------------------------------------------

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n"
    + PAYLOADS["text"].decode().replace("这个月我们单位还能献几次？", "]]>&lol9;<![CDATA[")
)
XXE = (
    '<?xml version="1.0"?>\n<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    + PAYLOADS["text"].decode().replace("这个月我们单位还能献几次？", "]]>&xxe;<![CDATA[")
)
TEXT = PAYLOADS["text"].decode()
UTF16_DTD = (
    '<?xml version="1.0" encoding="UTF-16"?>\n'
    '<!DOCTYPE xml [<!ENTITY a "ENTITY-EXPANDED">]>\n'
    + TEXT.replace("这个月我们单位还能献几次？", "]]>&a;<![CDATA[")
)


def without(tag: str) -> bytes:
    return re.sub(rf"\s*<{tag}>.*?</{tag}>", "", TEXT, flags=re.S).encode()


REFUSED: dict[str, bytes] = {
    "empty": b"",
    "whitespace": b" \r\n\t  \n",
    "not-xml": "你好，我想查询献血记录".encode(),
    "json": b'{"MsgType": "text", "Content": "hi"}',
    "truncated": PAYLOADS["text"][: len(PAYLOADS["text"]) // 2],
    "truncated-before-root-closes": PAYLOADS["text"][:-3],
    "doctype": b'<!DOCTYPE xml SYSTEM "http://evil.example/x.dtd">\n' + PAYLOADS["text"],
    "billion-laughs": BILLION_LAUGHS.encode(),
    "external-entity": XXE.encode(),
    "utf16-doctype": UTF16_DTD.encode("utf-16"),
    "utf16le-doctype": UTF16_DTD.replace("UTF-16", "UTF-16LE").encode("utf-16-le"),
    "utf16be-doctype": UTF16_DTD.replace("UTF-16", "UTF-16BE").encode("utf-16-be"),
    "utf32-doctype": UTF16_DTD.replace("UTF-16", "UTF-32").encode("utf-32"),
    "nul-byte": TEXT.replace("这个月", "这个\x00月").encode(),
    "not-utf8": TEXT.replace("<xml>", '<?xml version="1.0" encoding="GBK"?><xml>').encode("gbk"),
    "other-root": TEXT.replace("<xml>", "<message>").replace("</xml>", "</message>").encode(),
    "empty-root": b"<xml></xml>",
    "two-roots": PAYLOADS["text"] + PAYLOADS["text"],
    "missing-msgtype": without("MsgType"),
    "missing-fromusername": without("FromUserName"),
    "empty-fromusername": TEXT.replace("oDonor_8fX2kQ1vZ7", "").encode(),
    "nested-fromusername": TEXT.replace("<![CDATA[oDonor_8fX2kQ1vZ7]]>", "<a>o</a>").encode(),
    "createtime-not-a-number": TEXT.replace("1742032800", "2025-03-15 10:00").encode(),
    "createtime-nested": TEXT.replace("1742032800", "<s>1742032800</s>").encode(),
    "content-over-16k": TEXT.replace("这个月我们单位还能献几次？", "x" * (MAX_FIELD + 1)).encode(),
    "deeply-nested": TEXT.replace(
        "</xml>", "<A>" + "<a>" * 2000 + "</a>" * 2000 + "</A></xml>"
    ).encode(),
    "location-not-a-number": push(
        "location", "<Location_X>north</Location_X><Location_Y>113.3</Location_Y>"
    ),
    "location-missing": push("location", "<Label>somewhere</Label>"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_input_raises_bad_message(name: str) -> None:
    with pytest.raises(BadMessage):
        parse_message(REFUSED[name])


def test_a_field_of_exactly_16_kib_is_accepted() -> None:
    body = TEXT.replace("这个月我们单位还能献几次？", "x" * MAX_FIELD).encode()
    assert parse_message(body).content == "x" * MAX_FIELD


def test_xml_declaration_in_utf8_is_fine() -> None:
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + PAYLOADS["text"]
    assert parse_message(body).content == "这个月我们单位还能献几次？"


# --- dedup keys ---------------------------------------------------------------------


def test_retried_message_has_the_same_dedup_key() -> None:
    # WeChat retries with the same MsgId (and the same CreateTime).
    first = parse_message(PAYLOADS["text"])
    retry = parse_message(PAYLOADS["text"])
    assert first.dedup_key == retry.dedup_key
    assert "24561875124561875" in first.dedup_key


def test_different_messages_have_different_dedup_keys() -> None:
    # One payload per message or event type (the variants of subscribe and of the popup
    # are the same event, so they rightly share a key).
    variants = {"subscribe-qrscene", "popup-several"}
    bodies = [body for name, body in PAYLOADS.items() if name not in variants]
    assert len({parse_message(body).dedup_key for body in bodies}) == len(bodies)


def test_message_dedup_key_is_the_msgid() -> None:
    one = parse_message(PAYLOADS["text"])
    same_id_later = parse_message(TEXT.replace("1742032800", "1742032805").encode())
    other_id = parse_message(TEXT.replace("24561875124561875", "24561875124561999").encode())
    assert one.dedup_key == same_id_later.dedup_key
    assert one.dedup_key != other_id.dedup_key


def test_event_dedup_key_is_sender_time_and_event() -> None:
    click = PAYLOADS["click"].decode()
    base = parse_message(click.encode()).dedup_key

    assert parse_message(click.encode()).dedup_key == base  # a retry
    assert parse_message(click.replace("oDonor_8fX2kQ1vZ7", "oOther").encode()).dedup_key != base
    assert parse_message(click.replace("1742032800", "1742032801").encode()).dedup_key != base
    assert parse_message(click.replace("CLICK", "VIEW").encode()).dedup_key != base
    key = parse_message(click.encode())
    assert key.msg_id == ""
    assert key.source in key.dedup_key
    assert str(key.create_time) in key.dedup_key


# --- property tests -------------------------------------------------------------------

# XML 1.0 Char, minus \r (XML normalises line ends) — text WeChat could carry verbatim.
_XML_CHAR = re.compile("^[\t\n\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")


def with_content(text: str) -> bytes:
    return TEXT.replace("这个月我们单位还能献几次？", text).encode()


@given(st.text())
def test_any_content_parses_or_raises_bad_message(text: str) -> None:
    try:
        message = parse_message(with_content(text))
    except BadMessage:
        return
    assert isinstance(message, Message)
    assert message.msg_type == "text"


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r")))
def test_clean_content_comes_back_exactly(text: str) -> None:
    if "]]>" in text or not _XML_CHAR.match(text) or "<!" in text:
        return
    assert parse_message(with_content(text)).content == text


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_raise_bad_message(body: bytes) -> None:
    try:
        parse_message(body)
    except BadMessage:
        return


_TAGS = [
    "MsgType",
    "FromUserName",
    "ToUserName",
    "CreateTime",
    "Content",
    "Event",
    "EventKey",
    "MsgId",
    "Location_X",
    "Location_Y",
    "Latitude",
    "Longitude",
    "Recognition",
    "SubscribeMsgPopupEvent",
    "List",
    "x",
]
_VALUES = [
    "text",
    "event",
    "location",
    "voice",
    "subscribe",
    "LOCATION",
    "subscribe_msg_popup_event",
    "qrscene_1",
    "1",
    "-1",
    "nan",
    "1e400",
]
_tags = st.sampled_from(_TAGS)
_values = st.one_of(
    st.sampled_from([*_VALUES, ""]),
    st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]), max_size=8),
)
_elements = st.recursive(
    st.tuples(_tags, _values).map(lambda tv: f"<{tv[0]}>{tv[1]}</{tv[0]}>"),
    lambda children: st.tuples(_tags, st.lists(children, max_size=4)).map(
        lambda tc: f"<{tc[0]}>{''.join(tc[1])}</{tc[0]}>"
    ),
    max_leaves=12,
)


@given(st.lists(_elements, max_size=8))
def test_any_arrangement_of_wechat_fields_parses_or_raises_bad_message(
    elements: list[str],
) -> None:
    try:
        parse_message(f"<xml>{''.join(elements)}</xml>".encode())
    except BadMessage:
        return
