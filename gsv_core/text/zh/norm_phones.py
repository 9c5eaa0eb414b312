"""Phone numbers in the Chinese normaliser, read digit by digit with 1 as 幺 and a pause (，) between groups.

* mobile numbers (1 + a carrier prefix + 8 digits, optionally after "+86" / "86"), the country code and the
  number separated by whitespace being separate groups;
* landlines (optional area code 010 / 02x / 0xxx with an optional "-", then 7 or 8 digits), groups split at "-";
* 400 service numbers (400-xxx-xxxx, dashes optional).

Dashed numbers usually reach this rule already rewritten by the arithmetic rule (400-820 reads 四零零减八二零 in
upstream too); only undashed or partly dashed numbers are caught here.
"""
from __future__ import annotations

import re

from .norm_numbers import digit_words
from .norm_trace import Rule

__all__ = ["PHONE_RULES"]

_MOBILE = re.compile(r"(?<!\d)(?:\+?86 ?)?1(?:[38]\d|5[0-35-9]|7[678]|9[89])\d{8}(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)(?:0(?:10|2[1-3]|[3-9]\d{2})-?)?[1-9]\d{6,7}(?!\d)")
_SERVICE_400 = re.compile(r"400-?\d{3}-?\d{4}")


def _read_groups(groups: list[str]) -> str:
    return "，".join(digit_words(group, yao=True) for group in groups)


def _mobile_sub(m: re.Match[str]) -> str:
    return _read_groups(m.group().strip("+").split())  # "+86 138..." -> 八六，幺三八...


def _dashed_sub(m: re.Match[str]) -> str:
    return _read_groups(m.group().split("-"))


PHONE_RULES: tuple[Rule, ...] = ((_MOBILE, _mobile_sub), (_LANDLINE, _dashed_sub), (_SERVICE_400, _dashed_sub))
