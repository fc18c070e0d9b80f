"""Registry of patch encoders, built with timm, weights from local files only.

=================  ====  =====  ======================================================
name               dim   input  architecture (source)
=================  ====  =====  ======================================================
resnet50-trunc     1024  patch  ResNet-50 up to layer3 + global average pool (CLAM:
                                Lu et al., Nat. Biomed. Eng. 2021); ImageNet weights,
                                torchvision or timm key layout
uni-vitl16         1024  224    ViT-L/16, LayerScale 1e-5, CLS token (UNI: Chen et
                                al., Nat. Med. 2024); UNI's ``pytorch_model.bin``
conch-vitb         512   448    ViT-B/16 at 448 px + 512-d linear projection, CLIP
                                normalisation (CONCH-compatible: Lu et al., Nat. Med.
                                2024); a state dict in timm key layout — the original
                                CoCa checkpoint must be converted first
random-tiny        64    224    2-layer ViT, width 64, random weights from seed 0
                                (tests and benchmarks only; needs no file)
=================  ====  =====  ======================================================

"patch" input means the patch is fed at its own size (CLAM feeds 256 px).

Weights are never downloaded (timm ``pretrained=False``). They come from, in
order: the ``weights`` argument (``--weights PATH``), then
``$MMBENCH_WEIGHTS_DIR/<encoder>.safetensors``, then
``$MMBENCH_WEIGHTS_DIR/<encoder>.pth`` (or ``.bin``). A ``.pth``/``.bin`` is
read with ``torch.load(weights_only=True)``; a dict under ``state_dict``,
``model`` or ``module`` is unwrapped and a ``module.`` prefix stripped.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from benchmark.errors import DataError, MethodError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one patch encoder.

    Attributes
    ----------
    name : str
    dim : int
        Feature dimension D.
    input_size : int or None
        Side in pixels the patch is resized to before the encoder; None feeds it as is.
    mean, std : tuple of float
        Per-channel normalisation of [0, 1] RGB.
    build : callable
        Returns the randomly initialised ``nn.Module`` mapping (B, 3, S, S)
        float to (B, D).
    needs_weights : bool
        False only for ``random-tiny``.
    ignore_keys : tuple of str
        Checkpoint key prefixes dropped on load (e.g. ResNet ``layer4.``, ``fc.``).
    source : str
        Paper the architecture follows.
    """

    name: str
    dim: int
    input_size: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    build: Callable[[], nn.Module]
    needs_weights: bool = True
    ignore_keys: tuple[str, ...] = ()
    source: str = ""


def _resnet50_trunc() -> nn.Module:
    import timm

    model = timm.create_model("resnet50", pretrained=False, num_classes=0)
    model.layer4 = nn.Identity()  # features after layer3 (1024 channels), then timm's global average pool
    return model


def _uni_vitl16() -> nn.Module:
    import timm

    return timm.create_model(
        "vit_large_patch16_224", pretrained=False, img_size=224, init_values=1e-5, num_classes=0, dynamic_img_size=True
    )


def _conch_vitb() -> nn.Module:
    import timm

    return timm.create_model("vit_base_patch16_224", pretrained=False, img_size=448, num_classes=512)


def _random_tiny() -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return VisionTransformer(img_size=224, patch_size=16, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=0)


ENCODERS: Mapping[str, EncoderSpec] = MappingProxyType(
    {
        "resnet50-trunc": EncoderSpec(
            "resnet50-trunc", 1024, None, IMAGENET_MEAN, IMAGENET_STD, _resnet50_trunc,
            ignore_keys=("layer4.", "fc."), source="Lu et al. 2021 (CLAM), He et al. 2016 (ResNet)",
        ),
        "uni-vitl16": EncoderSpec(
            "uni-vitl16", 1024, 224, IMAGENET_MEAN, IMAGENET_STD, _uni_vitl16, source="Chen et al. 2024 (UNI)"
        ),
        "conch-vitb": EncoderSpec(
            "conch-vitb", 512, 448, CLIP_MEAN, CLIP_STD, _conch_vitb, source="Lu et al. 2024 (CONCH)"
        ),
        "random-tiny": EncoderSpec(
            "random-tiny", 64, 224, IMAGENET_MEAN, IMAGENET_STD, _random_tiny, needs_weights=False,
            source="none: random weights for tests",
        ),
    }
)


