"""HuBERT content features (chinese-hubert-base), the SSL input of SoVITS and of its semantic-token quantiser.

GPT-SoVITS calls the HubertModel directly on the raw 16 kHz waveform in every path that matters (TTS prompt
tokens, dataset preparation): the Wav2Vec2 feature-extractor normalisation is NOT applied there, and the model
was finetuned that way. ``normalized_features`` exists only to reproduce the rarely used normalised variant.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from gsv_core.errors import AudioError, CheckpointError

REQUIRED_FILES = ("config.json", "preprocessor_config.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
MIN_SAMPLES = 400  # receptive field of the conv front end: one output frame


def check_model_folder(folder: Path, what: str, required: tuple[str, ...], weights: tuple[str, ...]) -> None:
    """Raise a CheckpointError naming the folder and what is missing, before transformers gives a vaguer one."""
    expected = f"{', '.join(required)} and one of {' / '.join(weights)}"
    if not folder.is_dir():
        raise CheckpointError(f"{what} folder not found: {folder} (expected a folder holding {expected})")
    missing = [name for name in required if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in weights):
        missing.append(" or ".join(weights))
    if missing:
        raise CheckpointError(f"{what} folder {folder} is incomplete: missing {', '.join(missing)} (expected {expected})")


class HubertContent(nn.Module):
    """Wraps a transformers HubertModel as ``.model``; move it with ``.to(device, dtype)``."""

    def __init__(self, folder: str | Path):
        super().__init__()
        from transformers import HubertModel, Wav2Vec2FeatureExtractor

        folder = Path(folder).expanduser()
        check_model_folder(folder, "HuBERT (chinese-hubert-base)", REQUIRED_FILES, WEIGHT_FILES)
        try:
            self.model = HubertModel.from_pretrained(str(folder), local_files_only=True).float().eval()
            extractor = Wav2Vec2FeatureExtractor.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"cannot load HuBERT from {folder}: {err}") from None
        self.folder = folder
        self.sample_rate = int(extractor.sampling_rate)
        self.do_normalize = bool(extractor.do_normalize)
        self.hidden_size = int(self.model.config.hidden_size)

    def train(self, mode: bool = True) -> "HubertContent":
        # Frozen feature extractor: dropout and SpecAugment masking must never run.
        return super().train(False)

    def _batch(self, wav16: Tensor) -> Tensor:
        wav16 = torch.as_tensor(wav16, device=next(self.model.parameters()).device)
        if wav16.dim() == 1:
            wav16 = wav16.unsqueeze(0)
        if wav16.dim() != 2 or wav16.shape[-1] < MIN_SAMPLES:
            raise AudioError(
                f"HuBERT expects a {self.sample_rate} Hz waveform [T] or [B, T] with T >= {MIN_SAMPLES}, "
                f"got shape {tuple(wav16.shape)}"
            )
        return wav16

    @torch.no_grad()
    def raw_features(self, wav16: Tensor) -> Tensor:
        """Model on the raw waveform (as GPT-SoVITS does) -> [B, hidden, frames], 50 frames per second."""
        p = next(self.model.parameters())
        x = self._batch(wav16).to(device=p.device, dtype=p.dtype)
        return self.model(x).last_hidden_state.transpose(1, 2)

    def normalize(self, wav16: Tensor) -> Tensor:
        """Wav2Vec2FeatureExtractor's per-utterance zero mean / unit variance (variance + 1e-7), shape [B, T]."""
        x = self._batch(wav16)
        xd = x.double()
        mean = xd.mean(dim=-1, keepdim=True)
        var = xd.var(dim=-1, unbiased=False, keepdim=True)
        return ((xd - mean) / torch.sqrt(var + 1e-7)).to(x.dtype if x.is_floating_point() else torch.float32)

    def normalized_features(self, wav16: Tensor) -> Tensor:
        """Feature-extractor input (normalised if its config says so) then the model -> [B, hidden, frames]."""
        x = self._batch(wav16)
        return self.raw_features(self.normalize(x) if self.do_normalize else x)

    def prompt_features(self, wav16: Tensor, pad_samples: int) -> Tensor:
        """Upstream's TTS prompt path: append ``pad_samples`` zeros, then raw features [B, hidden, frames].

        GPT-SoVITS pads with int(0.3 * SoVITS sampling rate) samples (9600 for 32 kHz models) although the audio
        is 16 kHz, i.e. 0.6 s of silence; that silence yields ~15 trailing prompt tokens the GPT was trained with.
        """
        x = self._batch(wav16)
        if pad_samples < 0:
            raise ValueError(f"pad_samples must be >= 0, got {pad_samples}")
        return self.raw_features(torch.cat([x, x.new_zeros(x.shape[0], int(pad_samples))], dim=-1))
