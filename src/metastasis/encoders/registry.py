"""Known pathology foundation encoders: architecture, preprocessing, embedding tokens, licence.

An ``EncoderSpec`` says how to build an encoder and read an embedding from it, without its
weights (they come from a local file: ``weights.py``). Every value below is copied from a
public source named in the comment beside the entry; nothing is guessed:

* eva (kaiko-ai/eva, v0.4.5): ``src/eva/vision/models/networks/backbones/pathology/*.py`` (timm
  architecture and kwargs) and ``docs/user-guide/advanced/replicate_evaluations.md`` (the
  NORMALIZE_MEAN/STD and IN_FEATURES each model is evaluated with);
* the models' Hugging Face cards and ``config.json`` files, where a value differs from eva
  (Virchow2's and Midnight's CLS + mean-of-patch-tokens embedding).

``sha256`` is the SHA-256 of the weight file where its publisher states it; no entry has one
yet (none was found published), so files are identified by the hash measured at first use,
which every checkpoint records. ``licence_verified`` is False where the licence was not found
in a stored public source: the user must read the model card.

Input size: every entry takes 224 x 224 input; PCam's 96 px patches are resized to it
bilinearly (no antialiasing: it is an enlargement), as eva's ``ResizeAndCrop`` does
(torchvision ``v2.Resize``, bilinear by default), after normalisation (the two commute).
``timm:ARCH`` builds any timm model by name, with its own pretrained config's mean/std.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from metastasis.errors import MetastasisError

Pooling = Literal["pooled", "cls", "cls+mean"]
Runtime = Literal["timm", "transformers"]
POOLINGS: tuple[str, ...] = ("pooled", "cls", "cls+mean")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
CC_BY_NC_ND = (
    "CC-BY-NC-ND-4.0 (non-commercial, no derivatives; gated: accept the terms on the model card)"
)
TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one encoder and read one embedding per patch from it."""

    name: str
    arch: str  # timm architecture, or the transformers model class for runtime "transformers"
    kwargs: dict[str, Any] = field(default_factory=dict)  # timm.create_model keyword arguments
    runtime: Runtime = "timm"
    input_size: int = 224
    interpolation: str = "bilinear"  # 96 px -> input_size, as eva resizes (see module doc)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pooling: Pooling = "cls"  # pooled: the model's own head-less output
    embed_dim: int = 0  # 0: unknown until built (``timm:`` names)
    licence: str = "see the model card"
    licence_verified: bool = False
    noncommercial: bool = False
    hub_id: str | None = None  # where the weights are published (never downloaded from here)
    weight_file: str | None = None  # the file name in hub_id; also looked for in a --weights folder
    sha256: str | None = None  # published SHA-256 of weight_file, where published
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderSpec:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["mean"], known["std"] = tuple(known["mean"]), tuple(known["std"])
        return cls(**known)

    def with_overrides(
        self, kwargs: dict[str, Any] | None = None, input_size: int | None = None
    ) -> EncoderSpec:
        """This spec with extra timm kwargs (``--model-kwargs``) and another input size."""
        new = replace(self, kwargs={**self.kwargs, **(kwargs or {})})
        if input_size:
            new = replace(new, input_size=int(input_size))
        return new


def _e(name: str, arch: str, dim: int, **kw: Any) -> EncoderSpec:
    return EncoderSpec(name=name, arch=arch, embed_dim=dim, **kw)


