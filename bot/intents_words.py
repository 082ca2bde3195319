"""The words behind each intent, compiled once (the parser runs on every message).

Matched against the compact text: NFKC, no whitespace or punctuation, and every time expression
already replaced by "|" (so 「三月」 cannot be read as a unit or a keyword). Each table lists how
liaisons and office staff actually type a request, typos included (献学 for 献血); `bot.intents`
decides the order the tables are tried in. One line per meaning, alternatives joined by "|".
"""

from __future__ import annotations

import re


def _words(*lines: str) -> re.Pattern[str]:
    return re.compile("|".join(lines), re.IGNORECASE)


# -- commands: not questions, matched before any time expression is read ---------------------
# 「绑定 483920」「绑定483920」「绑定：483920，5678」「绑定 483920 13812345678」 (last four kept);
# ASCII digits only, so a code is what the office typed into `donorbot invite`
BIND_CODE = re.compile(r"绑定\D{0,4}?(\d{4,12})(?:\D{1,12}?(\d{11}|\d{4}))?(?!\d)", re.ASCII)
CHOICE = re.compile(r"\s*(?:选择?|第)?\s*([0-9]{1,2})\s*(?:个|号|项)?\s*[.。、!！]?\s*")
QUESTION_HELP = re.compile(r"[?？]+")
UNBIND = _words("解绑|解除绑定|取消绑定|解除关联")
WHOAMI = _words(
    "我是谁|我是哪个?单位|我属于哪个?单位",
    "我绑定?的|绑定?的?是?哪|绑定?的是",
    "绑定(?:成功)?了[吗没]|查看绑定|我的绑定|当前绑定",
)
BIND = _words("绑定|绑单位")
MORE = _words(
    "(?:看看|查看|显示|给我|再)?"
    "(?:更多|下一?页|翻页|还有吗|还有呢|还有没有|继续|后面的?呢|后面还有吗|再来一页|more|next)"
    "(?:了|啊|呀|吧)?"
)
HELP = _words(
    "帮助|菜单|功能|使用说明|^help$|^menu$",
    "你?能做什么|能干[啥什么]|都能干",
    "怎么使?用|如何使?用|能查[啥什么]|可以查[啥什么]",
)

# -- another module's questions: the donor parser takes these first in the dispatcher --------
DONOR = _words(
    r"免费用|用血|用多少血|报销|减免|毫升|\d+ml|多少钱|费用",  # free blood, reimbursement
    "能献|可以献|能不能献|可不可以献|间隔|年龄|体重|感冒|洗澡|喝酒|吃药",  # eligibility
    "献血屋|献血点|献血站|哪里|在哪|地址",  # sites
    "献血证|献血[后前]|好处|注意|血型|[abo]型",  # records, advice, blood types
)

# -- office-wide questions --------------------------------------------------------------------
BEHIND = _words(
    "落后|拖后腿|倒数|垫底|靠后|进度慢|最慢|最低|最差|欠账",
    "(?:哪些|哪几个|哪几家|哪个|哪家|有哪些)单位.*?(?:没|未|差|慢|低)",
    "(?:没|未)完成的单位|谁还?(?:没|未)",
)
OFFICE_SUMMARY = _words(
    "全(?:市|区|县|州|省|旗|盟|辖区|镇|乡)|各个?单位|各区县|所有单位|全部单位",
    "总体|整体|汇总|总进度|通报|排名|排行",
)