@dataclass
class PatchEncoder:
    """A built encoder on its device.

    Attributes
    ----------
    spec : EncoderSpec
    model : nn.Module
        In eval mode, on ``device``.
    device : torch.device
    weights_path : Path or None
        None for random initialisation (``random-tiny`` only).
    weights_sha256 : str
        Hex digest of the weights file, "" for random initialisation.
    """

    spec: EncoderSpec
    model: nn.Module
    device: torch.device
    weights_path: Path | None
    weights_sha256: str

    @property
    def dim(self) -> int:
        return self.spec.dim

    def preprocess(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, 3, P, P) uint8 RGB → (B, 3, S, S) float32 normalised, on the encoder's device.

        Resizing to the encoder's input side is bilinear with antialiasing; on
        CPU it runs on uint8 (torch's fast path), on GPU on float.
        """
        size = self.spec.input_size
        resize = size is not None and patches.shape[-1] != size
        if resize and self.device.type == "cpu":
            patches = torch.nn.functional.interpolate(
                patches.contiguous(memory_format=torch.channels_last), size=(size, size), mode="bilinear", antialias=True
            )
            resize = False
        x = patches.to(self.device, non_blocking=True).float()
        if resize:
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        # (x / 255 - mean) / std as one multiply and one add, in place
        std = torch.tensor(self.spec.std, device=x.device).view(1, 3, 1, 1)
        mean = torch.tensor(self.spec.mean, device=x.device).view(1, 3, 1, 1)
        return x.mul_(1.0 / (255.0 * std)).sub_(mean / std)

    @torch.inference_mode()
    def encode(self, patches: torch.Tensor) -> np.ndarray:
        """Features of a batch of patches.

        Parameters
        ----------
        patches : torch.Tensor
            (B, 3, P, P) uint8 RGB.

        Returns
        -------
        np.ndarray
            (B, D) float32. On CUDA the forward pass runs under autocast
            (mixed precision) in :func:`cuda_autocast_dtype`: bfloat16 where
            the GPU has it (Ampere and later), else float16; on CPU in float32.
        """
        x = self.preprocess(patches)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=cuda_autocast_dtype(torch.cuda.is_bf16_supported())):
                out = self.model(x)
        else:
            out = self.model(x)
        return out.float().cpu().numpy()


def cuda_autocast_dtype(bf16_supported: bool) -> torch.dtype:
    """Autocast dtype of the encoders on CUDA: bfloat16 where supported (float32's range, no overflow in
    attention logits, full tensor-core rate on Ampere and later), else float16."""
    return torch.bfloat16 if bf16_supported else torch.float16


def resolve_weights(name: str, weights: Path | str | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """Path of the weights file for encoder ``name``.

    Order: ``weights``; ``$MMBENCH_WEIGHTS_DIR/<name>.safetensors``; ``.pth``;
    ``.bin``. Returns None for an encoder that needs no weights when none is found.

    Raises
    ------
    MethodError
        Unknown encoder.
    DataError
        ``weights`` does not exist, or the encoder needs weights and none is
        found; the message names the expected files.
    """
    spec = get_spec(name)
    env = os.environ if env is None else env
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise DataError(f"weights file for encoder {name!r} not found: {path}")
        return path
    folder = env.get("MMBENCH_WEIGHTS_DIR")
    candidates = [Path(folder).expanduser() / f"{name}{ext}" for ext in (".safetensors", ".pth", ".bin")] if folder else []
    for path in candidates:
        if path.is_file():
            return path
    if not spec.needs_weights:
        return None
    where = (
        f"{candidates[0]} or {candidates[1]}"
        if candidates
        else f"$MMBENCH_WEIGHTS_DIR/{name}.safetensors or .pth (MMBENCH_WEIGHTS_DIR is not set)"
    )
    raise DataError(
        f"encoder {name!r} needs local weights (mmbench never downloads): pass --weights PATH or put them at {where}"
    )


def get_spec(name: str) -> EncoderSpec:
    """The registry entry for ``name``; MethodError listing the known names otherwise."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise MethodError(f"unknown patch encoder {name!r}; known: {', '.join(ENCODERS)}") from None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip or safetensors header errors
        raise DataError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DataError(f"{path}: weights file does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_encoder(name: str, weights: Path | str | None = None, device: str | torch.device = "cpu", env: Mapping[str, str] | None = None) -> PatchEncoder:
    """Build encoder ``name`` with timm and load its local weights.

    Parameters
    ----------
    name : str
        A key of :data:`ENCODERS`.
    weights : Path, str or None
        Weights file; see :func:`resolve_weights` for the fallbacks.
    device : str or torch.device
    env : mapping or None
        Environment to read ``MMBENCH_WEIGHTS_DIR`` from (default ``os.environ``).

    Returns
    -------
    PatchEncoder

    Raises
    ------
    MethodError
        Unknown encoder.
    DataError
        Weights missing, unreadable, or not matching the architecture (the
        message lists a few missing/unexpected keys or shape mismatches).
    """
    spec = get_spec(name)
    path = resolve_weights(name, weights, env)
    model = spec.build()
    digest = ""
    if path is not None:
        state = _read_state_dict(path)
        state = {k: v for k, v in state.items() if not k.startswith(spec.ignore_keys)} if spec.ignore_keys else state
        expected = model.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
        if missing or unexpected or wrong:
            parts = []
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
                if keys:
                    parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
            raise DataError(f"{path}: weights do not fit encoder {name!r}: {'; '.join(parts)}")
        model.load_state_dict(state, strict=True)
        digest = file_sha256(path)
    device = torch.device(device)
    model = model.eval().to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return PatchEncoder(spec=spec, model=model, device=device, weights_path=path, weights_sha256=digest)
