"""Dates and clock times in the Chinese normaliser.

* ``2024年3月15日`` / ``24年`` / ``2024年15号``: the year digit by digit, month and day as cardinals;
* ``2025/06/30``, ``2025-06-30``, ``2025.06.30``: the same reading with 年 月 日 added (both separators must match);
* ``8:05``, ``21:30:10``: 八点零五分, 二十一点半十秒 (":30" is 半; zero minutes/seconds are not read);
* ``8:30-12:00`` / ``8:30~12:00``: the two times joined by 至.
"""
from __future__ import annotations

import re

from .norm_numbers import DIGIT_WORDS, cardinal_words, digit_words, number_words
from .norm_trace import Rule

__all__ = ["DATE_RULES", "TIME_RULES"]

_CN_DATE = re.compile(
    r"(?P<year>\d{4}|\d{2})年"
    r"(?:(?P<month>0?[1-9]|1[0-2])月)?"
    r"(?:(?P<day>0?[1-9]|[12][0-9]|30|31)(?P<day_mark>[日号]))?"
)
_NUMERIC_DATE = re.compile(
    r"(?P<year>\d{4})(?P<sep>[- /.])(?P<month>0[1-9]|1[012])(?P=sep)(?P<day>0[1-9]|[12][0-9]|3[01])"
)

_CLOCK = r"(?P<h{n}>[01]?[0-9]|2[0-3]):(?P<m{n}>[0-5][0-9])(?::(?P<s{n}>[0-5][0-9]))?"
_TIME = re.compile(_CLOCK.format(n=1))
_TIME_RANGE = re.compile(_CLOCK.format(n=1) + "[~-]" + _CLOCK.format(n=2))


def _cn_date_sub(m: re.Match[str]) -> str:
    words = digit_words(m["year"]) + "年"
    if m["month"]:
        words += cardinal_words(m["month"]) + "月"
    if m["day"]:
        words += cardinal_words(m["day"]) + m["day_mark"]
    return words


def _numeric_date_sub(m: re.Match[str]) -> str:
    return f"{digit_words(m['year'])}年{cardinal_words(m['month'])}月{cardinal_words(m['day'])}日"


DATE_RULES: tuple[Rule, ...] = ((_CN_DATE, _cn_date_sub), (_NUMERIC_DATE, _numeric_date_sub))


def _padded_words(two_digits: str) -> str:
    """Minutes and seconds keep a spoken leading zero: "05" -> 零五."""
    words = number_words(two_digits.lstrip("0"))
    return DIGIT_WORDS[0] + words if two_digits.startswith("0") else words


def _clock_words(hour: str, minute: str, second: str | None, half_hour: bool) -> str:
    words = number_words(hour) + "点"
    if minute.lstrip("0"):
        words += "半" if half_hour else _padded_words(minute) + "分"
    if second and second.lstrip("0"):
        words += _padded_words(second) + "秒"
    return words


def _time_sub(m: re.Match[str]) -> str:
    return _clock_words(m["h1"], m["m1"], m["s1"], int(m["m1"]) == 30)


def _time_range_sub(m: re.Match[str]) -> str:
    first = _clock_words(m["h1"], m["m1"], m["s1"], int(m["m1"]) == 30)
    # upstream decides "半" for the end time by looking at the START minute; kept, the models learned it that way
    second = _clock_words(m["h2"], m["m2"], m["s2"], int(m["m1"]) == 30)
    return first + "至" + second


#: time ranges first, so that their two halves are not read as separate times
TIME_RULES: tuple[Rule, ...] = ((_TIME_RANGE, _time_range_sub), (_TIME, _time_sub))
