"""The reference-audio workbench: a SQLite library of reference clips, parameter sweeps, scoring and presets.

Filled in by the RefAudio issue; the RefAudio tab and ``python -m refaudio`` call into this package.
"""