# -- one unit's questions ---------------------------------------------------------------------
SCHEDULE = _words(
    "什么时候|啥时候|几时|何时|哪个?月|几月|哪一?天|几号",
    "献[血学](?:时间|日期|月份|安排)|时间安排|安排在|排在|轮到",
    "下次|下回|下一次|采血车|献血车",
)
PLAN_LINES = _words(
    "计划表|任务表|(?:计划|任务)(?:明细|清单|列表|安排)",
    "(?:全部|所有|整个)的?(?:任务|计划)|(?:哪些|什么|啥)任务|每个?月",
    "列出|列一下|查看计划|看计划|计划(?:是|有)?(?:怎样|怎么样|什么|啥|哪些)",
)
REMAINING = _words(
    "还差|还欠|还缺|还剩|还需|还少|剩下|剩余|剩多少|还要(?:多少|几)",
    "[差缺欠少](?:多少|几)|还有(?:多少|几).{0,6}?(?:没|未)|没献|未献|(?:距离|离)完成",
)
MONTH_PLAN = _words(
    # 「任务多少」「计划是多少」「任务分别是多少」, but not 「任务完成了多少」 (progress)
    "(?:任务|计划)(?:(?!完成|献了).){0,4}?(?:多少|几)|任务[数量]|指标",
    "要(?:献[血学]?|完成)?(?:多少|几)|需要(?:多少|几)|(?:一共|总共)(?:要|多少|几)",
    r"有(?:没有)?任务|任务(?:呢|吗|啊)?\|?$",
)
PROGRESS = _words(
    "进度|进展|达标|献了|献[血学]?多少|到哪|百分之|人数",
    "完成(?:了|得|的)?(?:没|吗|多少|几|情况|怎么?样|咋样|如何|率|百分之)",
    "(?:完成|献[血学])情况|情况(?:怎么?样|咋样|如何)",
)
# 「怎么样」 alone is chit-chat (「你最近怎么样」) unless the message is about donations or a period
PROGRESS_WEAK = _words("怎么?样|咋样|如何|多少了|几个了|情况")
PROGRESS_CONTEXT = _words(r"献|单位|我们|任务|\|")
PLAN_MENTION = _words("任务|计划")
# all that may surround a bare period in a follow-up: 「今年呢」「那上个月的呢」
FILLER_ONLY = re.compile(r"(?:那么?|呢|的|啊|呀|吗|吧|嗯|哦|我们|单位|本单位|\|)*")

# -- a unit named in an office question (「慈利县三月还差多少」) ---------------------------------
LEAD_FILLER = re.compile(
    r"^(?:你好|您好|老师好|老师|领导|请问一下|请问下|请问|麻烦问一下|麻烦问下|麻烦|想问一下|想问下"
    r"|问一下|问下|帮我查一下|帮我查下|帮我查|帮忙查一下|帮忙查下|帮我看一下|帮我看看|帮我看下"
    r"|查一下|查下|查询|看一下|看下|看看|嗯|哦|喂|那个)+"
)
# where a unit's name ends: the first question or intent word. None occurs in a unit name of
# data/seed_plans (「有」 would: 有限公司), except 「献血屋」, which is a site, not a unit.
UNIT_CUT = _words(
    "还|差|缺|欠|剩|要|是|呢|吗|的|几|哪|啥|咋|献|采血|多少|一共|总共|目前|现在",
    "完成|进度|进展|任务|计划|指标|情况|怎么|如何|什么|安排|排在|落后",
)
UNIT_SUFFIX = re.compile(
    r"(?:局|委|办|县|区|市|州|镇|乡|街道|大学|学院|学校|中学|小学|医院|公司|集团|系统|中心|部"
    r"|队|院|所|站|厂|行|社|会|处|馆|团|机构|银行|政府|校区|社区|村|场|署|厅|监狱"
    r"|联|室|段|校|店|关|协|台|库|组|门|单位|企业|组织)(?:\([^()]*\))?$"
)
# 「我们单位」「本单位」「我们局」 are the sender's own unit; 「全市」「哪些单位」 are no unit
# (「各乡镇」 is: a 张家界 plan line)
NOT_A_UNIT = re.compile(
    r"^(?:我们|咱们|咱|我|本)(?:单位|局|委|办|院|校|公司|系统|中心|部门|队)?$"
    r"|^全|^所有|[哪谁啥几]"
)
