"""The words a person reads for the keys machine files use: ``val_roc_auc`` is "validation
ROC-AUC" on a page, and stays ``val_roc_auc`` in ``metrics.json``, ``history.csv`` and
``trials.csv``.

:func:`words` is the one mapping, a Jinja filter of every report template
(:mod:`metastasis.reports.html`): a metric key, optionally qualified by the split it was measured
on (``split="val"``), or a key with a split prefix (``train_loss``, ``val_roc_auc``,
``best_val_roc_auc``). Keys it does not know are shown as they are.
"""

from __future__ import annotations

__all__ = ["FIGURES", "SPLITS", "figure_caption", "split_words", "words"]

# Split names (prefixes of machine keys, and the split names of data layouts) in words.
SPLITS = {
    "train": "training",
    "training": "training",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
}

# Quantities measured on a split: "validation ROC-AUC", "training loss".
MEASURED = {
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "precision": "precision",
    "f1": "F1 score",
    "brier": "Brier score",
    "log_loss": "log loss",
    "ece": "expected calibration error (ECE)",
    "loss": "loss",
    "n": "patches",
    "n_positive": "tumour patches",
    "prevalence": "share of tumour patches",
    "seconds": "seconds",
    "patches_per_s": "patches/s",
}

# Everything else a report shows by name: run, study, evaluation and slide bookkeeping.
OTHER = {
    # the decision and the checkpoint's calibration
    "threshold": "decision threshold",
    "threshold_method": "threshold method",
    "temperature": "temperature",
    "tta": "test-time augmentation",
    # a run's history and hyper-parameters (the keys of TrainConfig)
    "epoch": "epoch",
    "seconds": "seconds",
    "lr": "learning rate",
    "weight_decay": "weight decay",
    "label_smoothing": "label smoothing",
    "batch_size": "batch size",
    "warmup_epochs": "warm-up epochs",
    "ema_decay": "EMA decay",
    "swa_epochs": "SWA epochs (weights averaged)",
    "swa_lr": "SWA learning rate",
    "swa_anneal_epochs": "SWA annealing epochs",
    "augment": "augmentation",
    "class_balance": "class balance",
    # an evaluation
    "checkpoint": "checkpoint",
    "data": "data",
    "split": "split",
    "data_fingerprint": "data fingerprint",
    "n_excluded": "files excluded",
    "device": "device",
    "engine": "inference engine",
    "engine_precision": "engine precision",
    # a study
    "study": "study",
    "sampler": "sampler",
    "trials": "trials",
    "number": "trial",
    "state": "state",
    "best_epoch": "best epoch",
    "epochs_run": "epochs run",
    "host": "host",
    "pid": "process id",
    "run_dir": "run folder",
    "retry_of": "retry of trial",
    "best_trial": "best trial",
    "best_run_dir": "best trial's run folder",
    "running": "trials running",
    "waiting": "trials waiting",
    "complete": "trials complete",
    "pruned": "trials pruned",
    "fail": "trials failed",
    # a folder run of whole slides (slides.csv, and the patients' table)
    "slide": "slide",
    "status": "status",
    "category": "node category",
    "largest_diameter_mm": "largest lesion: longest diameter (mm)",
    "tumour_area_mm2": "tumour area (mm²)",
    "lesions": "lesions",
    "tissue_area_mm2": "tissue area (mm²)",
    "tiles_classified": "tiles classified",
    "tiles_failed": "tiles not decoded",
    "level": "pyramid level read",
    "mpp": "level-0 resolution (µm/pixel)",
    "reason": "why it failed",
    "patient": "patient",
    "slides": "slides (nodes)",
    "categories": "node categories",
    "stage": "pN stage (CAMELYON17)",
}


# The figures of a run or evaluation folder, by file name; "{split}" is the split's words.
FIGURES = {
    "history.png": "Loss, accuracy and ROC-AUC per epoch, training and validation",
    "roc.png": "ROC curve{split}",
    "pr.png": "Precision-recall curve{split}",
    "confusion_matrix.png": "Confusion matrix at the decision threshold{split}",
    "reliability.png": "Reliability diagram: calibration of the probabilities{split}",
    "augmentations.png": "Training augmentation: patches of each class and augmented copies",
}


def figure_caption(name: object, split: str | None = None) -> str:
    """A figure's caption from its file name, e.g. "ROC curve, validation split (roc.png)";
    a file it does not know is captioned by its name."""
    text = str(name)
    if text not in FIGURES:
        return text
    where = f", {split_words(split)} split" if split else ""
    return f"{FIGURES[text].format(split=where)} ({text})"


def split_words(split: str) -> str:
    """A split's name in words: ``val`` and ``valid`` are "validation"; unknown names as given."""
    return SPLITS.get(split.lower(), split)


def words(key: object, split: str | None = None) -> str:
    """``key`` in words; a measured quantity with ``split`` is prefixed by the split's words.

    ``words("val_roc_auc") == words("roc_auc", "val") == "validation ROC-AUC"``;
    ``words("best_val_roc_auc") == "best validation ROC-AUC"``; ``words("threshold", "val")``
    is "decision threshold" (a threshold is not measured on a split)."""
    text = str(key)
    if text in MEASURED and split:
        return f"{split_words(split)} {MEASURED[text]}"
    if text in OTHER:
        return OTHER[text]
    if text in MEASURED:
        return MEASURED[text]
    head, _, rest = text.partition("_")
    if head in SPLITS and rest in MEASURED:
        return f"{SPLITS[head]} {MEASURED[rest]}"
    if head == "best" and rest != words(rest):
        return f"best {words(rest)}"
    if text.startswith("model_kwargs."):
        return f"model {words(text.removeprefix('model_kwargs.'))}"
    return text
