"""Parse WeChat's XML push into a `Message`.

The standard library's expat parser (C) does the parsing; a DOCTYPE or ENTITY
declaration is refused before it runs, so no entity expansion can happen.  The body
must be UTF-8 (all WeChat sends) without NULs, and expat is fed the decoded text, so
a document in another encoding (UTF-16 hides "<!DOCTYPE" from a byte search) cannot
slip a DTD past the check.
wechatpy's `parse_message` gives the same fields (a test checks it field by
field) but costs several times more per message through xmltodict.

Nearly every push is WeChat's own flat form, ``<xml><Tag><![CDATA[v]]></Tag>…</xml>``:
`_flat_fields` reads that form with one regular expression, at a fraction of expat's
cost, and returns None for anything else (a declaration, nesting, attributes, entities,
comments, odd characters, mixed content…), which then goes through expat exactly as
before. It accepts only documents expat also accepts, with the same result (a property
test checks both on generated and mutated input).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from bot.errors import BadMessage

_DTD = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_CDATA = re.compile(r"<!\[CDATA\[.*?\]\]>", re.S)
MAX_FIELD = 16 * 1024
# WeChat nests at most 4 deep (SendPicsInfo/PicList/item/PicMd5Sum)
MAX_DEPTH = 8


def _element_value(el: ET.Element, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:  # deep nesting would otherwise end in a RecursionError
        raise BadMessage("XML nested too deeply")
    if len(el) == 0:
        return (el.text or "").strip() if el.tag not in ("Content",) else (el.text or "")
    out: dict[str, Any] = {}
    for child in el:
        value = _element_value(child, depth + 1)
        if child.tag in out:  # repeated tags (several <List>) become a list
            prev = out[child.tag]
            out[child.tag] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[child.tag] = value
    return out


def _declares_dtd(text: str) -> bool:
    """A DOCTYPE/ENTITY outside CDATA; a user may well *type* 「<!DOCTYPE html>」."""
    return _DTD.search(_CDATA.sub("", text)) is not None


# Characters XML forbids, and CR, which the parser turns into LF: documents with any of
# them go to expat, which refuses or normalises them itself.
_NOT_FLAT = "\x00-\x08\x0b-\x1f\ufffe\uffff"
_FLAT_CDATA = rf"<!\[CDATA\[[^\]{_NOT_FLAT}]*(?:\](?!\]>)[^\]{_NOT_FLAT}]*)*\]\]>"
# The whole document in the flat form: <xml>, then fields, each one CDATA section or
# plain text with nothing to decode (no & or <), closed by its own ASCII name.
_FLAT_DOC = re.compile(
    rf"<xml>[ \t\n]*(?:<([A-Za-z_][A-Za-z0-9_]*)>(?:{_FLAT_CDATA}|[^<&\]{_NOT_FLAT}]*)</\1>"
    r"[ \t\n]*)+</xml>[ \t\n]*"
)
# Its fields, once _FLAT_DOC has matched (a CDATA section holds no "]]>" then).
_FLAT_FIELD = re.compile(r"<([A-Za-z0-9_]+)>(?:<!\[CDATA\[(.*?)\]\]>|([^<]*))</\1>", re.S)


def _flat_fields(text: str) -> dict[str, Any] | None:
    """WeChat's flat push read without expat, or None if `text` is not exactly that form."""
    if _FLAT_DOC.fullmatch(text) is None:
        return None
    data: dict[str, Any] = {}
    for tag, cdata, plain in _FLAT_FIELD.findall(text, 5):
        # user text keeps its spaces; WeChat's own fields are trimmed, as below
        value = (cdata or plain) if tag == "Content" else (cdata or plain).strip()
        if tag in data:
            prev = data[tag]
            data[tag] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            data[tag] = value
    return data


