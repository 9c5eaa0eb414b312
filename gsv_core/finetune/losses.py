"""The SoVITS (s2) GAN losses, with upstream's math (``module/losses.py`` of GPT-SoVITS).

Every loss is evaluated in float32 whatever the autocast dtype of its inputs. Least-squares GAN: the discriminator
pushes real scores to 1 and generated ones to 0; the generator pushes generated scores to 1. Feature matching is
the mean absolute difference of every discriminator feature map (real maps detached), summed and doubled. The KL
term compares the flowed posterior sample ``z_p`` with the prior N(m_p, exp(logs_p)) per valid frame.
The trainer weights the mel L1 by ``c_mel`` (45) and the KL by ``c_kl`` (1.0).
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["discriminator_loss", "generator_loss", "feature_loss", "kl_loss", "mel_l1"]


def discriminator_loss(real_scores: Sequence[torch.Tensor], fake_scores: Sequence[torch.Tensor]
                       ) -> tuple[torch.Tensor, list[float], list[float]]:
    """sum over discriminators of mean((1 - D(real))^2) + mean(D(fake)^2); also the per-discriminator terms."""
    total = None
    real_terms: list[float] = []
    fake_terms: list[float] = []
    for real, fake in zip(real_scores, fake_scores):
        r = (1.0 - real.float()).pow(2).mean()
        f = fake.float().pow(2).mean()
        total = r + f if total is None else total + r + f
        real_terms.append(float(r.detach()))
        fake_terms.append(float(f.detach()))
    if total is None:
        raise ValueError("discriminator_loss needs at least one discriminator output")
    return total, real_terms, fake_terms


def generator_loss(fake_scores: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """sum over discriminators of mean((1 - D(fake))^2); also the per-discriminator terms."""
    terms = [(1.0 - fake.float()).pow(2).mean() for fake in fake_scores]
    if not terms:
        raise ValueError("generator_loss needs at least one discriminator output")
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total, terms


def feature_loss(real_maps: Sequence[Sequence[torch.Tensor]], fake_maps: Sequence[Sequence[torch.Tensor]]
                 ) -> torch.Tensor:
    """2 * sum over every discriminator and layer of mean(|real - fake|), the real maps detached."""
    total = None
    for real_layers, fake_layers in zip(real_maps, fake_maps):
        for real, fake in zip(real_layers, fake_layers):
            term = (real.float().detach() - fake.float()).abs().mean()
            total = term if total is None else total + term
    if total is None:
        raise ValueError("feature_loss needs at least one feature map")
    return total * 2


def kl_loss(z_p: torch.Tensor, logs_q: torch.Tensor, m_p: torch.Tensor, logs_p: torch.Tensor,
            mask: torch.Tensor) -> torch.Tensor:
    """KL between the posterior (through the flow) and the prior, summed over masked elements and divided by the
    number of valid mask entries ([B, 1, T] mask: frames, not frames x channels, as upstream).

    Per element: logs_p - logs_q - 1/2 + (z_p - m_p)^2 * exp(-2 logs_p) / 2.
    """
    z_p, logs_q, m_p, logs_p, mask = (t.float() for t in (z_p, logs_q, m_p, logs_p, mask))
    kl = logs_p - logs_q - 0.5 + 0.5 * (z_p - m_p).pow(2) * torch.exp(-2.0 * logs_p)
    return (kl * mask).sum() / mask.sum()


def mel_l1(real_mel: torch.Tensor, fake_mel: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two log-mel spectrograms (float32), before the ``c_mel`` weight."""
    return (real_mel.float() - fake_mel.float()).abs().mean()
