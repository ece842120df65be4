"""Training configuration: every setting declared once, with its type, allowed values, default
and help text (`TrainConfig`, a frozen pydantic model).

Config flows one way: defaults -> YAML recipe -> command-line flags, and validation happens
here, so a bad setting is one line naming the setting and where it came from (the YAML file or
"options"; the machinery is in `metastasis.settings`). The `train` and `tune` flags
(`metastasis.cli.common`), the README's options table (`options_table`) and the
documentation's command page are all derived from this model. The
resolved config is written into every run folder as ``config.yaml``; ``metastasis train
--config RUN/config.yaml`` re-runs it (settings added later take their defaults).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import yaml
from pydantic import ValidationInfo, field_validator, model_validator

from metastasis.errors import MetastasisError, first_line
from metastasis.settings import (
    Settings,
    choices,
    default_text,
    flag_name,
    range_text,
    setting,
    validated,
    value_type,
)
from metastasis.transforms.augment_presets import AUGMENT_PRESETS, augment_spec

# The allowed values of every option that has a fixed set; everything else reads them from here.
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["constant", "cosine", "onecycle"]
ClassBalance = Literal["none", "loss", "sampler"]
Tta = Literal["none", "d4"]
Precision = Literal["32-true", "bf16-mixed", "16-mixed"]
Accelerator = Literal["auto", "cpu", "cuda", "mps", "gpu"]
Logger = Literal["csv", "tensorboard", "mlflow"]
StainNormalisation = Literal["none", "macenko", "reinhard"]  # transforms/stain.py
Head = Literal["linear", "mlp"]
if TYPE_CHECKING:
    AugmentPreset = str
else:  # the presets are declared once, with what they do, in transforms/augment_presets.py
    AugmentPreset = Literal[AUGMENT_PRESETS]

OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
TTA_MODES: tuple[str, ...] = get_args(Tta)
LOGGERS: tuple[str, ...] = get_args(Logger)


class TrainConfig(Settings):
    """One training run: every setting of `metastasis train`, frozen once resolved."""

    # data
    data: str | None = setting(
        None,
        "training data: a folder or file in any supported layout",
        metavar="DATA",
        default_text="none; required",
    )
    split: str | None = setting(
        None, "split of the training data to train on", default_text="train, or the only one"
    )
    val_data: str | None = setting(
        None,
        "validation data; without it, a stratified, seeded split of the training data",
        metavar="DATA",
        default_text="none",
    )
    val_split: str | None = setting(
        None,
        "split of the validation data",
        default_text="valid, val or validation, or the only one",
    )
    val_fraction: float = setting(
        0.2,
        "fraction of the training data held out for validation when there is no val_data",
        ge=0,
        lt=1,
    )
    exclude: str | None = setting(
        None,
        "CSV with an `id` column (e.g. the EDA's flagged.csv) or a text file with one id per "
        "line: these patches are left out of training and validation",
        metavar="FILE",
        default_text="none",
    )
    cache_dir: str | None = setting(
        None,
        "cache folder for decoded patches",
        metavar="DIR",
        default_text="$METASTASIS_CACHE or ~/.cache/metastasis",
    )
    # model
    model: str = setting("baseline-cnn", "registered model name (`metastasis models` lists them)")
    model_kwargs: dict[str, Any] = setting(
        {}, "arguments of the model, e.g. dropout=0.3 (`metastasis models` lists them)"
    )
    input_size: int | None = setting(
        None,
        "resize patches to this side (e.g. 224 for ImageNet backbones)",
        default_text="the model's own",
        ge=32,
    )
    mpp: float = setting(
        0.972,
        "microns per pixel of the training patches (PCam and Kaggle: 0.972, about 10x); "
        "saved in the checkpoint, whole slides are read at it",
        ge=0.01,
        le=100,
    )
    # a foundation encoder and a probe (metastasis.encoders, metastasis.engine.probe)
    encoder: str | None = setting(
        None,
        "train only a head on this foundation encoder's cached embeddings (`metastasis embed "
        "--list` lists them; timm:ARCH for any timm model; --model-kwargs go to the encoder)",
        metavar="NAME",
        default_text="none: train --model end to end",
    )
    weights: str | None = setting(
        None,
        "the encoder's local weight file or folder (random: random weights, for timing)",
        metavar="PATH",
        default_text="$METASTASIS_WEIGHTS_DIR/NAME, else the Hugging Face cache",
    )
    head: Head = setting("linear", "the probe on the embeddings (linear: eva's protocol)")
    probe_seeds: int = setting(
        5, "probes trained from seeds seed..seed+N-1; the best on validation is kept", ge=1
    )
    probe_epochs: int = setting(
        100,
        "most epochs of a probe (batch 256, AdamW; stops after 20% of them without a lower "
        "validation loss, as eva)",
        ge=1,
    )
    probe_lr: float = setting(3e-4, "the probe's learning rate (eva: 3e-4)", gt=0)
    finetune_blocks: int = setting(
        0,
        "with --encoder: fine-tune the encoder's last N transformer blocks (and its final norm) "
        "with the head, on patches, through the normal trainer (epochs, lr, strategy, "
        "augmentation, ... apply); 0: a probe on cached embeddings",
        ge=0,
    )
    encoder_lr_scale: float = setting(
        0.1,
        "with finetune_blocks: the fine-tuned blocks learn at lr times this (the head at lr)",
        gt=0,
        le=1,
    )
    # optimisation
    epochs: int = setting(10, "training epochs", ge=1)
    batch_size: int = setting(32, "training batch (per process)", ge=1)
    shuffle: bool = setting(True, "shuffle the training data each epoch (off: a fixed order)")
    lr: float = setting(1e-3, "learning rate (the peak of a schedule)", ge=0)
    weight_decay: float = setting(0.0, "weight decay", ge=0)
    optimizer: Optimizer = setting("adam", "optimizer (sgd: momentum 0.9, Nesterov)")
    schedule: Schedule = setting(
        "constant",
        "learning-rate schedule, stepped per batch: constant, linear warm-up then cosine, or "
        "one-cycle",
    )
    warmup_epochs: float = setting(
        0.0,
        "epochs of linear warm-up (cosine, constant) or of one-cycle's rise (0: 30% of "
        "the run); below epochs",
        ge=0,
    )
    label_smoothing: float = setting(0.0, "BCE targets y(1 - s) + s/2", ge=0, lt=1)
    class_balance: ClassBalance = setting(
        "none", "loss: positive-class weight n0/n1 in the loss; sampler: class-balanced sampling"
    )
    ema_decay: float = setting(
        0.0,
        "validate and save an exponential moving average of the weights, e.g. 0.999 (0: off)",
        ge=0,
        lt=1,
    )
    early_stopping: int = setting(
        0, "stop after this many epochs without a better validation ROC-AUC (0: off)", ge=0
    )
    swa_epochs: int = setting(
        0,
        "stochastic weight averaging: average the weights at the ends of the last N epochs, "
        "recompute batch norm on the training patches, and validate and save the average "
        "instead of the best epoch (0: off; below epochs)",
        ge=0,
    )
    swa_lr: float | None = setting(
        None,
        "the learning rate SWALR holds during the averaged epochs",
        default_text="the schedule's rate where averaging starts",
        gt=0,
    )
    swa_anneal_epochs: float = setting(
        0.0,
        "epochs over which SWALR moves (cosine) from the schedule's rate to swa_lr (0: at once)",
        ge=0,
    )
    augment: AugmentPreset = setting(
        "flips",
        "augmentation preset: flips (the seed's), d4 (all 8 rotations/flips), pathology (d4 + "
        "light HED stain and colour jitter), stain (d4 + stain amounts 0.6-1.4x, stain colours, "
        "gamma: other labs' staining), strong (adds shifts, zoom, blur, noise)",
        noun="augmentation preset",
    )
    augment_kwargs: dict[str, Any] = setting(
        {}, "overrides of the preset's strengths, e.g. hed_scale=0.1"
    )
    stain_normalisation: StainNormalisation = setting(
        "none",
        "stain normalisation before the model (macenko or reinhard), its reference fitted on "
        "256 training patches and kept in the checkpoint: predict, evaluate, serve and slides "
        "apply it the same way",
    )
    threshold: float = setting(0.5, "decision threshold when threshold_method is fixed", ge=0, le=1)
    threshold_method: str = setting(
        "fixed",
        "fixed (uses threshold), youden, sensitivity:S, screening:S (sensitivity S with 95% "
        "confidence) or bagged:M (median over bootstrap resamples): the decision threshold, "
        "chosen on validation",
    )
    calibrate: bool = setting(
        False, "fit a temperature on validation (temperature scaling; saved in the checkpoint)"
    )
    tta: Tta = setting(
        "none",
        "test-time augmentation of the final validation and the checkpoint's default "
        "(d4: mean logit of the 8 dihedral views)",
    )
    seed: int = setting(0, "random seed (weights, split, order, augmentation)")
    # hardware (Lightning Fabric)
    accelerator: Accelerator = setting("auto", "device kind (Lightning Fabric accelerator)")
    devices: int = setting(1, "processes per node (DDP when > 1; batch_size is per process)", ge=1)
    num_nodes: int = setting(1, "machines", ge=1)
    strategy: str = setting("auto", "Fabric strategy (auto: DDP when several processes; ddp, ...)")
    precision: Precision = setting(
        "32-true", "numeric precision: bf16-mixed runs on CPUs with AVX512-BF16/AMX and on GPUs"
    )
    num_workers: int | None = setting(
        None, "DataLoader worker processes", default_text="0 on a CPU, up to 4 on a GPU", ge=0
    )
    threads: int | None = setting(
        None, "torch CPU threads (0: all cores)", default_text="all cores", ge=0
    )
    eval_batch_size: int | None = setting(
        None, "validation batch", default_text="32 on a CPU, 256 on a GPU", ge=1
    )
    # output and tracking
    out: str | None = setting(
        None, "run folder", metavar="RUN_DIR", default_text="runs/<timestamp>-<model>"
    )
    loggers: list[Logger] = setting(
        ["csv"],
        "where each epoch's metrics go: csv (history.csv), tensorboard, mlflow",
        noun="logger",
    )
    tracking_uri: str | None = setting(
        None, "MLflow tracking URI", metavar="URI", default_text="a local file store"
    )
    experiment: str = setting("metastasis", "MLflow experiment name")

    @field_validator("loggers", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):  # `loggers: csv,mlflow` in a YAML file
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("threshold_method")
    @classmethod
    def _known_threshold_method(cls, value: str) -> str:
        if value != "fixed":  # parsed by the code that uses it, now rather than after training
            from metastasis.metrics.thresholds import parse_threshold_method

            try:
                parse_threshold_method(value)
            except MetastasisError as err:
                raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> TrainConfig:
        # After-validators run outside the base class's wrap: this one words its own line.
        source = (info.context or {}).get("source", "TrainConfig")
        if self.warmup_epochs >= self.epochs:
            raise MetastasisError(
                f"{source}: warmup_epochs must be in [0, epochs), got {self.warmup_epochs} for "
                f"{self.epochs} epochs; set --warmup-epochs below {self.epochs} (0: no warm-up, "
                "or one-cycle's default rise over 30% of the run)"
            )
        _check_swa(self, source)
        if self.finetune_blocks and not self.encoder:
            raise MetastasisError(
                f"{source}: finetune_blocks fine-tunes a foundation encoder's last blocks; "
                "set --encoder NAME (and --weights PATH), or finetune_blocks 0"
            )
        try:
            augment_spec(self.augment, self.augment_kwargs)
        except MetastasisError as err:
            raise MetastasisError(f"{source}: {err}") from None
        return self

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``, validated like any other config."""
        return build_config({**self.to_dict(), **changes}, source="options")


