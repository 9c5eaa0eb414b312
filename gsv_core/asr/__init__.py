"""Speech recognition (faster-whisper): the ASR tab's engine, also used by finetune cleaning (transcript check),
checkpoint selection, evaluation and RefAudio scoring. ``python -m gsv_core.asr`` is its CLI."""
from .service import (AUDIO_EXTENSIONS, COMPUTE_TYPES, DEVICES, FORMATS, LANGUAGES, PUNCTUATION_MODES,
                      TABLE_HEADERS, ASRError, ASROptions, ASRRow, ASRService, ListFormatError, Segment, _safe_name,
                      check_model_dir, collect_audio, default_output_name, fullwidth_punctuation, is_model_dir,
                      keep_uploads, list_lines, list_models, model_names, postprocess_text, read_list, rows_from_table,
                      resolve_model, rows_to_table, save, srt_text, srt_time, strip_punctuation, to_simplified,
                      transcriber, write_csv, write_list, write_srt)

__all__ = ["AUDIO_EXTENSIONS", "COMPUTE_TYPES", "DEVICES", "FORMATS", "LANGUAGES", "PUNCTUATION_MODES",
           "TABLE_HEADERS", "ASRError", "ASROptions", "ASRRow", "ASRService", "ListFormatError", "Segment",
           "check_model_dir", "collect_audio", "default_output_name", "fullwidth_punctuation", "is_model_dir",
           "keep_uploads", "list_lines", "list_models", "model_names", "postprocess_text", "read_list", "rows_from_table",
           "resolve_model", "rows_to_table", "save", "srt_text", "srt_time", "strip_punctuation", "to_simplified", "transcriber",
           "write_csv", "write_list", "write_srt"]
