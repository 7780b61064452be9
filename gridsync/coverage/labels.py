"""The labels of coverage reports (user-facing: Chinese by default, English on request): levels,
service kinds and violation kinds, as the CLI, the exports and the digests print them."""

from __future__ import annotations

LEVEL_LABELS = {
    "zh": {
        "member": "成员",
        "branch": "党支部",
        "grid": "网格",
        "community": "社区",
        "street": "街道",
        "district": "区",
    },
    "en": {
        "member": "member",
        "branch": "branch",
        "grid": "grid",
        "community": "community",
        "street": "street",
        "district": "district",
    },
}
KIND_LABELS = {
    "zh": {
        "policy": "政策宣传",
        "opinion": "收集意见建议",
        "hardship": "帮困解难",
        "safety": "安全隐患排查",
        "dispute": "矛盾纠纷调解",
        "environment": "环境卫生",
    },
    "en": {
        "policy": "policy publicity",
        "opinion": "opinions",
        "hardship": "hardship help",
        "safety": "safety check",
        "dispute": "dispute mediation",
        "environment": "environment",
    },
}
TAG_LABELS = {
    "zh": {
        "elderly_alone": "独居老人",
        "disabled": "残疾",
        "low_income": "低保",
        "renter": "租户",
    },
    "en": {
        "elderly_alone": "elderly living alone",
        "disabled": "disabled",
        "low_income": "low income",
        "renter": "renter",
    },
}
VIOLATION_LABELS = {
    "zh": {
        "unassigned": "未落实联系党员",
        "overdue": "本周期未走访",
        "contacted_by_others_only": "仅由他人走访",
        "priority_overdue": "重点户逾期未走访",
        "member_under_min": "联系户数不足",
        "member_over_cap": "联系户数超上限",
    },
    "en": {
        "unassigned": "unassigned",
        "overdue": "overdue",
        "contacted_by_others_only": "contacted by others only",
        "priority_overdue": "priority overdue",
        "member_under_min": "member under minimum",
        "member_over_cap": "member over cap",
    },
}


def label(table: dict[str, dict[str, str]], lang: str, key: str) -> str:
    """``key``'s label in ``lang`` (Chinese for an unknown language); the key itself when the
    table has no label for it (a community's own service kind, say)."""
    return table.get(lang, table["zh"]).get(key, key)
