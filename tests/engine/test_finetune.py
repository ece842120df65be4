"""Fine-tuning a foundation encoder's last blocks (engine.finetune, models.encoder_probe) on a
tiny ViT (2 blocks) saved to a local safetensors file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from tests.encoders.tiny_vit import TINY, TINY_KWARGS, save_tiny_vit

from metastasis.checkpoint import Bundle, load_checkpoint, save_checkpoint
from metastasis.config import TrainConfig
from metastasis.data.cache import open_split
from metastasis.encoders.embed import resolve_encoder
from metastasis.engine.learner import parameter_groups
from metastasis.errors import MetastasisError
from metastasis.inference.predictor import Predictor
from metastasis.models import create_model
from metastasis.training import fit
from metastasis.transforms.presets import Preprocessing


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_vit(tmp_path_factory.mktemp("weights") / "tiny-vit.safetensors", seed=1)


def probe_kwargs(weights: Path, blocks: int) -> dict[str, Any]:
    spec, found = resolve_encoder(TINY, weights, TINY_KWARGS, 32)
    return {"encoder": spec.to_dict(), "weights": found.label,
            "weights_sha256": found.sha256, "finetune_blocks": blocks}  # fmt: skip


def test_the_last_blocks_train_at_a_lower_rate_and_the_rest_stays_frozen_in_eval(
    weights: Path,
) -> None:
    model = create_model("encoder-probe", **probe_kwargs(weights, 1))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("encoder.net.blocks.1.") for n in trainable)
    assert any(n.startswith("encoder.net.norm.") for n in trainable)
    assert not any(
        n.startswith(("encoder.net.blocks.0.", "encoder.net.patch_embed")) for n in trainable
    )
    model.train()
    net: Any = model.encoder.net  # type: ignore[union-attr]
    assert not net.blocks[0].training and net.blocks[1].training and model.head.training
    groups = parameter_groups(model, 1e-3, 0.1)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    assert set(model.state_dict()) == {f"head.{k}" for k in ("weight", "bias")} | {
        k for k in trainable if not k.startswith("head.")
    }


def test_a_finetuned_checkpoint_round_trips_with_identical_logits(
    weights: Path, tmp_path: Path
) -> None:
    kwargs = probe_kwargs(weights, 2)
    model = create_model("encoder-probe", **kwargs)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    pre = Preprocessing(input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    bundle = Bundle("encoder-probe", kwargs, model.state_dict(), pre)
    save_checkpoint(tmp_path / "c.pt", bundle)
    loaded = load_checkpoint(tmp_path / "c.pt").build_model()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)
    # strict about the keys it expects: a probe (N = 0) refuses the blocks, N = 2 needs them
    with pytest.raises(RuntimeError, match="unexpected keys"):
        create_model("encoder-probe", **probe_kwargs(weights, 0)).load_state_dict(bundle.state_dict)
    head_only = {k: v for k, v in bundle.state_dict.items() if k.startswith("head.")}
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict(head_only)


def test_more_blocks_than_the_encoder_has_or_no_encoder_is_refused_in_one_line(
    weights: Path,
) -> None:
    with pytest.raises(
        MetastasisError, match=r"^finetune_blocks: 3 is more than the encoder's 2 blocks$"
    ):
        create_model("encoder-probe", **probe_kwargs(weights, 3))
    with pytest.raises(MetastasisError, match="only timm ViT encoders") as err:
        create_model("encoder-probe", finetune_blocks=1)  # the default encoder is a ResNet
    assert "\n" not in str(err.value)
    with pytest.raises(MetastasisError, match="set --encoder NAME"):
        TrainConfig(finetune_blocks=1)


def test_one_epoch_finetunes_the_last_block_only_and_predict_and_export_read_it(
    demo_data: Path, weights: Path, tmp_path: Path
) -> None:
    cfg = TrainConfig(
        data=str(demo_data / "train"),
        val_data=str(demo_data / "valid"),
        encoder=TINY,
        weights=str(weights),
        model_kwargs=TINY_KWARGS,
        input_size=32,
        finetune_blocks=1,
        epochs=1,
        lr=1e-3,
        out=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "cache"),
    )
    run = fit(cfg, progress=False).run_dir
    bundle = load_checkpoint(run)
    assert bundle.arch == "encoder-probe" and bundle.arch_kwargs["finetune_blocks"] == 1
    assert len(bundle.arch_kwargs["weights_sha256"]) == 64
    assert bundle.preprocessing.input_size == 32
    original = load_file(str(weights))
    state = bundle.state_dict
    assert {k.split(".")[2] for k in state if k.startswith("encoder.")} == {"blocks", "norm"}
    assert not torch.equal(
        state["encoder.net.blocks.1.attn.qkv.weight"], original["blocks.1.attn.qkv.weight"]
    )
    built: Any = bundle.build_model()
    for key, value in built.encoder.net.state_dict().items():
        if not key.startswith(("blocks.1.", "norm.")):
            assert torch.equal(value, original[key]), key  # the frozen part is the file's
    # predict reads it as any checkpoint: the validation predictions again
    val = pd.read_csv(run / "val_predictions.csv")

    split = open_split(demo_data / "valid", cache_root=tmp_path / "cache", progress=False)
    probs = Predictor.from_checkpoint(run, engine="torch").predict_proba(
        np.asarray(split.images[:16])
    )
    by_id = dict(zip(val["id"].astype(str), val["probability"], strict=True))
    expected = [by_id[str(i)] for i in split.ids[:16]]
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    metrics = json.loads((run / "metrics.json").read_text())
    assert "fine-tuned the last 1 block " in metrics["finetune"]["description"]
    assert "fine-tuned the last 1 block " in (run / "MODEL_CARD.md").read_text()
    assert (run / "model.onnx").is_file()  # encoder + head, checked against torch on export
