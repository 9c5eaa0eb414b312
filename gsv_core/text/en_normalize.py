"""English text normalisation: numbers, money, times, units and symbols spelled out, other characters dropped.

The rules are those of GPT-SoVITS' English front end (``text/english.py::text_normalize`` and
``text/en_normalization/expend.py``), reproduced rule for rule because the pretrained models were trained on their
output; quirks are kept on purpose and marked "(reference quirk)". Numbers are spelled by the ``inflect`` package.

Order of the steps (it matters): list ordinals "1. " -> "first, ", arithmetic "a + b", negative numbers,
thousands separators, clock times, measurements, pound and dollar amounts, decimals, fractions, ordinals "21st",
remaining integers (years 1001..2999 grouped), accents stripped, "%" -> " percent", everything but letters,
space and ' . , ? ! - removed, "i.e."/"e.g." expanded, a space before every inner capital, then repeated
punctuation collapsed.
"""
from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["normalize_en", "expand_en"]


@functools.lru_cache(maxsize=1)
def _engine():
    import inflect  # slow import (~1 s): only when English text is seen

    return inflect.engine()


def _words(number, **options) -> str:
    """inflect's spelling of ``number``; numbers too large for it are read digit by digit."""
    try:
        return _engine().number_to_words(number, **options)
    except Exception:  # inflect raises for numbers beyond its range (> 10**66 or so)
        return " ".join(_engine().number_to_words(int(d)) for d in str(number) if d.isdigit())


# Only these literal characters are mapped before normalising. The reference builds its pattern from escaped
# dictionary keys, so its character-class keys ("[;:：，；]" and '["’]') only match those literal strings and
# ; : ’ " are in effect dropped later instead of becoming "," and "'" (reference quirk, kept).
_PRE_MAP = {"。": ".", "！": "!", "？": "?", "[;:：，；]": ",", '["’]': "'"}
_PRE_RE = re.compile("|".join(re.escape(k) for k in _PRE_MAP))