def _check_swa(cfg: TrainConfig, source: str) -> None:
    """Stochastic weight averaging's limits, each one line naming what to change."""
    if not cfg.swa_epochs:
        return
    problem = ""
    if cfg.swa_epochs >= cfg.epochs:
        problem = f"swa_epochs must be below epochs ({cfg.epochs}), got {cfg.swa_epochs}"
    elif cfg.encoder:
        problem = "swa_epochs averages a model trained end to end, not a probe or fine-tune"
    elif cfg.ema_decay:
        problem = "swa_epochs and ema_decay are two ways to average weights; set one of them to 0"
    elif cfg.early_stopping:
        problem = "swa_epochs averages the last epochs, early_stopping may skip them; set one to 0"
    elif cfg.warmup_epochs > cfg.epochs - cfg.swa_epochs:
        problem = (
            f"warmup_epochs ({cfg.warmup_epochs:g}) must end before SWA's first epoch "
            f"({cfg.epochs - cfg.swa_epochs + 1})"
        )
    elif cfg.swa_anneal_epochs > cfg.swa_epochs:
        problem = (
            f"swa_anneal_epochs ({cfg.swa_anneal_epochs:g}) must not exceed swa_epochs "
            f"({cfg.swa_epochs})"
        )
    if problem:
        raise MetastasisError(f"{source}: {problem}")