_DINOV2_G = {"mlp_layer": "SwiGLUPacked", "act_layer": "silu"}
_NO_HEAD = {"num_classes": 0}
ENCODERS: dict[str, EncoderSpec] = {
    e.name: e
    for e in (
        # eva mahmood.py `mahmood_uni`; MahmoodLab/UNI card (pytorch_model.bin, CLS, 1024)
        _e(
            "uni",
            "vit_large_patch16_224",
            1024,
            kwargs={**_NO_HEAD, "img_size": 224, "patch_size": 16, "init_values": 1e-5},
            licence=CC_BY_NC_ND,
            licence_verified=True,
            noncommercial=True,
            hub_id="MahmoodLab/UNI",
            weight_file="pytorch_model.bin",
            source="eva mahmood.py; huggingface.co/MahmoodLab/UNI",
        ),
        # eva mahmood.py `mahmood_uni2_h` (kwargs verbatim); IN_FEATURES 1536
        _e(
            "uni2-h",
            "vit_giant_patch14_224",
            1536,
            kwargs={
                **_NO_HEAD,
                **_DINOV2_G,
                "img_size": 224,
                "patch_size": 14,
                "depth": 24,
                "num_heads": 24,
                "init_values": 1e-5,
                "embed_dim": 1536,
                "mlp_ratio": 2.66667 * 2,
                "no_embed_class": True,
                "reg_tokens": 8,
            },
            licence=CC_BY_NC_ND,
            licence_verified=True,
            noncommercial=True,
            hub_id="MahmoodLab/UNI2-h",
            weight_file="pytorch_model.bin",
            source="eva mahmood.py; huggingface.co/MahmoodLab/UNI2-h",
        ),
        # eva paige.py (SwiGLUPacked, SiLU, hf-hub config: vit_huge_patch14_224, 4 registers);
        # the Virchow2 card's embedding: CLS concatenated with the mean of the patch tokens
        # (registers skipped) = 2560; eva uses the CLS token only (IN_FEATURES 1280).
        _e(
            "virchow2",
            "vit_huge_patch14_224",
            2560,
            kwargs={
                **_NO_HEAD,
                **_DINOV2_G,
                "img_size": 224,
                "init_values": 1e-5,
                "mlp_ratio": 5.3375,
                "global_pool": "",
                "reg_tokens": 4,
            },
            pooling="cls+mean",
            licence=CC_BY_NC_ND,
            licence_verified=True,
            noncommercial=True,
            hub_id="paige-ai/Virchow2",
            weight_file="pytorch_model.bin",
            source="eva paige.py; huggingface.co/paige-ai/Virchow2",
        ),
        # eva bioptimus.py; config.json of the timm port (architecture, global_pool token,
        # mean/std, licence apache-2.0); eva NORMALIZE_MEAN/STD identical
        _e(
            "h-optimus-0",
            "vit_giant_patch14_reg4_dinov2",
            1536,
            kwargs={**_NO_HEAD, "img_size": 224, "init_values": 1e-5, "global_pool": "token"},
            mean=(0.707223, 0.578729, 0.703617),
            std=(0.211883, 0.230117, 0.177517),
            licence="Apache-2.0",
            licence_verified=True,
            hub_id="bioptimus/H-optimus-0",
            weight_file="pytorch_model.bin",
            source="eva bioptimus.py; huggingface.co/bioptimus/H-optimus-0 config.json",
        ),
        # same architecture and normalisation as H-optimus-0 (bioptimus/H-optimus-1 card);
        # licence not found in a stored source: read the card
        _e(
            "h-optimus-1",
            "vit_giant_patch14_reg4_dinov2",
            1536,
            kwargs={**_NO_HEAD, "img_size": 224, "init_values": 1e-5, "global_pool": "token"},
            mean=(0.707223, 0.578729, 0.703617),
            std=(0.211883, 0.230117, 0.177517),
            hub_id="bioptimus/H-optimus-1",
            weight_file="pytorch_model.bin",
            source="huggingface.co/bioptimus/H-optimus-1 (licence: read the card)",
        ),
        # eva owkin.py (transformers ViTModel, CLS); replicate_evaluations.md: ImageNet, 768
        _e(
            "phikon",
            "ViTModel",
            768,
            runtime="transformers",
            licence="Owkin non-commercial licence (see the model card)",
            noncommercial=True,
            hub_id="owkin/phikon",
            source="eva owkin.py; replicate_evaluations.md",
        ),
        _e(
            "phikon-v2",
            "AutoModel",
            1024,
            runtime="transformers",
            licence="Owkin non-commercial licence (see the model card)",
            noncommercial=True,
            hub_id="owkin/phikon-v2",
            source="eva owkin.py; replicate_evaluations.md",
        ),
        # eva histai.py (transformers, trust_remote_code, 4 registers); mean/std and dims from
        # replicate_evaluations.md; licence Apache-2.0 (hist.ai cards)
        *(
            _e(
                f"hibou-{size.lower()}",
                "AutoModel",
                dim,
                runtime="transformers",
                mean=(0.7068, 0.5755, 0.722),
                std=(0.195, 0.2316, 0.1816),
                licence="Apache-2.0",
                licence_verified=True,
                hub_id=f"histai/hibou-{size}",
                source="eva histai.py; replicate_evaluations.md",
            )
            for size, dim in (("B", 768), ("L", 1024))
        ),
        # prov-gigapath/prov-gigapath config.json (timm vit_giant_patch14_dinov2, patch 16,
        # depth 40); eva gigapath.py; replicate_evaluations.md: ImageNet mean/std, 1536
        _e(
            "prov-gigapath",
            "vit_giant_patch14_dinov2",
            1536,
            kwargs={
                **_NO_HEAD,
                "img_size": 224,
                "in_chans": 3,
                "patch_size": 16,
                "embed_dim": 1536,
                "depth": 40,
                "num_heads": 24,
                "init_values": 1e-5,
                "mlp_ratio": 5.33334,
            },
            licence="Apache-2.0 (research use only per the model card)",
            hub_id="prov-gigapath/prov-gigapath",
            weight_file="pytorch_model.bin",
            source="eva gigapath.py; huggingface.co/prov-gigapath/prov-gigapath",
        ),
        # eva kaiko.py (torch.hub kaiko-ai/towards_large_pathology_fms: timm ViTs);
        # replicate_evaluations.md: mean/std 0.5, IN_FEATURES 384/768/1024 (CLS token)
        *(
            _e(
                f"kaiko-{short}",
                arch,
                dim,
                kwargs={**_NO_HEAD, "img_size": 224},
                mean=HALF,
                std=HALF,
                source="eva kaiko.py; replicate_evaluations.md (licence: read the card)",
            )
            for short, arch, dim in (
                ("vits16", "vit_small_patch16_224", 384),
                ("vits8", "vit_small_patch8_224", 384),
                ("vitb16", "vit_base_patch16_224", 768),
                ("vitb8", "vit_base_patch8_224", 768),
                ("vitl14", "vit_large_patch14_reg4_dinov2", 1024),
            )
        ),
        # eva kaiko.py `kaiko_midnight_12k` (transformers Dinov2, ViT-G/14); mean/std 0.5;
        # the kaiko-ai/midnight card's embedding: CLS + mean of patch tokens (3072)
        _e(
            "midnight",
            "AutoModel",
            3072,
            runtime="transformers",
            pooling="cls+mean",
            mean=HALF,
            std=HALF,
            licence="MIT (see the model card)",
            hub_id="kaiko-ai/midnight",
            source="eva kaiko.py; huggingface.co/kaiko-ai/midnight",
        ),
    )
}


