"""Japanese front end: text -> phones with prosody marks, as GPT-SoVITS' ``clean_text(text, "ja", version)``.

    from gsv_core.text.ja import clean_ja
    phones, word2ph, norm_text = clean_ja("今日は良い天気ですね。", "v2")     # word2ph is always None

Pipeline (its results must equal upstream's phone for phone, so every quirk below is deliberate):

1. ``norm_text``: runs of the half-width marks ``! ? … , . -`` collapse to their first mark; nothing else is
   normalised (numbers, dates and currency go to OpenJTalk as written).
2. ``％`` is spelled パーセント and the text is lower-cased. It is then cut at every character outside
   :data:`_WORD_RANGES` (Latin letters, decimal digits, 々, kana, CJK U+4E00-9FFF, full-width Latin/digits 1-9,
   half-width katakana). Each piece goes through OpenJTalk (MeCab + NJD + full-context labels) and
   :func:`prosody_phones`; each cut character is a phone of its own (a blank is dropped), with ``、。！？：；，·``
   and the line break mapped to ``, . ! ? , , , , .``.
3. Phones missing from the version's symbol table become ``UNK``: every accent-phrase boundary ``#`` (in neither
   table), ``[``/``]`` in v1, brackets, emoji, ``%``, ``¥``...

OpenJTalk runs with a dictionary found by :func:`find_dictionary` (``OPEN_JTALK_DICT_DIR``, pyopenjtalk's own
folder, or Debian's ``open-jtalk-mecab-naist-jdic``; never downloaded) and upstream's user dictionary
(``data/ja_userdict.csv.xz``: English words in full-width letters with katakana readings, which OpenJTalk needs
because it turns half-width ASCII into full width before MeCab), compiled once into a cache folder. An extra
user dictionary in OpenJTalk's CSV format can be added with ``GSV_JA_USER_DICT=/path/words.csv`` (compiled
together with upstream's).
"""
from __future__ import annotations

import hashlib
import logging
import lzma
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional

from gsv_core.text.optional import MissingDataError, require
from gsv_core.text.split import TextError, replace_consecutive_punctuation
from gsv_core.text.symbols import UNKNOWN, normalize_symbol_version, symbol_to_id

__all__ = [
    "DEBIAN_DICT_DIR",
    "DEBIAN_PACKAGE",
    "JapaneseError",
    "clean_ja",
    "find_dictionary",
    "g2p_ja",
    "normalize_ja",
    "prosody_phones",
]

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
USER_DICT_CSV_XZ = DATA_DIR / "ja_userdict.csv.xz"
#: where Debian's open-jtalk-mecab-naist-jdic puts the dictionary (byte-identical to pyopenjtalk's 1.11 download)
DEBIAN_DICT_DIR = Path("/var/lib/mecab/dic/open-jtalk/naist-jdic")
DEBIAN_PACKAGE = "open-jtalk-mecab-naist-jdic"
PYOPENJTALK_VERSION = "0.4.1"
#: pyopenjtalk's frontend copies the text into a fixed buffer of 8192 bytes; longer pieces are refused up front
_MAX_PIECE_BYTES = 8000

# ---- step 2: what OpenJTalk reads --------------------------------------------------------------------------------
#: characters handed to OpenJTalk; every other character cuts the text and becomes a phone of its own
_WORD_RANGES = (
    "A-Za-z",  # ASCII letters (already lower-cased; upper case listed as upstream's class has it)
    r"\d",  # any Unicode decimal digit, full-width ０-９ included
    "\u3005",  # 々
    "\u3040-\u30ff",  # hiragana, katakana, ー and ・
    "\u4e00-\u9fff",  # CJK unified ideographs
    "\uff11-\uff19",  # full-width digits 1-9
    "\uff21-\uff3a",  # full-width A-Z
    "\uff41-\uff5a",  # full-width a-z
    "\uff66-\uff9d",  # half-width katakana
)
_CUT_RE = re.compile("[^" + "".join(_WORD_RANGES) + "]")
_SPELLED = (("％", "パーセント"),)
#: cut characters that become another phone
_MARK_PHONES = {
    "、": ",", "。": ".", "！": "!", "？": "?", "：": ",", "；": ",", "，": ",", "·": ",", "\n": ".",
}

# ---- full-context label fields (HTS format) ----------------------------------------------------------------------
_CURRENT_PHONE = re.compile(r"-(.*?)\+")
_FIELDS = {
    "a1": re.compile(r"/A:([0-9\-]+)\+"),  # accent nucleus position relative to the mora
    "a2": re.compile(r"\+(\d+)\+"),  # mora position in the accent phrase, forward
    "a3": re.compile(r"\+(\d+)/"),  # mora position in the accent phrase, backward
    "e3": re.compile(r"!(\d+)_"),  # 1 when the accent phrase is interrogative
    "f1": re.compile(r"/F:(\d+)_"),  # moras in the accent phrase
}
_MISSING = -50  # value of an absent field (xx)
_UNVOICED = frozenset("AEIOU")
#: phones after which an accent-phrase boundary can be marked (vowels, moraic nasal, sokuon)
_MORA_END = frozenset(("a", "e", "i", "o", "u", "A", "E", "I", "O", "U", "N", "cl"))


