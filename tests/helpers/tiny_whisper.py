"""A tiny random-weight multilingual Whisper, built in code and converted to CTranslate2 (no downloads).

faster-whisper needs a ``tokenizer.json`` next to the CTranslate2 model (otherwise it fetches one from the hub),
so we build a byte-level BPE tokenizer with Whisper's multilingual id layout: 256 byte symbols, fillers up to
50255, the empty-string token at 50256 (ctranslate2 >= 4.7 treats a vocabulary as multilingual only when it holds
``""``), then the special tokens in Whisper's order (eot 50257, sot 50258, ``<|zh|>`` 50260, ``<|notimestamps|>``
50363) and 1501 timestamp tokens: 51865 ids. The weights are random, so the text it emits is garbage and it never
emits end-of-text on its own: callers cap the output (``max_new_tokens``).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

#: Whisper's (v2) language order; the token ids follow it
LANGS = ("en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg "
         "lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so "
         "af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su").split()


def _tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {s: i for i, s in enumerate(sorted(ByteLevel.alphabet()))}
    for i in range(len(vocab), 50256):
        vocab[f"#f{i}"] = i  # unreachable fillers
    vocab[""] = 50256  # makes CTranslate2 treat the model as multilingual
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = (["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{lang}|>" for lang in LANGS]
                + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>",
                   "<|notimestamps|>"])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.add_tokens([AddedToken("<|%.2f|>" % (i * 0.02), special=False, normalized=False) for i in range(1501)])
    assert tok.get_vocab_size() == 51865
    return tok


def build_tiny_whisper(ct2_dir: Path, seed: int = 0) -> Path:
    """Write a CTranslate2 Whisper model folder (model.bin, config.json, tokenizer.json, ...) to ``ct2_dir``."""
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import (GenerationConfig, PreTrainedTokenizerFast, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration)

    ct2_dir = Path(ct2_dir)
    tok = _tokenizer()
    eot, sot, notime = 50257, 50258, 50363
    hf_dir = Path(tempfile.mkdtemp(prefix="tiny_whisper_hf_"))
    try:
        PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                unk_token="<|endoftext|>", pad_token="<|endoftext|>").save_pretrained(hf_dir)
        cfg = WhisperConfig(vocab_size=51865, num_mel_bins=80, d_model=64, encoder_layers=2, decoder_layers=2,
                            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
                            decoder_ffn_dim=128, max_source_positions=1500, max_target_positions=448,
                            pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
                            suppress_tokens=[], begin_suppress_tokens=[220, eot])
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(cfg).eval()
        model.generation_config = GenerationConfig(
            decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, max_length=448, suppress_tokens=[],
            begin_suppress_tokens=[220, eot], no_timestamps_token_id=notime, is_multilingual=True,
            alignment_heads=[[1, 0], [1, 1]],
            lang_to_id={f"<|{lang}|>": tok.token_to_id(f"<|{lang}|>") for lang in LANGS},
            task_to_id={"translate": tok.token_to_id("<|translate|>"),
                        "transcribe": tok.token_to_id("<|transcribe|>")})
        model.save_pretrained(hf_dir)
        WhisperFeatureExtractor(feature_size=80).save_pretrained(hf_dir)
        TransformersConverter(str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
            str(ct2_dir), force=True)
    finally:
        shutil.rmtree(hf_dir, ignore_errors=True)
    return ct2_dir


if __name__ == "__main__":  # python tests/helpers/tiny_whisper.py OUT_DIR
    import sys

    print(build_tiny_whisper(Path(sys.argv[1])))