def list_encoders() -> list[str]:
    return sorted(ENCODERS)


def get_encoder_spec(name: str) -> EncoderSpec:
    """The registered spec of ``name``, or ``timm:ARCH``: any timm model by name (its own
    pretrained config's mean/std and input size; the pooled, head-less output)."""
    if name.startswith(TIMM_PREFIX):
        return _timm_spec(name[len(TIMM_PREFIX) :])
    try:
        return ENCODERS[name]
    except KeyError:
        raise MetastasisError(
            f"--encoder: unknown encoder {name!r}; known: {', '.join(list_encoders())}, "
            "or timm:ARCH for any timm model"
        ) from None


def _timm_spec(arch: str) -> EncoderSpec:
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(arch):
        raise MetastasisError(f"--encoder: timm has no model {arch!r} (timm.list_models())")
    cfg = get_pretrained_cfg(arch)
    size = int(cfg.input_size[-1]) if cfg is not None else 224
    mean = tuple(cfg.mean) if cfg is not None else IMAGENET_MEAN
    std = tuple(cfg.std) if cfg is not None else IMAGENET_STD
    return EncoderSpec(
        name=f"{TIMM_PREFIX}{arch}",
        arch=arch,
        kwargs=dict(_NO_HEAD),
        input_size=size,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        pooling="pooled",
        licence=str(getattr(cfg, "license", None) or "see the weights' source"),
        source="timm pretrained_cfg",
    )