class JapaneseError(TextError):
    """Japanese text OpenJTalk cannot process."""


def _field(name: str, label: str) -> int:
    m = _FIELDS[name].search(label)
    return _MISSING if m is None else int(m.group(1))


def prosody_phones(labels: list[str]) -> list[str]:
    """Phones with prosody marks from OpenJTalk full-context labels: ``^`` start, ``$`` end (``?`` for a question),
    ``_`` pause, ``#`` accent-phrase boundary, ``[`` pitch rise, ``]`` pitch fall; unvoiced vowels lower case.

    (The symbol scheme of Kurihara et al. 2021 as ESPnet's ``pyopenjtalk_g2p_prosody`` implements it.)"""
    out: list[str] = []
    last = len(labels) - 1
    for n, label in enumerate(labels):
        phone = _CURRENT_PHONE.search(label).group(1)
        if phone in _UNVOICED:
            phone = phone.lower()
        if phone == "sil":
            if n == 0:
                out.append("^")
            elif n == last:
                question = _field("e3", label)
                if question == 0:
                    out.append("$")
                elif question == 1:
                    out.append("?")
            else:  # upstream asserts; OpenJTalk writes pauses inside a sentence as "pau"
                raise JapaneseError("OpenJTalk produced a silence inside the text")
            continue
        if phone == "pau":
            out.append("_")
            continue
        out.append(phone)
        a1, a2, a3, f1 = (_field(k, label) for k in ("a1", "a2", "a3", "f1"))
        a2_next = _field("a2", labels[n + 1])
        if a3 == 1 and a2_next == 1 and phone in _MORA_END:
            out.append("#")
        elif a1 == 0 and a2_next == a2 + 1 and a2 != f1:
            out.append("]")
        elif a2 == 1 and a2_next == 2:
            out.append("[")
    return out


# ---- OpenJTalk with dictionaries ---------------------------------------------------------------------------------
_LOCK = threading.Lock()
_ENGINE = None
_ENGINE_KEY: Optional[tuple] = None


def _pyopenjtalk():
    return require("pyopenjtalk", "pyopenjtalk", "the Japanese front end", PYOPENJTALK_VERSION)


def _is_dictionary(folder: Path) -> bool:
    return (folder / "sys.dic").is_file() and (folder / "matrix.bin").is_file()


def find_dictionary() -> Path:
    """The OpenJTalk (MeCab naist-jdic) dictionary folder: ``$OPEN_JTALK_DICT_DIR``, else the one inside the
    installed pyopenjtalk package (if someone put it there), else Debian's ``open-jtalk-mecab-naist-jdic``.
    Raises :class:`MissingDataError` naming the Debian package when none is found (nothing is downloaded)."""
    candidates: list[tuple[str, Path]] = []
    env = os.environ.get("OPEN_JTALK_DICT_DIR")
    if env:
        candidates.append(("OPEN_JTALK_DICT_DIR", Path(env).expanduser()))
    try:
        import importlib.util

        spec = importlib.util.find_spec("pyopenjtalk")
        if spec and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                candidates.append(("pyopenjtalk", Path(loc) / "open_jtalk_dic_utf_8-1.11"))
    except (ImportError, ValueError):
        pass
    candidates.append((DEBIAN_PACKAGE, DEBIAN_DICT_DIR))
    for _, folder in candidates:
        if _is_dictionary(folder):
            return folder
    if env:
        raise MissingDataError(
            f"OPEN_JTALK_DICT_DIR={env} is not an OpenJTalk dictionary folder (no sys.dic/matrix.bin there)"
        )
    raise MissingDataError(
        "the Japanese front end needs the OpenJTalk dictionary: install the Debian package "
        f"'{DEBIAN_PACKAGE}' (apt-get install {DEBIAN_PACKAGE}; it provides {DEBIAN_DICT_DIR}) or set "
        "OPEN_JTALK_DICT_DIR to a folder holding open_jtalk_dic_utf_8-1.11 (sys.dic, matrix.bin, ...)"
    )


def _cache_dir() -> Path:
    root = os.environ.get("GSV_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "gsv_playground"
    )
    return Path(root) / "openjtalk"


def _user_csv_bytes() -> bytes:
    """Upstream's user dictionary, plus the CSV named by ``GSV_JA_USER_DICT`` (appended) if set."""
    data = lzma.decompress(USER_DICT_CSV_XZ.read_bytes())
    extra = os.environ.get("GSV_JA_USER_DICT")
    if extra:
        path = Path(extra).expanduser()
        try:
            more = path.read_bytes()
        except OSError as exc:
            raise MissingDataError(f"GSV_JA_USER_DICT={extra} cannot be read: {exc.strerror or exc}") from None
        if not data.endswith(b"\n"):
            data += b"\n"
        data += more.removeprefix(b"\xef\xbb\xbf")
    return data


