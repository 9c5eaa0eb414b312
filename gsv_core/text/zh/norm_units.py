"""Units in the Chinese normaliser: unit ranges written with "~", temperatures and unit abbreviations.

* ``5%~10%``, ``3cm~5cm``: the "~" between two numbers that both carry a unit is read 至 (the units themselves are
  read by the later rules);
* ``-3°C``, ``25℃``, ``5度``, ``5摄氏度``: 零下三度, 二十五度, 五度, 五度 (upstream's reading; see below);
* ``kg``, ``cm²``, ``m``, ``s``...: replaced by their Chinese reading wherever they occur in the sentence, in the
  order of ``data/zh_unit_abbreviations.tsv`` (so "mm" reads 米米 and a stray "s" in a Latin word becomes 秒, as
  upstream does).
"""
from __future__ import annotations

import re
from typing import Callable

from .norm_numbers import number_words
from .norm_tables import unit_abbreviations
from .norm_trace import Rule

__all__ = ["TEMPERATURE_RULE", "UNIT_ABBREVIATION_RULES", "UNIT_RANGE_RULE"]

# the units that make "a~b" a unit range, in the order they are tried
_RANGE_UNITS = ("%", "°C", "℃", "度", "摄氏度", "cm2", "cm²", "cm3", "cm³", "cm", "db", "ds", "kg", "km", "m2", "m²",
                "m³", "m3", "ml", "m", "mm", "s")
_UNIT = "(?:" + "|".join(map(re.escape, _RANGE_UNITS)) + ")"
# possessive digits: a unit never starts with a digit, so giving digits back could not help a match (speed only;
# no lookbehind here, since a match can end inside a digit run after "m2"/"cm3"...)
_VALUE = r"(?:-?\d++(?:\.\d++)?|\.\d++)"
_UNIT_RANGE = re.compile(_VALUE + _UNIT + "~" + _VALUE + _UNIT)

# "(?<!\d)": a match cannot start inside a digit run (it would have started earlier; matches end in a unit)
_TEMPERATURE = re.compile(r"(?P<neg>-?)(?<!\d)(?P<num>\d++(?:\.\d++)?)(?:°C|℃|度|摄氏度)")


def _unit_range_sub(m: re.Match[str]) -> str:
    return m.group().replace("~", "至")


def _temperature_sub(m: re.Match[str]) -> str:
    # upstream means to keep 摄氏度 but tests the wrong regex group, so every unit is read 度; kept for parity
    return ("零下" if m["neg"] else "") + number_words(m["num"]) + "度"


def _constant(reading: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: reading


UNIT_RANGE_RULE: Rule = (_UNIT_RANGE, _unit_range_sub)
TEMPERATURE_RULE: Rule = (_TEMPERATURE, _temperature_sub)
#: plain substring replacements, one after the other
UNIT_ABBREVIATION_RULES: tuple[Rule, ...] = tuple(
    (re.compile(re.escape(abbreviation)), _constant(reading)) for abbreviation, reading in unit_abbreviations()
)