def field_names() -> list[str]:
    return list(TrainConfig.model_fields)


# ---------------------------------------------------------------------------- shipped recipes

RECIPES = Path(__file__).resolve().parent / "recipes"  # package data; `configs/` in a clone
SEARCH_SPACES = RECIPES / "search"  # `metastasis tune --space NAME`


def shipped_recipes(folder: Path = RECIPES) -> dict[str, Path]:
    """The shipped recipes (or, with ``folder=SEARCH_SPACES``, search spaces): name -> file."""
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def recipe_path(name: str | Path, folder: Path = RECIPES) -> Path:
    """``name`` as a file to read: a path as it is (an existing file, or anything with a folder
    or a ``.yaml``/``.yml`` ending), else the shipped recipe of that name (``fast-cpu``; ``-``
    and ``_`` alike). An unknown name is one line listing the known ones."""
    text = str(name)
    path = Path(name)
    looks_like_path = any(sep in text for sep in ("/", "\\")) or path.suffix in (".yaml", ".yml")
    if path.is_file() or looks_like_path:
        return path
    known = shipped_recipes(folder)
    for stem, file in known.items():
        if stem.replace("_", "-") == text.replace("_", "-"):
            return file
    what = "search space" if folder == SEARCH_SPACES else "recipe"
    raise MetastasisError(
        f"{text}: no such file, nor a shipped {what} of that name; known: {', '.join(known)}"
    )


