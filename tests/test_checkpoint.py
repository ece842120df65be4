import os
import pickle
from pathlib import Path

import pytest
import torch

from metastasis.checkpoint import Bundle, load_checkpoint, save_checkpoint, state_dict_cpu
from metastasis.errors import CheckpointError
from metastasis.models import create_model
from metastasis.transforms.presets import Preprocessing
from metastasis.transforms.stain import StainReference


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


def _with(raw: dict[str, object], dotted: str, value: object) -> dict[str, object]:
    """A copy of ``raw`` with one (possibly nested, ``a.b``) field replaced or removed."""
    out = {**raw}
    if "." in dotted:
        outer, inner = dotted.split(".")
        nested = {**out[outer]}  # type: ignore[dict-item]
        nested[inner] = value
        out[outer] = nested
    elif value is _REMOVE:
        del out[dotted]
    else:
        out[dotted] = value
    return out


_REMOVE = object()
NAN = float("nan")

# field -> (value the checkpoint claims, regex of the one-line refusal naming that field)
LYING_FIELDS = {
    "arch_kwargs_unknown": ("arch_kwargs", {"depth": 7}, r"arch_kwargs: baseline-cnn cannot be"),
    "arch_kwargs_not_dict": ("arch_kwargs", [1, 2], r"arch_kwargs: expected dict, got list"),
    "input_size_too_small": (
        "preprocessing.input_size",
        64,
        r"preprocessing\.input_size: baseline-cnn cannot run 64x64 patches",
    ),
    "input_size_text": ("preprocessing.input_size", "96", r"preprocessing\.input_size: expected"),
    "mean_two_values": ("preprocessing.mean", [0.5, 0.5], r"preprocessing\.mean: expected 3"),
    "std_nan": ("preprocessing.std", [1.0, NAN, 1.0], r"preprocessing\.std: expected 3 finite"),
    "std_zero": ("preprocessing.std", [1.0, 0.0, 1.0], r"preprocessing\.std: must be positive"),
    "mpp_negative": ("preprocessing.mpp", -0.5, r"mpp: -0\.5 is outside \(0, 1000\]"),
    "preprocessing_missing": ("preprocessing", _REMOVE, r"preprocessing: missing"),
    "threshold_nan": ("threshold", NAN, r"threshold: nan is outside \[0, 1\]"),
    "threshold_above_one": ("threshold", 1.5, r"threshold: 1\.5 is outside \[0, 1\]"),
    "threshold_text": ("threshold", "0.5", r"threshold: expected a number"),
    "temperature_zero": ("temperature", 0.0, r"temperature: 0\.0 is outside \(0, 1e\+06\]"),
    "temperature_negative": ("temperature", -1.0, r"temperature: -1\.0 is outside"),
    "temperature_inf": ("temperature", float("inf"), r"temperature: inf is outside"),
    "tta_unknown": ("tta", "d8", r"tta: 'd8' is not one of none, d4"),
    "class_names_three": ("class_names", ["a", "b", "c"], r"class_names: expected two names"),
    "config_not_dict": ("config", "epochs: 3", r"config: expected dict, got str"),
}


@pytest.mark.parametrize("case", LYING_FIELDS)
def test_every_field_that_lies_is_refused_with_its_name(case: str, tmp_path: Path) -> None:
    field, value, message = LYING_FIELDS[case]
    raw = _with(_bundle().to_dict(), field, value)
    path = tmp_path / "lying.pt"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_non_finite_weights_are_refused(tmp_path: Path) -> None:
    """NaN weights make every probability NaN (every label 0): refused on the probe batch."""
    raw = _bundle().to_dict()
    state = dict(raw["state_dict"])  # type: ignore[call-overload]
    state["head.1.weight"] = torch.full_like(state["head.1.weight"], NAN)
    torch.save({**raw, "state_dict": state}, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="outputs are not finite"):
        load_checkpoint(tmp_path / "nan.pt")


def test_a_checkpoint_without_mpp_reads_as_pcam(tmp_path: Path) -> None:
    """Checkpoints written before the resolution was recorded were all trained on PCam."""
    raw = _bundle().to_dict()
    pre = {k: v for k, v in raw["preprocessing"].items() if k != "mpp"}  # type: ignore[attr-defined]
    torch.save({**raw, "preprocessing": pre}, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").preprocessing.mpp == 0.972


def test_loading_never_moves_the_global_random_generator(tmp_path: Path) -> None:
    """The probe builds a model (layer initialisation draws random numbers): loading from a
    callback inside a training run must not change that run."""
    save_checkpoint(tmp_path / "c.pt", _bundle())
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    load_checkpoint(tmp_path / "c.pt")
    torch.testing.assert_close(torch.rand(4), expected)


def test_the_stain_reference_round_trips_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    ref = StainReference("reinhard", mean=(-0.45, -0.07, 0.02), std=(0.31, 0.05, 0.014))
    bundle = _bundle()
    bundle.preprocessing = Preprocessing(stain=ref)
    save_checkpoint(tmp_path / "checkpoint.pt", bundle)
    assert load_checkpoint(tmp_path).preprocessing == Preprocessing(stain=ref)
    raw = bundle.to_dict()
    raw["preprocessing"]["stain"] = {**ref.to_dict(), "std": [0.3, 0.0, 0.1]}  # type: ignore[index]
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"preprocessing\.stain: std"):
        load_checkpoint(tmp_path / "bad.pt")


def test_metadata_is_read_without_pytorch_as_load_checkpoint_reads_it(tmp_path: Path) -> None:
    from metastasis.checkpoint import read_checkpoint_meta

    bundle = _bundle(config={"epochs": 2}, tta="d4", temperature=1.5, synthetic=True)
    save_checkpoint(tmp_path / "checkpoint.pt", bundle)
    meta = read_checkpoint_meta(tmp_path)
    loaded = load_checkpoint(tmp_path)
    assert (meta.arch, meta.threshold, meta.temperature, meta.tta, meta.config) == (
        loaded.arch, loaded.threshold, loaded.temperature, loaded.tta, loaded.config
    )  # fmt: skip
    assert meta.preprocessing == loaded.preprocessing.to_dict()
    assert meta.warning == loaded.warning is not None
    assert meta.tensors == len(loaded.state_dict)
    marker = tmp_path / "pwned"
    torch.save({"format": "metastasis-checkpoint/1", "payload": _Exploit(str(marker))},
               tmp_path / "evil.pt")  # fmt: skip
    with pytest.raises(CheckpointError, match=r"refused: posix\.system is not allowed"):
        read_checkpoint_meta(tmp_path / "evil.pt")
    assert not marker.exists()
    torch.save({**bundle.to_dict(), "threshold": 2.0}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"threshold: 2\.0 is outside"):
        read_checkpoint_meta(tmp_path / "bad.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint_meta(tmp_path / "junk.pt")
