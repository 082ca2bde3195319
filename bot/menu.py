"""The account's custom menu: buttons whose click events ask the main questions.

Each key maps to the intent a typed message would have, so a click and
「这个月还差多少」 reach the same handler (bot/filters.py `Intent`).
"""

from __future__ import annotations

from typing import Any

# click key → (intent, button label)
MENU_KEYS: dict[str, tuple[str, str]] = {
    "QUOTA_REMAINING": ("remaining", "本月还差多少"),
    "QUOTA_YEAR": ("year", "今年完成情况"),
    "QUOTA_SCHEDULE": ("schedule", "献血月份"),
    "QUOTA_PLAN": ("plan_lines", "全年计划"),
    "WHOAMI": ("whoami", "我的绑定"),
    "HELP": ("help", "使用帮助"),
}


def menu_definition() -> dict[str, Any]:
    """The JSON body of /cgi-bin/menu/create (at most 3 buttons, 5 sub-buttons each)."""

    def click(key: str) -> dict[str, str]:
        return {"type": "click", "name": MENU_KEYS[key][1], "key": key}

    return {
        "button": [
            {
                "name": "单位进度",
                "sub_button": [
                    click("QUOTA_REMAINING"),
                    click("QUOTA_YEAR"),
                    click("QUOTA_SCHEDULE"),
                    click("QUOTA_PLAN"),
                ],
            },
            {"name": "我的", "sub_button": [click("WHOAMI")]},
            click("HELP"),
        ]
    }
