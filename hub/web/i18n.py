"""The pages' words in Chinese (the default) and English; the toggle sets a ``lang`` cookie."""

from __future__ import annotations

WORDS: dict[str, tuple[str, str]] = {
    "app": ("一证通办 · 材料共享复用", "OneCert Hub"),
    "console": ("综合窗口", "Window console"),
    "steward": ("数据管理", "Steward dashboard"),
    "me": ("我的用证记录", "Who used my data"),
    "signout": ("退出", "Sign out"),
    "signin": ("登录", "Sign in"),
    "signin_help": (
        "请向管理员索取一次性登录链接（onecert console link）。链接只能使用一次，15 分钟内有效。",
        "Ask your administrator for a one-time sign-in link (onecert console link). A link works once, "
        "within 15 minutes.",
    ),
    "id": ("身份证号 / 统一社会信用代码", "ID number / unified social credit code"),
    "id_hint": ("可扫描或输入；输入时即校验", "Scan or type; checked as you type"),
    "plan": ("事项 / 一件事", "Service item / bundle"),
    "bundles": ("一件事（联办）", "Life-event bundles"),
    "items": ("单个事项", "Service items"),
    "case_ref": ("办件号", "Case reference"),
    "purpose": ("用途", "Purpose"),
    "lookup": ("查询", "Look up"),
    "checklist": ("材料清单", "Checklist"),
    "decision": ("受理结论", "Decision"),
    "accept_now": ("可以即时受理", "Can be accepted now"),
    "accept_on_promise": ("可容缺受理（需承诺）", "Can be accepted on a promise"),
    "cannot_accept": ("暂不能受理", "Cannot be accepted yet"),
    "on_file_fresh": ("已共享复用", "On file, reused"),
    "on_file_stale": ("已有但需更新", "On file but stale"),
    "missing_waivable": ("缺失，可容缺", "Missing, waivable"),
    "missing_blocking": ("缺失，须提交", "Missing, required"),
    "issued_in_bundle": ("本次联办中产生", "Issued within this bundle"),
    "missing_optional": ("缺失（可选）", "Missing (optional)"),
    "material": ("材料", "Material"),
    "state": ("状态", "State"),
    "issuer": ("出具单位", "Issuer"),
    "issued_at": ("出具日期", "Issued"),
    "valid_until": ("有效期至", "Valid until"),
    "serves": ("用于事项", "Serves"),
    "preview": ("预览", "Preview"),
    "promise": ("记录承诺", "Record a promise"),
    "promised": ("已承诺，期限", "Promised, due"),
    "refresh": ("向部门刷新", "Refresh from source"),
    "receipt": ("复用回执", "Reuse receipt"),
    "print": ("打印", "Print"),
    "download": ("下载（含签名）", "Download (signed)"),
    "signature": ("中枢签名", "Hub signature"),
    "nothing": ("未查到可复用的材料", "Nothing on file that this window may see"),
    "invalid_id": ("证件号码无效", "Invalid ID"),
    "when": ("时间", "When"),
    "who": ("使用单位", "Who"),
    "action": ("操作", "Action"),
    "outcome": ("结果", "Outcome"),
    "no_usage": ("暂无用证记录", "Nobody has used your data yet"),
    "sources": ("数据源", "Sources"),
    "last_run": ("最近同步", "Last run"),
    "freshness": ("新鲜度", "Freshness"),
    "pass_rate": ("通过率", "Pass rate"),
    "loaded": ("入库", "Loaded"),
    "quarantined": ("隔离", "Quarantined"),
    "quarantine": ("隔离区", "Quarantine"),
    "open_rows": ("待处理", "Open"),
    "rules": ("违反规则", "Rules broken"),
    "resolve": ("修正并重新校验", "Correct and re-validate"),
    "discard": ("丢弃", "Discard"),
    "reason": ("原因", "Reason"),
    "conflicts": ("身份信息冲突", "Identity conflicts"),
    "airflow": ("Airflow 调度界面", "Airflow UI"),
    "data_docs": ("数据质量文档", "Data Docs"),
    "trends": ("趋势", "Trends"),
    "fresh": ("正常", "fresh"),
    "stale": ("超时", "stale"),
    "never": ("从未同步", "never synced"),
    "back": ("返回", "Back"),
    "saved": ("已保存", "Saved"),
}


def translator(lang: str) -> object:
    index = 1 if lang == "en" else 0

    def t(key: str) -> str:
        pair = WORDS.get(key)
        return pair[index] if pair else key

    return t
