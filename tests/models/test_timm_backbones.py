from pathlib import Path

import pytest
import torch

from metastasis.checkpoint import Bundle, load_checkpoint, save_checkpoint, state_dict_cpu
from metastasis.cli import main
from metastasis.errors import MetastasisError
from metastasis.models import create_model, default_preprocessing, list_models
from metastasis.models.timm_backbones import BACKBONES, IMAGENET


def test_backbones_are_registered_with_imagenet_preprocessing() -> None:
    timm = pytest.importorskip("timm")
    from timm.models import get_pretrained_cfg

    assert set(BACKBONES) <= set(list_models())
    assert IMAGENET.mean == tuple(timm.data.IMAGENET_DEFAULT_MEAN)
    assert IMAGENET.std == tuple(timm.data.IMAGENET_DEFAULT_STD)
    for arch in BACKBONES:
        pre = default_preprocessing(arch)
        cfg = get_pretrained_cfg(arch)
        assert cfg is not None
        assert (pre.input_size, pre.mean, pre.std) == (96, tuple(cfg.mean), tuple(cfg.std))


@pytest.mark.parametrize("size", [32, 50, 224])
def test_one_logit_per_patch_at_any_size(size: int) -> None:
    model = create_model("resnet18").eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, size, size)).shape == (2,)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = create_model("resnet18", pretrained=False).eval()
    bundle = Bundle(
        arch="resnet18",
        arch_kwargs={"pretrained": False},
        state_dict=state_dict_cpu(model),
        preprocessing=default_preprocessing("resnet18"),
    )
    loaded = load_checkpoint(save_checkpoint(tmp_path / "checkpoint.pt", bundle))
    assert loaded.arch == "resnet18"
    assert loaded.preprocessing == IMAGENET
    x = loaded.preprocessing(torch.randint(0, 256, (2, 96, 96, 3), dtype=torch.uint8))
    with torch.no_grad():
        torch.testing.assert_close(loaded.build_model()(x), model(x), rtol=0, atol=0)


def _assert_fails_fast(match: str) -> None:
    with pytest.raises(MetastasisError, match=match) as info:
        create_model("resnet18", pretrained=True)
    assert "\n" not in str(info.value) and "pretrained=false" in str(info.value)


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.usefixtures("empty_hub_cache")
def test_pretrained_offline_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _assert_fails_fast("not in the local Hugging Face cache and HF_HUB_OFFLINE is set")


@pytest.mark.usefixtures("empty_hub_cache")
def test_pretrained_without_network_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    _assert_fails_fast(r"http://127\.0\.0\.1:9 cannot be reached")


def test_cli_lists_the_new_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("regularised-cnn", *BACKBONES):
        assert name in out
