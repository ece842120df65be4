import os
import pickle
from pathlib import Path

import pytest
import torch

from metastasis.engine.checkpoint import Bundle, load_checkpoint, save_checkpoint, state_dict_cpu
from metastasis.errors import CheckpointError
from metastasis.models import create_model
from metastasis.transforms.presets import Preprocessing


def _bundle(**kw: object) -> Bundle:
    model = create_model("baseline-cnn")
    return Bundle(
        arch="baseline-cnn",
        arch_kwargs={},
        state_dict=state_dict_cpu(model),
        preprocessing=Preprocessing(),
        threshold=0.42,
        **kw,
    )  # type: ignore[arg-type]


def test_round_trip_rebuilds_the_same_model(tmp_path: Path) -> None:
    bundle = _bundle(config={"epochs": 2})
    save_checkpoint(tmp_path / "checkpoint.pt", bundle)
    loaded = load_checkpoint(tmp_path)  # a folder holding checkpoint.pt is accepted
    assert loaded.threshold == 0.42 and loaded.config == {"epochs": 2}
    assert loaded.versions["torch"] == bundle.versions["torch"]
    x = torch.rand(2, 3, 96, 96)
    ref = create_model("baseline-cnn")
    ref.load_state_dict(bundle.state_dict)
    torch.testing.assert_close(loaded.build_model()(x), ref.eval()(x))


class _Exploit:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "metastasis-checkpoint/1", "payload": _Exploit(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()
    with open(path, "wb") as fh:  # a plain pickle, not a torch zip file
        pickle.dump(_Exploit(str(marker)), fh)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_metadata_is_validated(tmp_path: Path) -> None:
    good = _bundle().to_dict()
    cases = {
        "format": ({**good, "format": "other"}, "not a metastasis checkpoint"),
        "arch": ({**good, "arch": "resnet9000"}, "unknown architecture"),
    }
    for name, (raw, message) in cases.items():
        torch.save(raw, tmp_path / f"{name}.pt")
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / f"{name}.pt")
    state = dict(good["state_dict"])
    state["head.1.weight"] = torch.zeros(3, 3)
    torch.save({**good, "state_dict": state}, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="weights do not fit baseline-cnn"):
        load_checkpoint(tmp_path / "shape.pt").build_model()
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_building_a_pretrained_bundle_never_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = create_model("resnet18", pretrained=False)
    bundle = Bundle(
        arch="resnet18",
        arch_kwargs={"pretrained": True},
        state_dict=state_dict_cpu(model),
        preprocessing=Preprocessing(),
    )
    save_checkpoint(tmp_path / "c.pt", bundle)
    rebuilt = load_checkpoint(tmp_path / "c.pt").build_model()
    x = torch.rand(1, 3, 96, 96)
    torch.testing.assert_close(rebuilt(x), model.eval()(x))
