"""A fake of WeChat's server API, written from the documented behaviour, for tests and demos.

It issues and checks access_tokens (`/cgi-bin/token`, `/cgi-bin/stable_token`, WeCom
`/cgi-bin/gettoken`) and accepts messages under WeChat's rules, answering with WeChat's
errcodes:

- customer-service messages (`/cgi-bin/message/custom/send`): the 48-hour window, 5
  messages per window; WeCom app messages (`/cgi-bin/message/send`);
- template messages (`/cgi-bin/message/template/send`): 40003 without an openid, 40037
  without a template_id, 47003 for a data value that is not {"value": str}; values
  longer than 20 characters are accepted and recorded both in full (`payload`) and as
  shown (`shown`: cut to 20 characters + 「…」, without `first`/`remark`, which WeChat
  stopped showing in May 2023; WeChat counts a run of ASCII letters or digits as one
  character, the fake counts every character). A repeated (openid, client_msg_id)
  within 10 minutes is not sent again: the answer carries the first msgid and
  `dropped_repeats` counts it. A daily quota per account and API (template: 100,000;
  set with `quotas=` or /_fake/quota), counted on Beijing days, answers 45009;
- subscription notices (`/cgi-bin/message/subscribe/bizsend`): only what the user has
  accepted gets through, else 43101. The fake models acceptance per (account, user,
  template): user state "subscribed_template:<tid>" grants `times` notices (default 1,
  a one-time subscription; null: long-term), "unsubscribed_template:<tid>" withdraws
  it. Keywords typed by name (thing1 ≤ 20 characters, phrase ≤ 5, …) refuse longer
  values with 47003.

Users: every openid is a follower unless /_fake/users (or `set_user_state`) says
"unsubscribed" (template 43004, custom 45015), "blocked" (43019), "refused" (48002:
the user turned messages off) or "invalid" (40003); subscription notices to anyone
but a follower get 43101.

Faults (/_fake/faults): count-based (the next `times` requests to a path), time-based
(`seconds`: every request to the path for that long by the fake's clock) and per user
(`openids`: those recipients, always or for `seconds`) — errcodes, HTTP status,
latency, dropped connections. Optionally a template send is reported to the account's
server as a signed TEMPLATESENDJOBFINISH event (/_fake/callbacks). Messages are
recorded in O(1) per send and indexed by recipient; /_fake/messages filters and pages
them and /_fake/stats counts them. Time comes from the injected `Clock`, so expiry,
windows, quotas and timed faults are testable. docs/fake-wechat.md lists the admin API.
"""

from bot.fake_wechat.app import FAKE_KEY, create_fake_app, run_fake
from bot.fake_wechat.state import (
    CUSTOM_PATH,
    SUBSCRIBE_PATH,
    TEMPLATE_PATH,
    FakeWeChat,
    Fault,
    MessageLog,
    WeChatError,
)

__all__ = [
    "CUSTOM_PATH",
    "FAKE_KEY",
    "SUBSCRIBE_PATH",
    "TEMPLATE_PATH",
    "FakeWeChat",
    "Fault",
    "MessageLog",
    "WeChatError",
    "create_fake_app",
    "run_fake",
]
