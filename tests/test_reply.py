"""Reply XML and long-reply pagination: what the donor sees is exactly what we meant."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.wechat.message import parse_xml
from bot.wechat.reply import cdata, split_text, text_reply

HINT = "（回复「更多」查看下一页）"  # the webhook's MORE_HINT
LIMIT = 2048  # Settings.text_limit_bytes: WeChat's limit for a passive text reply
DONOR, ACCOUNT = "oDonor_8fX2kQ1vZ7", "gh_3f2a1b0c9d8e"

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def sent_content(content: str) -> str:
    """The Content a parser reads back from our reply."""
    data = parse_xml(text_reply(DONOR, ACCOUNT, content, 1742032800))
    assert data["ToUserName"] == DONOR
    assert data["FromUserName"] == ACCOUNT
    assert data["MsgType"] == "text"
    assert data["CreateTime"] == "1742032800"
    return str(data.get("Content", ""))


# --- cdata / text_reply ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "您本月还可献血 2 次，请于3月20日前到中心血站 🩸",
        "]]>",
        "]]>" * 200,
        "a]]>b]]>c",
        "]]]]>>",
        "]]]>",
        "]]",
        "]>",
        "<![CDATA[inner]]>",
        "</Content></xml><xml><Content>injected",
        "&amp; &lt; <b>bold</b> & < >",
        "第一行\n第二行\n\n\t缩进",
        "",
    ],
)
def test_reply_text_comes_back_exactly(text: str) -> None:
    assert sent_content(text) == text


def test_control_characters_are_dropped_so_the_reply_still_parses() -> None:
    text = "献\x00血\x01记\x08录\x0b查\x0c询\x1b结\x1f果\ufffe：\uffff 2 次\t\n"
    assert sent_content(text) == "献血记录查询结果： 2 次\t\n"


def test_control_characters_cannot_build_a_cdata_end() -> None:
    # Stripping happens before escaping: "]]\x00>" must not become a raw "]]>".
    assert sent_content("]]\x00>") == "]]>"
    assert sent_content("]\x01]\x02>\x03") == "]]>"


def test_cdata_is_a_single_element_body() -> None:
    root = ET.fromstring(f"<Content>{cdata(']]><evil/>')}</Content>")
    assert len(root) == 0  # no element smuggled in
    assert root.text == "]]><evil/>"


def _expected_after_xml(text: str) -> str:
    # XML parsers normalise line ends (\r\n and \r become \n), WeChat's included.
    return _INVALID_XML.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


@given(st.text())
def test_any_text_survives_the_reply_xml(text: str) -> None:
    body = text_reply(DONOR, ACCOUNT, text, 1742032800)
    # Any XML parser (WeChat's stand-in: expat) reads back the text...
    root = ET.fromstring(body)
    assert (root.findtext("Content") or "") == _expected_after_xml(text)
    # ...and so does ours, unless the text looks like a DTD (which ours refuses outright).
    if "<!" not in text:
        assert parse_xml(body).get("Content", "") == _expected_after_xml(text)


@given(st.lists(st.sampled_from(["]]>", "]", ">", "]]", "<![CDATA[", "中", "\n"])).map("".join))
def test_any_mix_of_cdata_markers_survives(text: str) -> None:
    assert ET.fromstring(text_reply(DONOR, ACCOUNT, text, 1)).findtext("Content") == text


# --- split_text -------------------------------------------------------------------------


def nbytes(text: str) -> int:
    return len(text.encode())


def without_hint(pages: list[str]) -> list[str]:
    for page in pages[:-1]:
        assert page.endswith("\n" + HINT), "every page but the last tells the donor there is more"
    assert not pages[-1].endswith(HINT)
    return [page.removesuffix("\n" + HINT) for page in pages]


def visible(text: str) -> list[str]:
    return [ch for ch in text if not ch.isspace()]


def test_short_text_is_one_page() -> None:
    text = "您所在单位本月已献血 12 人次，还差 3 人次完成计划。"
    assert split_text(text, LIMIT, HINT) == [text]


def test_text_of_exactly_the_limit_is_one_page() -> None:
    text = "血" * (LIMIT // 3) + "x" * (LIMIT % 3)
    assert nbytes(text) == LIMIT
    assert split_text(text, LIMIT, HINT) == [text]


def test_long_list_is_paged_at_line_ends() -> None:
    lines = [
        f"{i}. 第{i}献血点：本月已献血 {i * 7} 人次，剩余名额 {300 - i} 个" for i in range(300)
    ]
    text = "\n".join(lines)
    pages = split_text(text, LIMIT, HINT)

    assert len(pages) > 1
    assert all(nbytes(page) <= LIMIT for page in pages)
    bodies = without_hint(pages)
    # No line is cut in two, and all lines arrive in order.
    for body in bodies:
        assert set(body.split("\n")) <= set(lines)
    assert "\n".join(bodies) == text


def test_a_single_10000_character_line_is_cut() -> None:
    text = "献血光荣" * 2500
    pages = split_text(text, LIMIT, HINT)

    assert len(pages) > 1
    assert all(nbytes(page) <= LIMIT for page in pages)
    assert "".join(without_hint(pages)) == text


def test_pages_are_cut_between_characters_not_inside_them() -> None:
    text = "😀" * 1000 + "\n" + "中" * 1000  # 4-byte and 3-byte characters
    pages = split_text(text, 100, HINT)
    assert all(nbytes(page) <= 100 for page in pages)
    assert visible("".join(without_hint(pages))) == visible(text)


@pytest.mark.parametrize("text", [" " * 3000, "\n" * 3000, " \n\t" * 1000])
def test_long_blank_text_is_still_one_page(text: str) -> None:
    # The webhook sends pages[0]: there must be one even when there is nothing to show.
    pages = split_text(text, LIMIT, HINT)
    assert len(pages) == 1
    assert nbytes(pages[0]) <= LIMIT


@given(
    text=st.text(
        alphabet=st.one_of(
            st.sampled_from("血站献单位\n\n 。1"),
            st.sampled_from(" \n"),
            st.characters(codec="utf-8", exclude_categories=["Cs"]),
        ),
        max_size=3000,
    ),
    limit=st.integers(min_value=80, max_value=2048),
)
def test_pages_fit_and_lose_nothing(text: str, limit: int) -> None:
    pages = split_text(text, limit, HINT)

    assert pages, "there is always something to send"
    assert all(nbytes(page) <= limit for page in pages)
    assert visible("".join(without_hint(pages))) == visible(text)
