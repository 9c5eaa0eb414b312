"""What the rows of a cleaning report mean, in English and Chinese (the Dataset and Finetune tabs).

The report keeps the rule ids of :mod:`gsv_core.finetune.data` (``too_short``, ``low_snr`` …: what the CLI, the
report files and the docs call them) in its first column; :func:`meaning` adds a short description in the language
of the request being served (``say``). Rows ``= kept`` … are the totals of the report."""
from __future__ import annotations

from typing import Any

from .i18n import say

#: rule id or total -> (English, Chinese)
RULE_TEXT: dict[str, tuple[str, str]] = {
    # totals
    "kept": ("clips kept for training", "保留用于训练的片段"),
    "dropped": ("clips dropped by the rules below", "被下列规则剔除的片段"),
    "train": ("training split", "训练集"),
    "val": ("validation split", "验证集"),
    "test": ("test split (checkpoint selection)", "测试集（用于挑选模型）"),
    "refpool": ("clean clips for the reference pool (3–5 s by default)", "进入参考池的干净片段（默认 3–5 秒）"),
    # rows that cannot be used at all
    "invalid_row": ("malformed row (path|speaker|lang|text)", "行格式错误（应为 路径|说话人|语言|文本）"),
    "unsupported_language": ("language not supported", "不支持的语言"),
    "missing_audio": ("audio file not found or not allowed", "找不到音频文件或不允许读取"),
    "duplicate": ("the same audio listed twice", "同一音频重复出现"),
    "unreadable_audio": ("audio cannot be decoded", "音频无法解码"),
    # cleaning rules
    "empty_text": ("empty transcript", "标注文本为空"),
    "text_mismatch": ("text script does not fit the row's language", "文本字符与该行语言不符"),
    "too_short": ("shorter than the minimum duration", "时长短于下限"),
    "too_long": ("longer than the maximum duration", "时长超过上限"),
    "clipping": ("clipped samples (distortion)", "削波失真"),
    "too_much_silence": ("mostly silence", "静音占比过高"),
    "long_lead_tail_silence": ("long silence at the start or end", "开头或结尾静音过长"),
    "low_snr": ("noisy: SNR below the limit", "噪声大：信噪比低于下限"),
    "implausible_cps": ("speaking rate does not fit the text", "语速与文本不符"),
    "energy_outlier": ("loudness unlike the speaker's other clips", "音量与该说话人其他片段差异过大"),
    "f0_outlier": ("pitch unlike the speaker's other clips", "音高与该说话人其他片段差异过大"),
    "asr_mismatch": ("ASR heard different words", "语音识别结果与文本不符"),
}

#: the report table's columns (plain English headers; the last one is the translated meaning)
REPORT_COLUMNS = ["group / rule", "clips", "seconds", "only reason", "meaning"]


def meaning(rule: Any) -> str:
    """The description of a report row's first cell (``too_short`` or ``= kept``) in the request's language."""
    key = str(rule or "").removeprefix("= ").strip()
    text = RULE_TEXT.get(key)
    return say(*text) if text else ""


def with_meaning(rows: list[list[Any]]) -> list[list[Any]]:
    """Report rows with the meaning of their rule appended as the last cell."""
    return [list(r) + [meaning(r[0] if r else "")] for r in rows]
