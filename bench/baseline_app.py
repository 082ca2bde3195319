"""The webhook benchmark's baseline: a bare aiohttp app that answers a fixed XML reply.

It reads the request body (any real webhook must) and returns a text reply of the
same shape and about the same size as donorbot's help reply, with no signature
check, parsing, storage or templates.  Run it exactly as the server under test is
run (`taskset -c 0 python bench/baseline_app.py --port P`), so the ratio of the two
request rates says what donorbot's own work costs on one core.
"""

from __future__ import annotations

import argparse

from aiohttp import web

REPLY = (
    "<xml><ToUserName><![CDATA[oBench0000000000000000000001]]></ToUserName>"
    "<FromUserName><![CDATA[gh_donorbot]]></FromUserName>"
    "<CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[我是基准测试市献血办的小助手，可以这样问我：\n"
    "· 帮助 —— 查看我能做什么\n"
    "单位联络员请先回复「绑定 邀请码」完成绑定（邀请码由献血办发放）。]]></Content></xml>"
).encode()


async def webhook(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=REPLY, content_type="application/xml")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/wechat/{jurisdiction}", webhook)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
