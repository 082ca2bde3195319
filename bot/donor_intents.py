"""The donor-side parser: 「献了600毫升能免费用多少血」→ quick, 600 ml; 「绑定献血者」→ bind_donor.

Liaison questions go through `bot.intents`, which classifies these as `none`; the donor
routers sit before the liaison ones in the dispatcher and read every message with
`parse_donor` once (cached in `data["donor_query"]`). Pure and fast: no I/O, regexes
compiled at import, only the first 200 characters read. Numbers may be Arabic or Chinese
(六百毫升, 两次), volumes in ml / cc / 毫升. An absurd figure (「献了-200毫升」,
「献了100000毫升」) is `bad_value`, answered politely, never computed with.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Final

from bot.filters import Intent
from bot.intents import INTENTS
from bot.wechat.message import Message

MAX_CHARS: Final = 200
MAX_TOTAL_ML: Final = 40_000  # 400 ml twice a year for fifty years is 40,000 ml
MAX_DONATION_ML: Final = 800
MAX_COUNT: Final = 500

_CN_DIGITS: Final = dict(
    zip("零〇一二两三四五六七八九", (0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9), strict=True)
)
_CN_UNITS: Final = {"十": 10, "百": 100, "千": 1000, "万": 10000}
_NUM = r"-?\d+|[零〇一二两三四五六七八九十百千万]+"
_ML = r"(?:ml|cc|毫升|毫|m l)"
# 「献过两次400的」「两次400毫升」: a count with a volume per donation
_COUNT_EACH = re.compile(rf"({_NUM})次(?:每次|都是|都)?({_NUM})\s*(?:{_ML}|的)")
_VOLUME = re.compile(rf"({_NUM})\s*{_ML}")
_COUNT = re.compile(rf"({_NUM})(?:次|回)")
_ID_AND_NAME = re.compile(
    r"(?<![0-9])([0-9]{17}[0-9xX])(?![0-9])[\s,，:：;；]*([\u4e00-\u9fff·]{2,12})?"
)
_NAME_FIRST = re.compile(r"([\u4e00-\u9fff·]{2,12})[\s,，:：;；]*([0-9]{17}[0-9xX])(?![0-9])")
_ID_DIGITS = re.compile(r"[0-9]{17}[0-9xX]")
_ID_LABELS = re.compile(r"身份证号码?|身份证|证件号码?|号码|姓名|名字|我叫|我是")
_CODE = re.compile(r"(?:验证码)?\s*([0-9]{6})")
_BLOOD = re.compile(r"我是?(ab|a|b|o)型(?:血)?(?:\W*rh?\s*(阴|阳)性)?", re.IGNORECASE)
_BLOOD_ANY = re.compile(r"(?<![a-z])(ab|a|b|o)型", re.IGNORECASE)
_RELATIONS: Final = (
    ("spouse_parents", "岳父|岳母|公公|婆婆|丈人|丈母娘"),
    ("spouse", "老婆|老公|妻子|丈夫|爱人|配偶|媳妇|太太"),
    ("parents", "父母|爸|妈|父亲|母亲"),
    ("children", "孩子|子女|儿子|女儿|小孩"),
    ("siblings", "兄弟|姐妹|哥|弟|姐|妹"),
    ("grandparents", "爷爷|奶奶|外公|外婆|姥姥|姥爷"),
)
_FAMILY = re.compile("家人|家属|亲属|亲人|家里人|" + "|".join(w for _, w in _RELATIONS))


def _words(*lines: str) -> re.Pattern[str]:
    return re.compile("|".join(lines), re.IGNORECASE)


# tried in this order; the first match wins
_ORDERED: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("bind_donor", _words("绑定献血者|献血者绑定|绑定献血|献血者认证|认证献血者")),
    ("withdraw", _words("^退订$|取消应急|不再接收|不想接收|退订应急")),
    ("consent", _words("愿意接收|接收应急|订阅应急|应急献血通知|应急通知|紧急献血通知")),
    ("sites", _words("附近|哪里能献|哪儿能献|哪里可以献|哪能献|去哪献|在哪献|到哪献")),
    ("sites", _words("献血屋|献血点|献血车|采血车|献血站|献血地点|献血的地方")),
    ("records", _words("献血记录|献过几次|我的记录|献血明细|献血历史|查记录")),
    ("honour_gap", _words("[离距].{0,6}[金银铜]奖|[金银铜]奖.{0,4}(?:还差|差几|还要)")),
    ("honour_rules", _words("奉献奖|荣誉|表彰|金奖|银奖|铜奖")),
    ("perks", _words("我有什么福利|我的福利|我能享受|我有哪些福利|我有啥福利")),
    ("benefits", _words("好处|福利|优待|待遇|献血有什么用")),
    ("next_donation", _words("下次|下一次|什么时候能再?献|什么时候可以再?献|啥时候能再?献")),
    ("interval", _words("多久|间隔|多长时间|隔多少天|隔几个月|一年能献几次")),
)
_ADVICE = _words("洗澡|喝酒|饮酒|吃药|感冒|运动|健身|熬夜|注意|饮食|吃什么")
_ENTITLEMENT = _words("免费用|用多少血|能免|免多少|报销|减免|免费|用血")
_OTHER_RECORDS = _words(
    r"(?:他|她|别人|同事|朋友|家人)的?(?:献血)?记录",
    "(?:" + "|".join(w for _, w in _RELATIONS) + ")的?(?:献血)?记录",
    r"(?:查|看)(?!我)[\u4e00-\u9fff]{2,4}的(?:献血)?记录",
)


@dataclass(frozen=True, slots=True)
class DonorQuery:
    intent: str  # one of the _ORDERED names, quick, entitlement, family, blood_type, …; "none"
    volume_ml: int | None = None
    count: int | None = None
    relation: str = ""  # for family: spouse, parents, … ("" = the family as a whole)
    blood_type: str = ""  # 「我是O型血」→ "O"; 「AB型 Rh阴性」→ "AB-"
    id_number: str = ""  # for verify: never logged, never echoed
    name: str = ""
    code: str = ""
    medal: str = ""  # for honour_gap: 「离金奖还差几次」→ "金"


NONE: Final = DonorQuery("none")


def chinese_number(text: str) -> int | None:
    """「六百」→600, 「两」→2, 「一千二」→1200, 「十五」→15, 「-200」→-200; None if unreadable."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    total, section, digit = 0, 0, None
    last_unit = 1
    for ch in text:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
        elif ch in _CN_UNITS:
            unit = _CN_UNITS[ch]
            if unit == 10000:
                total = (total + section + (digit or 0)) * unit
                section, digit = 0, None
            else:
                section += (1 if digit is None else digit) * unit
                digit = None
            last_unit = unit
        else:
            return None
    if digit is not None:  # 「一千二」 is 1200: a trailing digit takes the next lower unit
        section += digit * (last_unit // 10 if last_unit >= 100 else 1)
    return total + section


def parse_donor(text: str) -> DonorQuery:
    """Classifies one donor message; never raises."""
    head = unicodedata.normalize("NFKC", text[:MAX_CHARS]).strip().lower()
    compact = re.sub(r"\s+", "", head).strip("。.!！?？~～ ")
    if not compact:
        return NONE
    verify = _identity(head)
    if verify is not None:
        return verify
    code = _CODE.fullmatch(compact)
    if code is not None:
        return DonorQuery("code", code=code.group(1))
    blood = _BLOOD.fullmatch(compact)
    if blood is not None:
        return DonorQuery("blood_type", blood_type=_blood_type(blood))
    for intent, pattern in _ORDERED:
        if pattern.search(compact):
            if intent == "interval" and _ADVICE.search(compact):
                return NONE  # 「献血后多久能洗澡」 is advice, not the donation interval
            if intent == "records" and _OTHER_RECORDS.search(compact):
                return DonorQuery("others_records")
            if intent == "consent":
                found = _BLOOD_ANY.search(compact)
                return DonorQuery("consent", blood_type=found.group(1).upper() if found else "")
            if intent == "honour_gap":
                medal = re.search("[金银铜]", compact)
                return DonorQuery(intent, medal=medal.group(0) if medal else "")
            return DonorQuery(intent)
    if _ADVICE.search(compact):
        return NONE
    figures = _figures(compact)
    if figures is not None:
        return figures
    if _ENTITLEMENT.search(compact):
        relation = _relation(compact)
        if relation is not None:
            return DonorQuery("family", relation=relation)
        return DonorQuery("entitlement")
    return NONE


def _identity(head: str) -> DonorQuery | None:
    if not _ID_DIGITS.search(head):
        return None
    head = _ID_LABELS.sub(" ", head)
    m = _NAME_FIRST.search(head)
    if m is not None:
        return DonorQuery("verify", id_number=m.group(2).upper(), name=m.group(1))
    m = _ID_AND_NAME.search(head)
    if m is not None:
        return DonorQuery("verify", id_number=m.group(1).upper(), name=m.group(2) or "")
    return None


def _blood_type(m: re.Match[str]) -> str:
    rh = {"阴": "-", "阳": "+"}.get(m.group(2) or "", "")
    return m.group(1).upper() + rh


def _relation(compact: str) -> str | None:
    if not _FAMILY.search(compact):
        return None
    for relation, pattern in _RELATIONS:
        if re.search(pattern, compact):
            return relation
    return ""


def _figures(compact: str) -> DonorQuery | None:
    """「献了600毫升」「献过两次400的」「献了两次」 → quick (or bad_value) with the figures."""
    if "献" not in compact and not _VOLUME.search(compact):
        return None
    each = _COUNT_EACH.search(compact)
    if each is not None:
        count, volume = chinese_number(each.group(1)), chinese_number(each.group(2))
        if count is None or volume is None:
            return None
        if not (0 < count <= MAX_COUNT and 0 < volume <= MAX_DONATION_ML):
            return DonorQuery("bad_value")
        return _checked(count * volume, count)
    volume_m, count_m = _VOLUME.search(compact), _COUNT.search(compact)
    volume = chinese_number(volume_m.group(1)) if volume_m else None
    count = chinese_number(count_m.group(1)) if count_m else None
    if volume is None and count is None:
        return None
    return _checked(volume, count)


def _checked(volume: int | None, count: int | None) -> DonorQuery:
    if volume is not None and not 0 < volume <= MAX_TOTAL_ML:
        return DonorQuery("bad_value")
    if count is not None and not 0 < count <= MAX_COUNT:
        return DonorQuery("bad_value")
    return DonorQuery("quick", volume_ml=volume, count=count)


# Words both sides use: 「我们单位下次献血是什么时候」「采血车什么时候来」 are a liaison's
# schedule questions, and 「献了两次」 from a liaison is about the unit's progress.
_SHARED: Final = frozenset({"next_donation", "sites", "interval", "quick"})
_LIAISON_QUESTION: Final = Intent(*(i for i in INTENTS if i != "none"))


class DonorIntent:
    """Passes when `parse_donor` reads one of `intents`; hands the parse over as `donor_query`.

    A question in words both sides use is left to the liaison handlers when the liaison
    parser (bot/intents.py) reads a unit question in it; a figure (「献了两次」) only when
    the sender is a liaison or office staff.
    """

    def __init__(self, *intents: str) -> None:
        self.intents = frozenset(intents)

    def __call__(self, message: Message, data: dict[str, Any]) -> bool:
        query = data.get("donor_query")
        if query is None:
            query = data["donor_query"] = parse_donor(message.content)
        if query.intent not in self.intents:
            return False
        if query.intent not in _SHARED or not _LIAISON_QUESTION(message, data):
            return True
        return query.intent == "quick" and data["user"].role not in ("liaison", "office")
