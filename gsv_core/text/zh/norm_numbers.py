"""Numbers read out in Chinese words, and the number rules of the Chinese normaliser.

Reading conventions (those of GPT-SoVITS' PaddleSpeech-derived normaliser, reproduced exactly because pretrained
models were trained on its output):

* cardinals use 十 百 千 万 亿 with a single 零 for each run of skipped places, and a leading 一十 shortened to 十;
  above 亿 the part in front of 亿 is read recursively (10^16 -> 一亿亿);
* decimals are read digit by digit after 点; trailing zeros of the fraction collapse to one 零 (3.200 -> 三点二零);
* codes (three or more digits not caught by another rule, phone numbers) are read digit by digit with 一 -> 幺;
* a number right before a measure word is a quantity, and a bare 二 becomes 两 there.
"""
from __future__ import annotations

import re

from .norm_tables import measure_words
from .norm_trace import Rule

__all__ = [
    "ARITHMETIC_RULE",
    "DIGIT_WORDS",
    "FRACTION_PERCENT_RULES",
    "NUMBER_RULES",
    "POWER_RULE",
    "cardinal_words",
    "digit_words",
    "number_words",
    "signed_number_words",
]

DIGIT_WORDS = "零一二三四五六七八九"

# place values, largest first: (number of digits below the unit, unit character)
_PLACES = ((8, "亿"), (4, "万"), (3, "千"), (2, "百"), (1, "十"))

# superscripts that mark a power ("x²", "2ⁿ") and what they stand for
_SUPERSCRIPTS = {"⁰": "0", "¹": "1", "²": "2", "³": "3", "⁴": "4", "⁵": "5", "⁶": "6", "⁷": "7", "⁸": "8", "⁹": "9",
                 "ˣ": "x", "ʸ": "y", "ⁿ": "n"}
_SUP = "[" + "".join(_SUPERSCRIPTS) + "]"

_OPERATOR_WORDS = {"+": "加", "-": "减", "×": "乘", "÷": "除", "=": "等于"}

# a number as the rules see it: optional minus, digits, optional fraction
_NUM = r"-?\d+(?:\.\d+)?"

# Speed without changing what matches: a long digit run would make the rules below quadratic or worse (each start
# position re-reads the run and backtracks through it). "(?<!\d)" before a leading "\d+" is safe where the rule's
# own matches never end inside a digit run (a match starting mid-run would otherwise have started one digit
# earlier), and a possessive "\d++" is safe where the next token can never be a digit.


def digit_words(digits: str, yao: bool = False) -> str:
    """Read a digit string digit by digit ("0017" -> 零零一七); ``yao`` reads 1 as 幺, as in codes and phone numbers."""
    words = "".join(DIGIT_WORDS[int(d)] for d in digits)
    return words.replace("一", "幺") if yao else words


def _place_words(digits: str) -> str:
    """Words for a digit string that may carry leading zeros; those zeros become one 零 before the first digit."""
    significant = digits.lstrip("0")
    if not significant:
        return ""
    zero = "零" if len(significant) < len(digits) else ""
    if len(significant) == 1:
        return zero + DIGIT_WORDS[int(significant)]
    if len(significant) > 8:
        # 亿 splits off the last eight digits again and again; done as a loop so that very long numbers cannot
        # exhaust the recursion limit (upstream's recursion would)
        head = (len(significant) - 1) % 8 + 1
        groups = (significant[i:i + 8] for i in range(head, len(significant), 8))
        return zero + _place_words(significant[:head]) + "".join("亿" + _place_words(g) for g in groups)
    below, unit = next(place for place in _PLACES if place[0] < len(significant))
    return zero + _place_words(significant[:-below]) + unit + _place_words(significant[-below:])


def cardinal_words(digits: str) -> str:
    """Read an unsigned integer string as a cardinal ("1205" -> 一千二百零五, "0" -> 零, "" -> "")."""
    if not digits:
        return ""
    significant = digits.lstrip("0")
    if not significant:
        return DIGIT_WORDS[0]
    words = _place_words(significant)
    return words[1:] if words.startswith("一十") else words


def number_words(number: str) -> str:
    """Read an unsigned number with an optional fraction ("12.50" -> 十二点五零, ".5" -> 零点五)."""
    whole, _, fraction = number.partition(".")
    words = cardinal_words(whole)
    if fraction.endswith("0"):
        fraction = fraction.rstrip("0") + "0"
    if fraction:
        words = (words or DIGIT_WORDS[0]) + "点" + digit_words(fraction)
    return words


def signed_number_words(number: str) -> str:
    """Like :func:`number_words`, with a leading "-" read as 负."""
    if number.startswith("-"):
        return "负" + number_words(number[1:])
    return number_words(number)


# --- arithmetic and powers --------------------------------------------------------------------------------------