_COMPILE_SCRIPT = (
    "import sys\n"
    "from pyopenjtalk.openjtalk import mecab_dict_index\n"
    "sys.exit(mecab_dict_index(*(a.encode('utf-8') for a in sys.argv[1:])))\n"
)


def _compiled_user_dict(dict_dir: Path) -> Path:
    """The user dictionary compiled against ``dict_dir`` (cached by content; compiled in a child process because
    MeCab's compiler prints its progress on standard output)."""
    csv = _user_csv_bytes()
    key = hashlib.sha256(csv)
    for name in ("sys.dic", "matrix.bin", "left-id.def", "right-id.def"):
        f = dict_dir / name
        key.update(f"{name}:{f.stat().st_size}:{f.stat().st_mtime_ns}".encode())
    key.update(str(dict_dir.resolve()).encode())
    name = f"userdict-{key.hexdigest()[:20]}.dic"
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / "gsv_playground_openjtalk"):
        target = folder / name
        if target.is_file() and target.stat().st_size > 0:
            return target
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                src = Path(tmp) / "userdict.csv"
                src.write_bytes(csv)
                out = Path(tmp) / "user.dic"
                proc = subprocess.run(
                    [sys.executable, "-c", _COMPILE_SCRIPT, str(dict_dir), str(src), str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600,
                )
                if proc.returncode != 0 or not out.is_file():
                    tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
                    raise JapaneseError("compiling the Japanese user dictionary failed: " + " | ".join(tail))
                os.replace(out, target)
            return target
        except OSError as exc:  # cache folder not writable: try the next one
            log.info("cannot write the OpenJTalk user dictionary to %s: %s", folder, exc)
    raise JapaneseError("no writable folder for the compiled Japanese user dictionary (set GSV_CACHE_DIR)")


def _engine():
    """One OpenJTalk instance (dictionary + user dictionary) per process; rebuilt when the configuration changes."""
    global _ENGINE, _ENGINE_KEY
    key = (os.environ.get("OPEN_JTALK_DICT_DIR"), os.environ.get("GSV_JA_USER_DICT"))
    with _LOCK:
        if _ENGINE is not None and _ENGINE_KEY == key:
            return _ENGINE
        _pyopenjtalk()
        from pyopenjtalk.openjtalk import OpenJTalk

        dict_dir = find_dictionary()
        user_dict = _compiled_user_dict(dict_dir)
        try:
            engine = OpenJTalk(dn_mecab=str(dict_dir).encode("utf-8"), userdic=str(user_dict).encode("utf-8"))
        except RuntimeError as exc:
            raise JapaneseError(f"OpenJTalk could not load the dictionary {dict_dir}: {exc}") from None
        _ENGINE, _ENGINE_KEY = engine, key
        return engine


def _openjtalk_phones(piece: str) -> list[str]:
    """Prosody phones of one piece of Japanese characters, without the start and end marks."""
    if len(piece.encode("utf-8")) > _MAX_PIECE_BYTES:
        raise JapaneseError(
            f"a run of {len(piece)} Japanese characters without punctuation is too long for OpenJTalk "
            "(add punctuation or split the text)"
        )
    engine = _engine()
    labels = engine.make_label(engine.run_frontend(piece))
    return prosody_phones(labels)[1:-1]


# ---- public functions ---------------------------------------------------------------------------------------------
def normalize_ja(text: str) -> str:
    """Upstream's Japanese ``text_normalize``: runs of ``! ? … , . -`` collapse to their first mark."""
    if not isinstance(text, str):
        raise JapaneseError(f"text must be a string, not {type(text).__name__}")
    return replace_consecutive_punctuation(text)


def g2p_ja(norm_text: str) -> list[str]:
    """Phones of normalised Japanese text (before the symbol-table step): OpenJTalk pieces and cut characters."""
    text = norm_text
    for written, spelled in _SPELLED:
        text = text.replace(written, spelled)
    text = text.lower()
    phones: list[str] = []
    pos = 0
    for m in _CUT_RE.finditer(text):
        if m.start() > pos:
            phones.extend(_openjtalk_phones(text[pos : m.start()]))
        mark = m.group()
        if mark != " ":
            phones.append(_MARK_PHONES.get(mark, mark))
        pos = m.end()
    if pos < len(text):
        phones.extend(_openjtalk_phones(text[pos:]))
    return phones


def clean_ja(text: str, version: str = "v2") -> tuple[list[str], None, str]:
    """``(phones, None, norm_text)`` of Japanese ``text`` for model ``version`` (v1: 322 symbols, v2+: 732);
    phones missing from the symbol table become ``UNK``."""
    norm_text = normalize_ja(text)
    table = symbol_to_id(normalize_symbol_version(version))
    phones = [p if p in table else UNKNOWN for p in g2p_ja(norm_text)]
    return phones, None, norm_text


def warm_up() -> None:
    """Load OpenJTalk and the dictionaries now (first use otherwise pays it)."""
    _engine()
