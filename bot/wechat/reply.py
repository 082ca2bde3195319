"""Reply XML, built by one escaping function."""

from __future__ import annotations

import re

# Characters XML 1.0 forbids; WeChat would reject the whole reply.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def cdata(text: str) -> str:
    """A CDATA section holding `text` verbatim, even if it contains `]]>`."""
    if _INVALID_XML.search(text) is not None:
        text = _INVALID_XML.sub("", text)
    if "]]>" in text:
        text = text.replace("]]>", "]]]]><![CDATA[>")
    return "<![CDATA[" + text + "]]>"


# The addressing part of replies, by (to, from): the same few thousand users write again.
_HEADS: dict[tuple[str, str], str] = {}
_HEADS_MAX = 4096


def _head(to_user: str, from_user: str) -> str:
    head = _HEADS.get((to_user, from_user))
    if head is None:
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        head = _HEADS[(to_user, from_user)] = (
            f"<xml><ToUserName>{cdata(to_user)}</ToUserName>"
            f"<FromUserName>{cdata(from_user)}</FromUserName>"
        )
    return head


def text_reply(to_user: str, from_user: str, content: str, create_time: int) -> bytes:
    return (
        f"{_head(to_user, from_user)}<CreateTime>{create_time}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{cdata(content)}</Content></xml>"
    ).encode()


def _pieces(text: str, budget: int) -> list[str]:
    """Lines of `text`, with any line over `budget` bytes cut into chunks that fit."""
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        chunk, size = "", 0
        for ch in line:
            n = len(ch.encode())
            if size + n > budget:
                out.append(chunk)
                chunk, size = "", 0
            chunk += ch
            size += n
        if chunk:
            out.append(chunk)
    return out


def split_text(text: str, limit_bytes: int, more_hint: str) -> list[str]:
    """Pages of at most `limit_bytes` UTF-8 bytes (hint included), broken at line ends."""
    if len(text) * 4 <= limit_bytes or len(text.encode()) <= limit_bytes:  # ≤ 4 bytes a char
        return [text]
    budget = limit_bytes - len(more_hint.encode()) - 1
    pages: list[str] = []
    current, size = "", 0
    for piece in _pieces(text, budget):
        n = len(piece.encode())
        if size + n > budget and current:
            pages.append(current)
            current, size = "", 0
        current += piece
        size += n
    if current:
        pages.append(current)
    pages = [p.rstrip("\n") for p in pages if p.strip()]
    if not pages:  # nothing but whitespace: still one (empty) page, never none
        return [""]
    return [p + "\n" + more_hint for p in pages[:-1]] + pages[-1:]
