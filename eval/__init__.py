"""Evaluation services: TTS -> ASR -> CER/WER, speaker similarity, RTF -> reports; blind A/B and MOS tests.

Filled in by the Eval issue; the Eval tab and ``python -m eval`` call into this package, never the other way.
"""