def measured(path: Path) -> str | None:
    """A recipe's measured numbers: its ``# measured: ...`` comment line (copied from the
    README's recipe table, where a test keeps them), or None."""
    for line in path.read_text().splitlines():
        if line.startswith("# measured:"):
            return line.split(":", 1)[1].strip()
    return None


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise MetastasisError(f"{p}: cannot read config: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MetastasisError(f"{p}: invalid YAML: {first_line(exc)}") from None
    if not isinstance(raw, dict):
        raise MetastasisError(f"{p}: a config must be a mapping of settings")
    return raw


def resolve_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the YAML file (a path, or the name of a shipped recipe: `recipe_path`),
    then every override that is not None."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_yaml(recipe_path(path)))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return build_config(values, source=str(path) if path else "options")


def build_config(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """``values`` as a validated `TrainConfig`; a problem is one line starting with ``source``."""
    return validated(TrainConfig, values, source)


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------- the README's table


def options_table() -> str:
    """Every setting as a Markdown table (setting, flag, default, allowed values, what it does):
    the README's options table, generated from the declarations (a test keeps them equal)."""
    rows = [
        "| setting | flag | default | values | what it does |",
        "|---|---|---|---|---|",
    ]
    for name, info in TrainConfig.model_fields.items():
        kind = value_type(info)
        allowed = choices(info)
        if allowed:
            values = ", ".join(f"`{c}`" for c in allowed)
        elif kind is dict:
            values = "`KEY=VALUE` pairs"
        else:
            values = " ".join(filter(None, [kind.__name__, range_text(info)]))
        rows.append(
            f"| `{name}` | `{flag_name(name, kind)}` | {_cell(default_text(info))} | "
            f"{_cell(values)} | {_cell(info.description or '')} |"
        )
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text.replace("<", "&lt;").replace(">", "&gt;")
