"""Pipeline-shaped tiny feature models built in code (no downloads): BERT with hidden size 1024 (what the GPT's
bert_proj expects) and HuBERT with hidden size 768 (what SoVITS' ssl_proj expects), saved as local folders the
loaders read with ``from_pretrained``, exactly like the real chinese-roberta / chinese-hubert folders."""
from __future__ import annotations

from pathlib import Path

import torch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = "，。！？,.!?-…今天气很好我们去公园散步吧这是一个测试句子你早上阳光价格也便宜附近学生经常来吃参考声音用合成速度的"


def build_tiny_bert(folder: Path, hidden: int = 1024, layers: int = 3, seed: int = 0) -> Path:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(SPECIALS + sorted(set(CHARS)))}
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=False, tokenize_chinese_chars=True)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=520, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    BertForMaskedLM(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_tiny_hubert(folder: Path, hidden: int = 768, seed: int = 0) -> Path:
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = HubertConfig(hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
                       num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, hidden_dropout=0.0,
                       attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, layerdrop=0.0)
    HubertModel(cfg).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=False).save_pretrained(folder)
    return folder