_UNITS = {
    "m": ("meter", "meters"),
    "km": ("kilometer", "kilometers"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "ft": ("feet", "feet"),
    "L": ("liter", "liters"),
    "tbsp": ("tablespoon", "tablespoons"),
    "tsp": ("teaspoon", "teaspoons"),
    "h": ("hour", "hours"),
    "min": ("minute", "minutes"),
    "s": ("second", "seconds"),
    "°C": ("degree celsius", "degrees celsius"),
    "°F": ("degree fahrenheit", "degrees fahrenheit"),
}

_LIST_ORDINAL_RE = re.compile(r"\b([0-9]+)\. ")
_OPERAND = r"((-?)((\d+)(\.\d+)?[⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ]*)|(\.\d+[⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ]*)|([A-Za-z][⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ]*))"
_ARITH_RE = re.compile(_OPERAND + r"\s+([\+\-\×÷=])\s+" + _OPERAND)
_ARITH_WORDS = {"+": " plus ", "-": " minus ", "×": " times ", "÷": " divided by ", "=": " Equals "}
# the whitespace before the minus sign is consumed and not put back: "a -5" -> "anegative 5" (reference quirk)
_NEGATIVE_RE = re.compile(r"(?:^|\s+)(-)(\d+)")
_THOUSANDS_RE = re.compile(r"([0-9][0-9\,]+[0-9])")
_TIME_RE = re.compile(r"\b([01]?[0-9]|2[0-3]):([0-5][0-9])\b")
_UNIT_RE = re.compile(r"\b([0-9]+(\.[0-9]+)?(m|km|km/h|ft|L|tbsp|tsp|h|min|s|°C|°F))\b")
_POUNDS_BEFORE_RE = re.compile(r"£([0-9\.\,]*[0-9]+)")
_POUNDS_AFTER_RE = re.compile(r"([0-9\.\,]*[0-9]+)£")
_DOLLARS_BEFORE_RE = re.compile(r"\$([0-9\.\,]*[0-9]+)")
_DOLLARS_AFTER_RE = re.compile(r"([(0-9\.\,]*[0-9]+)\$")  # "(" in the class as in the reference
_DECIMAL_RE = re.compile(r"([0-9]+\.\s*[0-9]+)")
_FRACTION_RE = re.compile(r"([0-9]+/[0-9]+)")
_ORDINAL_RE = re.compile(r"[0-9]+(st|nd|rd|th)")
_INTEGER_RE = re.compile(r"[0-9]+")
_DISALLOWED_RE = re.compile(r"[^ A-Za-z'.,?!\-]")
_IE_RE = re.compile(r"(?i)i\.e\.")
_EG_RE = re.compile(r"(?i)e\.g\.")
_INNER_CAPITAL_RE = re.compile(r"(?<!^)(?<![\s])([A-Z])")
# a punctuation mark or blank followed by more punctuation keeps only the first character
_PUNCT_RUN_RE = re.compile(r"([!?…,.\-\s])([!?…,.\-])+")


def _list_ordinal(m: re.Match) -> str:
    return _engine().ordinal(m.group(1)) + ", "


def _arith(m: re.Match) -> str:
    return m.group(1) + _ARITH_WORDS[m.group(8)] + m.group(9)


def _negative(m: re.Match) -> str:
    return f"negative {m.group(2)}"


def _clock(m: re.Match) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    period = "a.m." if hours < 12 else "p.m."
    if hours > 12:
        hours -= 12
    hour_words = _words(hours)
    if minutes == 0:
        return f"{hour_words} o'clock {period}"
    return f"{hour_words} {_words(minutes)} {period}"


def _unit(m: re.Match) -> str:
    whole, fraction, sign = m.group(1), m.group(2), m.group(3)
    value = int(whole.replace(sign, "").replace(".", ""))
    singular = fraction is None and value == 1
    return whole.replace(sign, " " + _UNITS[sign][0 if singular else 1])


def _money(amount: str, major: tuple[str, str], minor: tuple[str, str], zero: str) -> str:
    """Shared reading of "12.5" as "12 dollars and 50 cents" (numbers stay digits; spelled later)."""
    parts = amount.split(".")
    if len(parts) > 2:
        return amount + " " + major[1]
    try:
        big = int(parts[0]) if parts[0] else 0
        small = int(parts[1].ljust(2, "0")) if len(parts) > 1 and parts[1] else 0
    except ValueError:  # stray commas/parentheses the reference would crash on
        return amount + " " + major[1]
    if big and small:
        return f"{big} {major[big != 1]} and {small} {minor[small != 1]}"
    if big:
        return f"{big} {major[big != 1]}"
    if small:
        return f"{small} {minor[small != 1]}"
    return zero


def _pounds(m: re.Match) -> str:
    return _money(m.group(1), ("pound", "pounds"), ("penny", "pence"), "zero pounds")


def _dollars(m: re.Match) -> str:
    return _money(m.group(1), ("dollar", "dollars"), ("cent", "cents"), "zero dollars")


def _decimal(m: re.Match) -> str:
    whole, digits = m.group(1).split(".")[:2]
    return whole + " point " + " ".join(digits)


def _fraction(m: re.Match) -> str:
    numerator, denominator = (int(x) for x in m.group(0).split("/"))
    head = _words(numerator)
    if denominator == 2:
        return f"{head} {'half' if numerator == 1 else 'halves'}"
    if denominator == 1:
        return head
    tail = _engine().ordinal(_words(denominator))
    if numerator > 1:
        tail += "s"
    return f"{head} {tail}"


def _ordinal(m: re.Match) -> str:
    try:
        return _engine().number_to_words(m.group(0))
    except Exception:
        return _words(int(m.group(0)[:-2]))


def _integer(m: re.Match) -> str:
    value = int(m.group(0))
    if 1000 < value < 3000:
        if value == 2000:
            return "two thousand"
        if 2000 < value < 2010:
            return "two thousand " + _words(value % 100)
        if value % 100 == 0:
            return _words(value // 100) + " hundred"
        return _words(value, andword="", zero="oh", group=2).replace(", ", " ")
    return _words(value, andword="")


def expand_en(text: str) -> str:
    """Spell out numbers, amounts, times and units and drop characters English g2p cannot read."""
    text = _LIST_ORDINAL_RE.sub(_list_ordinal, text)
    while _ARITH_RE.search(text):
        text = _ARITH_RE.sub(_arith, text)
    text = _NEGATIVE_RE.sub(_negative, text)
    text = _THOUSANDS_RE.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _TIME_RE.sub(_clock, text)
    text = _UNIT_RE.sub(_unit, text)
    text = _POUNDS_BEFORE_RE.sub(_pounds, text)
    text = _POUNDS_AFTER_RE.sub(_pounds, text)
    text = _DOLLARS_BEFORE_RE.sub(_dollars, text)
    text = _DOLLARS_AFTER_RE.sub(_dollars, text)
    text = _DECIMAL_RE.sub(_decimal, text)
    text = _FRACTION_RE.sub(_fraction, text)
    text = _ORDINAL_RE.sub(_ordinal, text)
    text = _INTEGER_RE.sub(_integer, text)
    text = "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")
    text = text.replace("%", " percent")
    text = _DISALLOWED_RE.sub("", text)
    text = _IE_RE.sub("that is", text)
    text = _EG_RE.sub("for example", text)
    return _INNER_CAPITAL_RE.sub(r" \1", text)


def normalize_en(text: str) -> str:
    """The normalised English text that g2p reads (see the module docstring)."""
    text = _PRE_RE.sub(lambda m: _PRE_MAP[m.group(0)], text)
    text = expand_en(text)
    return _PUNCT_RUN_RE.sub(r"\1", text)
