"""Signatures and safe-mode crypto: official vectors, wechatpy interop, rotation, hostile input."""

from __future__ import annotations

import binascii
import os
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wechatpy.crypto import WeChatCrypto
from wechatpy.crypto.cryptography import WeChatCipher
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

from bot.errors import BadMessage, InvalidSignature
from bot.wechat.crypto import MessageCrypto
from bot.wechat.message import parse_message, parse_xml
from bot.wechat.signature import sign, signature_ok

# Public vectors from the official WeChat / WeCom samples (/work/shared/testdata).
PLAIN = {
    "token": "AAAAA",
    "timestamp": "1714037059",
    "nonce": "486452656",
    "signature": "899cf89e464efb63f54ddac96b0a0a235f53aa78",
}
MP = {
    "token": "spamtest",
    "key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    "appid": "wx2c2769f8efd9abc2",
    "timestamp": "1409735669",
    "nonce": "1320562132",
    "msg_signature": "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
    "body": (
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><FromUserName><![CDATA["
        "oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName><CreateTime>1409735668</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[abcdteT]]></Content><MsgId>"
        "6054768590064713728</MsgId><Encrypt><![CDATA[hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHv"
        "xYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GII"
        "tb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU"
        "6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+"
        "77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5r"
        "v1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=]]></Encrypt></xml>"
    ),
    "plaintext": (
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"
        "<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n"
        "<CreateTime>1409735668</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n"
        "<Content><![CDATA[abcdteT]]></Content>\n<MsgId>6054768590064713728</MsgId>\n</xml>"
    ),
}
WECOM = {
    "token": "QDG6eK",
    "key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
    "corp_id": "wx5823bf96d3bd56c7",
}
WECOM_VERIFY = {
    "msg_signature": "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3",
    "timestamp": "1409659589",
    "nonce": "263014780",
    "echostr": (
        "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
    ),
}
WECOM_MESSAGE = {
    "msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6",
    "timestamp": "1409659813",
    "nonce": "1372623149",
    "body": (
        "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName><Encrypt><![CDATA[RypEvHK"
        "D8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUp"
        "j911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjv"
        "d4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4L"
        "UMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+"
        "rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe"
        "0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==]]></Encrypt><AgentID><![CDATA[218]]></AgentI"
        "D></xml>"
    ),
}
# A second key, as an office would paste in when it rotates its EncodingAESKey.
NEW_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut"
REPLY = (
    "<xml><ToUserName><![CDATA[oDonor]]></ToUserName><FromUserName><![CDATA[gh_office]]>"
    "</FromUserName><CreateTime>1409735669</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[您本月还可献血 2 次，请于3月20日前到中心血站 🩸👍]]></Content></xml>"
)


def mp_crypto(**overrides: str) -> MessageCrypto:
    args = {"token": MP["token"], "encoding_aes_key": MP["key"], "app_id": MP["appid"]}
    return MessageCrypto(**(args | overrides))


def frame(xml: bytes, app_id: bytes, pad: bytes | None = None) -> bytes:
    """The safe-mode plaintext frame, with PKCS#7 padding to 32 unless `pad` is given."""
    body = os.urandom(16) + struct.pack(">I", len(xml)) + xml + app_id
    if pad is None:
        n = 32 - len(body) % 32
        pad = bytes([n]) * n
    return body + pad


def encrypt_raw(plain: bytes, key: str = MP["key"]) -> str:
    cipher = WeChatCipher(binascii.a2b_base64(key + "="))
    return binascii.b2a_base64(cipher.encrypt(plain), newline=False).decode()


# --- signatures ---------------------------------------------------------------------


def test_official_plain_signature_verifies() -> None:
    parts = (PLAIN["token"], PLAIN["timestamp"], PLAIN["nonce"])
    assert sign(*parts) == PLAIN["signature"]
    assert signature_ok(parts, PLAIN["signature"])


@pytest.mark.parametrize(
    "given",
    [
        "0" * 40,
        PLAIN["signature"][:-1] + "0",
        PLAIN["signature"].upper(),
        PLAIN["signature"][:20],
        "",
        "签名" * 20,
    ],
)
def test_wrong_plain_signature_is_refused(given: str) -> None:
    assert not signature_ok((PLAIN["token"], PLAIN["timestamp"], PLAIN["nonce"]), given)


def test_plain_signature_covers_every_part() -> None:
    good = PLAIN["signature"]
    assert not signature_ok(("AAAAB", PLAIN["timestamp"], PLAIN["nonce"]), good)
    assert not signature_ok((PLAIN["token"], "1714037060", PLAIN["nonce"]), good)
    assert not signature_ok((PLAIN["token"], PLAIN["timestamp"], "486452657"), good)


# --- official safe-mode vectors -----------------------------------------------------


def test_official_account_vector_decrypts_to_the_text_message() -> None:
    crypto = mp_crypto()
    encrypted = parse_xml(MP["body"].encode())["Encrypt"]

    crypto.check(MP["msg_signature"], MP["timestamp"], MP["nonce"], encrypted)
    plain = crypto.decrypt(encrypted)

    assert plain == MP["plaintext"].encode()
    message = parse_message(plain)
    assert message.msg_type == "text"
    assert message.content == "abcdteT"
    assert message.msg_id == "6054768590064713728"
    assert message.source == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
    assert message.target == "gh_10f6c3c3ac5a"
    assert message.create_time == 1409735668


def test_wecom_verify_url_echostr_decrypts() -> None:
    crypto = MessageCrypto(WECOM["token"], WECOM["key"], WECOM["corp_id"])
    v = WECOM_VERIFY
    crypto.check(v["msg_signature"], v["timestamp"], v["nonce"], v["echostr"])
    assert crypto.decrypt(v["echostr"]) == b"1616140317555161061"


def test_wecom_message_decrypts_to_hello_from_mycreate() -> None:
    crypto = MessageCrypto(WECOM["token"], WECOM["key"], WECOM["corp_id"])
    m = WECOM_MESSAGE
    encrypted = parse_xml(m["body"].encode())["Encrypt"]

    crypto.check(m["msg_signature"], m["timestamp"], m["nonce"], encrypted)
    message = parse_message(crypto.decrypt(encrypted))

    assert message.content == "hello"
    assert message.source == "mycreate"
    assert message.msg_id == "4561255354251345929"


def test_forged_msg_signature_is_refused() -> None:
    crypto = mp_crypto()
    encrypted = parse_xml(MP["body"].encode())["Encrypt"]
    forged = "f" + MP["msg_signature"][1:]
    with pytest.raises(InvalidSignature):
        crypto.check(forged, MP["timestamp"], MP["nonce"], encrypted)
    # The signature binds the ciphertext: a swapped Encrypt fails with the genuine signature.
    with pytest.raises(InvalidSignature):
        crypto.check(MP["msg_signature"], MP["timestamp"], MP["nonce"], crypto.encrypt(b"<xml/>"))
    with pytest.raises(InvalidSignature):
        crypto.check(MP["msg_signature"], "1409735670", MP["nonce"], encrypted)


def test_the_wrong_token_cannot_verify() -> None:
    crypto = mp_crypto(token="not-the-token")
    encrypted = parse_xml(MP["body"].encode())["Encrypt"]
    with pytest.raises(InvalidSignature):
        crypto.check(MP["msg_signature"], MP["timestamp"], MP["nonce"], encrypted)


# --- interop with wechatpy ----------------------------------------------------------

ACCOUNTS = [
    pytest.param(WeChatCrypto, MP["token"], MP["key"], MP["appid"], id="official-account"),
    pytest.param(WeComCrypto, WECOM["token"], WECOM["key"], WECOM["corp_id"], id="wecom"),
]


@pytest.mark.parametrize(("wechatpy_cls", "token", "key", "app_id"), ACCOUNTS)
def test_our_wrapped_reply_decrypts_with_wechatpy(
    wechatpy_cls: type, token: str, key: str, app_id: str
) -> None:
    ours = MessageCrypto(token, key, app_id)
    envelope = ours.wrap(REPLY.encode(), "1409735669", "1320562132")

    signature = parse_xml(envelope)["MsgSignature"]
    theirs = wechatpy_cls(token, key, app_id)
    assert theirs.decrypt_message(envelope.decode(), signature, "1409735669", "1320562132") == REPLY


@pytest.mark.parametrize(("wechatpy_cls", "token", "key", "app_id"), ACCOUNTS)
def test_wechatpy_encrypted_message_decrypts_with_ours(
    wechatpy_cls: type, token: str, key: str, app_id: str
) -> None:
    envelope = wechatpy_cls(token, key, app_id).encrypt_message(REPLY, "nonce-1", "1409735669")
    outer = parse_xml(envelope.encode())

    ours = MessageCrypto(token, key, app_id)
    ours.check(outer["MsgSignature"], outer["TimeStamp"], outer["Nonce"], outer["Encrypt"])
    plain = ours.decrypt(outer["Encrypt"])
    assert plain.decode() == REPLY
    assert parse_message(plain).content == "您本月还可献血 2 次，请于3月20日前到中心血站 🩸👍"


@pytest.mark.parametrize(
    "text",
    [
        "中文：献血后请多喝水",
        "🩸" * 100,
        "混合 mixed 😀🙏🏻 \U0001f9d1\u200d\u2695\ufe0f",
        "",
        "x" * 5000,
    ],
)
def test_chinese_and_emoji_round_trip(text: str) -> None:
    crypto = mp_crypto()
    xml = f"<xml><Content><![CDATA[{text}]]></Content></xml>".encode()
    envelope = parse_xml(crypto.wrap(xml, "1409735669", "n"))
    crypto.check(envelope["MsgSignature"], "1409735669", "n", envelope["Encrypt"])
    assert crypto.decrypt(envelope["Encrypt"]).decode() == xml.decode()


def test_encryption_is_randomised() -> None:
    crypto = mp_crypto()
    assert crypto.encrypt(b"<xml/>") != crypto.encrypt(b"<xml/>")


# --- key rotation ---------------------------------------------------------------------


def test_message_under_the_previous_key_decrypts_during_rotation() -> None:
    sent_before_rotation = mp_crypto().encrypt(REPLY.encode())

    rotating = mp_crypto(encoding_aes_key=NEW_KEY, previous_key=MP["key"])
    assert rotating.decrypt(sent_before_rotation) == REPLY.encode()
    # New messages under the new key still decrypt, of course.
    assert rotating.decrypt(mp_crypto(encoding_aes_key=NEW_KEY).encrypt(b"<xml/>")) == b"<xml/>"


def test_message_under_the_previous_key_fails_without_it() -> None:
    sent_before_rotation = mp_crypto().encrypt(REPLY.encode())
    with pytest.raises(BadMessage):
        mp_crypto(encoding_aes_key=NEW_KEY).decrypt(sent_before_rotation)


def test_replies_use_the_new_key_during_rotation() -> None:
    rotating = mp_crypto(encoding_aes_key=NEW_KEY, previous_key=MP["key"])
    reply = rotating.encrypt(REPLY.encode())
    assert mp_crypto(encoding_aes_key=NEW_KEY).decrypt(reply) == REPLY.encode()
    with pytest.raises(BadMessage):
        mp_crypto().decrypt(reply)


def test_a_malformed_key_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError):
        mp_crypto(encoding_aes_key="too-short")


# --- hostile or broken ciphertext -------------------------------------------------------


def test_wrong_appid_in_the_frame_is_refused() -> None:
    for_another_account = WeChatCrypto(MP["token"], MP["key"], "wx0000000000000000")
    outer = parse_xml(for_another_account.encrypt_message(REPLY, "n", "1").encode())
    with pytest.raises(BadMessage):
        mp_crypto().decrypt(outer["Encrypt"])
    # A frame whose appid is ours plus a suffix, or a prefix of ours, is not ours either.
    for app_id in (MP["appid"].encode() + b"x", MP["appid"].encode()[:-1], b""):
        with pytest.raises(BadMessage):
            mp_crypto().decrypt(encrypt_raw(frame(b"<xml/>", app_id)))


# "<xml/>" framed for our appid is 16 + 4 + 6 + 18 = 44 bytes: PKCS#7 adds 20 x 0x14.
GOOD_PAD = b"\x14" * 20


@pytest.mark.parametrize(
    "pad",
    [
        pytest.param(b"\x00" * 20, id="pad-byte-zero"),
        pytest.param(b"\x21" * 20, id="pad-byte-over-32"),
        pytest.param(b"\xff" * 20, id="pad-byte-255"),
        pytest.param(b"\x20" * 20, id="pad-longer-than-padding"),
        pytest.param(b"\x14" * 19 + b"\x05", id="pad-shorter-than-padding"),
        pytest.param(b"\x14" * 10 + b"\x07" + b"\x14" * 9, id="one-inner-pad-byte-changed"),
        pytest.param(b"\x00" * 19 + b"\x14", id="only-last-byte-right"),
    ],
)
def test_corrupted_padding_is_refused(pad: bytes) -> None:
    plain = frame(b"<xml/>", MP["appid"].encode(), pad=pad)
    assert len(plain) == 64 and pad != GOOD_PAD
    with pytest.raises(BadMessage):
        mp_crypto().decrypt(encrypt_raw(plain))


def test_correct_padding_built_the_same_way_decrypts() -> None:
    # The control for the cases above: same construction, the right padding.
    plain = frame(b"<xml/>", MP["appid"].encode(), pad=GOOD_PAD)
    assert mp_crypto().decrypt(encrypt_raw(plain)) == b"<xml/>"


def test_a_length_field_larger_than_the_message_is_refused() -> None:
    app_id = MP["appid"].encode()
    body = os.urandom(16) + struct.pack(">I", 10_000) + b"<xml/>" + app_id
    n = 32 - len(body) % 32
    with pytest.raises(BadMessage):
        mp_crypto().decrypt(encrypt_raw(body + bytes([n]) * n))


def _valid_ciphertext() -> bytes:
    return binascii.a2b_base64(mp_crypto().encrypt(REPLY.encode()))


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda raw: raw[:-16], id="last-block-dropped"),
        pytest.param(lambda raw: raw[16:], id="first-block-dropped"),
        pytest.param(lambda raw: raw[:-5], id="odd-length"),
        pytest.param(lambda raw: raw[:15], id="shorter-than-a-block"),
        pytest.param(lambda raw: raw[:16], id="one-block"),
        pytest.param(lambda raw: raw + b"\x00" * 16, id="block-appended"),
        pytest.param(lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), id="last-byte-flipped"),
    ],
)
def test_truncated_or_altered_ciphertext_is_refused(mangle: Callable[[bytes], bytes]) -> None:
    raw = mangle(_valid_ciphertext())
    with pytest.raises(BadMessage):
        mp_crypto().decrypt(binascii.b2a_base64(raw, newline=False).decode())


