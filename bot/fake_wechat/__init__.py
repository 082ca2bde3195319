"""A fake of WeChat's server API, written from the documented behaviour, for tests and demos.

It issues and checks access_tokens (`/cgi-bin/token`, `/cgi-bin/stable_token`, WeCom
`/cgi-bin/gettoken`), accepts customer-service and WeCom text messages under WeChat's
rules (the 48-hour window, 5 messages per window), and answers with WeChat's errcodes.
`/_fake/...` admin endpoints let a test register user interactions, inject faults
(errcodes, HTTP errors, latency, dropped connections), read what was sent and reset.
Time comes from the injected `Clock`, so expiry and windows are testable.
"""

from bot.fake_wechat.app import FAKE_KEY, create_fake_app, run_fake
from bot.fake_wechat.state import FakeWeChat, Fault, WeChatError

__all__ = ["FAKE_KEY", "FakeWeChat", "Fault", "WeChatError", "create_fake_app", "run_fake"]
