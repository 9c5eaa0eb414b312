"""Finetuning: dataset preparation and cleaning, feature extraction, SoVITS (s2) and GPT (s1) training, export in
the official formats, checkpoint selection through the eval loop.

One experiment lives in one folder (see :mod:`gsv_core.finetune.layout`); every stage reads and writes only there,
except the exported weights, which go to the configured weight folders so the TTS tab lists them at once."""