@pytest.mark.parametrize(
    "encrypted",
    ["", "   ", "!!!!", "abc", "a", "不是base64", "====", "\x00\x01", "hyzAe4Oz%%%%"],
)
def test_non_base64_is_refused(encrypted: str) -> None:
    with pytest.raises(BadMessage):
        mp_crypto().decrypt(encrypted)


def _assert_bytes_or_bad_message(encrypted: str) -> None:
    crypto = mp_crypto(previous_key=NEW_KEY)
    try:
        result = crypto.decrypt(encrypted)
    except BadMessage:
        return
    assert isinstance(result, bytes)


@given(st.binary(max_size=600))
def test_any_bytes_decrypt_or_raise_bad_message(data: bytes) -> None:
    _assert_bytes_or_bad_message(binascii.b2a_base64(data, newline=False).decode())


@given(
    st.integers(min_value=1, max_value=12).flatmap(
        lambda n: st.binary(min_size=16 * n, max_size=16 * n)
    )
)
def test_any_block_aligned_ciphertext_decrypts_or_raises_bad_message(data: bytes) -> None:
    _assert_bytes_or_bad_message(binascii.b2a_base64(data, newline=False).decode())


@given(st.text(max_size=300))
def test_any_text_decrypts_or_raises_bad_message(text: str) -> None:
    _assert_bytes_or_bad_message(text)


@given(st.data())
def test_bit_flipped_ciphertext_decrypts_or_raises_bad_message(data: st.DataObject) -> None:
    raw = bytearray(_valid_ciphertext())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    _assert_bytes_or_bad_message(binascii.b2a_base64(bytes(raw), newline=False).decode())
