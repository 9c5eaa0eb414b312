"""The prior encoder ``enc_p``: semantic content + phones + timbre -> (m_p, logs_p) per 50 Hz frame."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .attentions import ConvAttention, RelPosEncoder
from .layers import sequence_mask

SSL_DIM = 768  # HuBERT (chinese-hubert-base) feature width, fixed by the pretrained content model


class MRTE(nn.Module):
    """Multi-reference timbre encoder: content frames attend to the phones, then the timbre vector is added.

    Its sizes are fixed in the official models (content 192, hidden 512, 4 heads), which is why ``ge`` entering it
    is 512 wide for every version.
    """

    def __init__(self, content_channels: int = 192, hidden: int = 512, out_channels: int = 192, n_heads: int = 4):
        super().__init__()
        self.cross_attention = ConvAttention(hidden, hidden, n_heads)
        self.c_pre = nn.Conv1d(content_channels, hidden, 1)
        self.text_pre = nn.Conv1d(content_channels, hidden, 1)
        self.c_post = nn.Conv1d(hidden, out_channels, 1)

    def forward(self, content, content_mask, text, text_mask, ge=None):
        attn_mask = text_mask.unsqueeze(2) * content_mask.unsqueeze(-1)
        c = self.c_pre(content * content_mask)
        t = self.text_pre(text * text_mask)
        x = self.cross_attention(c * content_mask, t * text_mask, attn_mask) + c
        if ge is not None:
            x = x + ge
        return self.c_post(x * content_mask)


class TextEncoder(nn.Module):
    def __init__(self, out_channels, hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout,
                 n_symbols):
        super().__init__()
        self.out_channels = out_channels
        self.ssl_proj = nn.Conv1d(SSL_DIM, hidden_channels, 1)
        self.encoder_ssl = RelPosEncoder(hidden_channels, filter_channels, n_heads, n_layers // 2, kernel_size, p_dropout)
        self.encoder_text = RelPosEncoder(hidden_channels, filter_channels, n_heads, n_layers, kernel_size, p_dropout)
        self.text_embedding = nn.Embedding(n_symbols, hidden_channels)
        self.mrte = MRTE(content_channels=hidden_channels, out_channels=hidden_channels)
        self.encoder2 = RelPosEncoder(hidden_channels, filter_channels, n_heads, n_layers // 2, kernel_size, p_dropout)
        self.proj = nn.Conv1d(hidden_channels, out_channels * 2, 1)

    def forward(self, content, content_lengths, text, text_lengths, ge, speed: float = 1.0):
        """content: [B, 768, T] at 50 Hz; text: [B, N] phone ids; ge: [B, 512, 1] or None.

        Returns (hidden [B, C, T'], m_p, logs_p [B, out, T'], mask [B, 1, T']) where T' = int(T / speed) + 1 when
        speed != 1: speed is applied by linearly resampling the hidden sequence in time (no pitch change).
        """
        mask = sequence_mask(content_lengths, content.size(2), content.dtype)
        y = self.ssl_proj(content * mask) * mask
        y = self.encoder_ssl(y * mask, mask)

        text_mask = sequence_mask(text_lengths, text.size(1), y.dtype)
        t = self.text_embedding(text).transpose(1, 2)
        t = self.encoder_text(t * text_mask, text_mask)

        y = self.mrte(y, mask, t, text_mask, ge)
        y = self.encoder2(y * mask, mask)

        if speed != 1:
            y = F.interpolate(y, size=int(y.shape[-1] / speed) + 1, mode="linear")
            mask = F.interpolate(mask, size=y.shape[-1], mode="nearest")
        m, logs = torch.split(self.proj(y) * mask, self.out_channels, dim=1)
        return y, m, logs, mask