def parse_xml(body: bytes) -> dict[str, Any]:
    """The <xml> root as a dict; BadMessage for anything that is not safe, well-formed XML."""
    if not body or not body.strip():
        raise BadMessage("empty body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadMessage("body is not UTF-8") from None
    flat = _flat_fields(text)
    if flat is not None:
        return flat
    return _parse_text(text)


def _parse_text(text: str) -> dict[str, Any]:
    """`parse_xml` through expat (ElementTree): the general path for any document."""
    if "\x00" in text:  # never in XML; UTF-16/32 needs it, and expat would detect UTF-16
        raise BadMessage("NUL in body")
    if _DTD.search(text) and _declares_dtd(text):
        raise BadMessage("DTDs and entities are not allowed")
    try:
        # A str makes expat parse as UTF-8 whatever the XML declaration says.
        root = ET.fromstring(text)  # noqa: S314 - DTDs refused above
    except ET.ParseError as exc:
        raise BadMessage(f"malformed XML: {exc}") from None
    if root.tag != "xml":
        raise BadMessage("root element must be <xml>")
    if len(root) == 0:
        raise BadMessage("empty <xml>")
    data: dict[str, Any] = {}
    for child in root:  # flat fields inline: nearly every push is one level deep
        tag = child.tag
        if len(child):
            value: Any = _element_value(child, 1)
        else:  # user text keeps its spaces; WeChat's own fields are trimmed, as xmltodict does
            value = (child.text or "") if tag == "Content" else (child.text or "").strip()
        if tag in data:  # repeated tags (several <List>) become a list
            prev = data[tag]
            data[tag] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            data[tag] = value
    return data


@dataclass(slots=True)
class Message:
    """One inbound message or event, with the fields handlers use typed out."""

    raw: dict[str, Any]
    msg_type: str
    source: str  # FromUserName: the sender's openid
    target: str  # ToUserName: our account
    create_time: int
    msg_id: str = ""
    event: str = ""
    content: str = ""
    event_key: str = ""
    location: tuple[float, float] | None = None
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        # Events carry no MsgId of their own (TEMPLATESENDJOBFINISH's MsgID names the
        # template message it reports on), so WeChat's documented key for them is used.
        if self.msg_id and self.msg_type != "event":
            return f"m:{self.msg_id}"
        return f"e:{self.source}:{self.create_time}:{self.event}"

    @property
    def is_event(self) -> bool:
        return self.msg_type == "event"


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise BadMessage("bad coordinate") from None


def to_message(data: dict[str, Any], *, short: bool = False) -> Message:
    """Turn the parsed dict into a Message; missing MsgType/FromUserName is a BadMessage.

    `short`: the document itself had no more than MAX_FIELD bytes, so no field can.
    """
    msg_type = str(data.get("MsgType") or "").lower()
    source = data.get("FromUserName")
    if not msg_type or not source or not isinstance(source, str):
        raise BadMessage("MsgType and FromUserName are required")
    if not short and any(isinstance(v, str) and len(v) > MAX_FIELD for v in data.values()):
        raise BadMessage("a field is too long")
    try:
        create_time = int(data.get("CreateTime") or 0)
    except (TypeError, ValueError):  # TypeError: <CreateTime> with child elements
        raise BadMessage("CreateTime is not a number") from None
    msg = Message(
        raw=data,
        msg_type=msg_type,
        source=source,
        target=str(data.get("ToUserName") or ""),
        create_time=create_time,
        msg_id=str(data.get("MsgId") or data.get("MsgID") or ""),
        event=str(data.get("Event") or "").lower(),
        event_key=str(data.get("EventKey") or ""),
    )
    if msg_type == "text":
        msg.content = str(data.get("Content") or "")
    elif msg_type == "voice":
        # With speech recognition on, WeChat sends the transcript: treat it as text.
        msg.content = str(data.get("Recognition") or "").strip()
    elif msg_type == "location":
        msg.location = (_float(data.get("Location_X")), _float(data.get("Location_Y")))
        msg.label = str(data.get("Label") or "")
    elif msg_type == "event" and msg.event == "location":
        msg.location = (_float(data.get("Latitude")), _float(data.get("Longitude")))
    if msg.event == "subscribe" and msg.event_key.startswith("qrscene_"):
        msg.event_key = msg.event_key[len("qrscene_") :]
    if msg.event == "subscribe_msg_popup_event":
        popup = data.get("SubscribeMsgPopupEvent")
        items = popup.get("List", []) if isinstance(popup, dict) else []
        # One <List> parses as a dict, several as a list: always hand handlers a list.
        items = items if isinstance(items, list) else [items]
        msg.extra["subscriptions"] = [item for item in items if isinstance(item, dict)]
    return msg


def parse_message(body: bytes) -> Message:
    return to_message(parse_xml(body), short=len(body) <= MAX_FIELD)