_OPERAND = rf"(?:-?(?<!\d)\d++(?:\.\d++)?{_SUP}*|\.\d+{_SUP}*|[A-Za-z]{_SUP}*)"
_ARITHMETIC = re.compile(rf"(?P<left>{_OPERAND})(?P<op>[+\-×÷=])(?P<right>{_OPERAND})")
_POWER = re.compile(f"{_SUP}+")


def _arithmetic_sub(match: re.Match[str]) -> str:
    return match["left"] + _OPERATOR_WORDS[match["op"]] + match["right"]


def _power_sub(match: re.Match[str]) -> str:
    return "的" + "".join(_SUPERSCRIPTS[c] for c in match.group()) + "次方"


#: + - × ÷ = between two operands (numbers, or single Latin letters such as the "i-F" of "Wi-Fi") spelled out. One
#: pass cannot see a chain like 1+2+3 completely (the middle operand belongs to the first match): the caller
#: repeats it until nothing matches.
ARITHMETIC_RULE: Rule = (_ARITHMETIC, _arithmetic_sub)

#: a run of superscripts becomes 的<exponent>次方; digits in the exponent are read by the later number rules
POWER_RULE: Rule = (_POWER, _power_sub)


# --- the number rules after dates, times, units and phone numbers -----------------------------------------------

_FRACTION = re.compile(r"(?P<neg>-?)(?<!\d)(?P<num>\d++)/(?P<den>\d+)")
_PERCENT = re.compile(r"(?P<neg>-?)(?<!\d)(?P<num>\d++(?:\.\d++)?)%")
_NUMBER_RANGE = re.compile(rf"(?<![\d+\-×÷=])(?P<a>{_NUM})[-~](?P<b>{_NUM})(?![\d+\-×÷=])")
_NEGATIVE_INTEGER = re.compile(r"-(?P<num>\d+)")
_DOTTED_VERSION = re.compile(r"(?<!\d)\d++(?:\.\d+){2,}")
_DECIMAL = re.compile(r"(?P<neg>-?)(?<!\d)(?P<num>\d++\.\d+)|\.(?P<frac>\d+)")
_CODE = re.compile(r"\d{3,}")
_PLAIN_NUMBER = re.compile(rf"(?P<neg>-?)(?P<num>\d+(?:\.\d+)?)|\.(?P<frac>\d+)")
# longest measure words first, so that the unit kept in the output is the whole word ("千克", not "千")
_QUANTITY = re.compile(r"(?<!\d)(?P<num>\d++)(?P<about>[多余几+])?(?P<unit>"
                       + "|".join(map(re.escape, sorted(set(measure_words()), key=lambda w: (-len(w), w)))) + ")")


def _fraction_sub(m: re.Match[str]) -> str:
    return ("负" if m["neg"] else "") + number_words(m["den"]) + "分之" + number_words(m["num"])


def _percent_sub(m: re.Match[str]) -> str:
    return ("负" if m["neg"] else "") + "百分之" + number_words(m["num"])


def _range_sub(m: re.Match[str]) -> str:
    return signed_number_words(m["a"]) + "到" + signed_number_words(m["b"])


def _version_sub(m: re.Match[str]) -> str:
    return "".join("点" if c == "." else DIGIT_WORDS[int(c)] for c in m.group())


def _number_sub(m: re.Match[str]) -> str:
    if m["frac"] is not None:  # ".5": the minus sign, if any, is left for the symbol rules
        return number_words("." + m["frac"])
    return ("负" if m["neg"] else "") + number_words(m["num"])


def _quantity_sub(m: re.Match[str]) -> str:
    words = number_words(m["num"])
    if words == "二":
        words = "两"
    about = "多" if m["about"] == "+" else (m["about"] or "")
    return words + about + m["unit"]


def _negative_sub(m: re.Match[str]) -> str:
    return "负" + number_words(m["num"])


def _code_sub(m: re.Match[str]) -> str:
    return digit_words(m.group(), yao=True)


#: n/m -> m分之n and n% -> 百分之n (both with an optional leading minus read as 负)
FRACTION_PERCENT_RULES: tuple[Rule, ...] = ((_FRACTION, _fraction_sub), (_PERCENT, _percent_sub))

#: everything numeric left once dates, times, units and phone numbers are read, in this order: ranges ("3~5" ->
#: 三到五), negative integers, dotted version numbers (digit by digit), decimals, quantities before measure words,
#: codes of three or more digits (digit by digit, 幺 for 1), and finally any remaining number as a cardinal
NUMBER_RULES: tuple[Rule, ...] = (
    (_NUMBER_RANGE, _range_sub),
    (_NEGATIVE_INTEGER, _negative_sub),
    (_DOTTED_VERSION, _version_sub),
    (_DECIMAL, _number_sub),
    (_QUANTITY, _quantity_sub),
    (_CODE, _code_sub),
    (_PLAIN_NUMBER, _number_sub),
)
