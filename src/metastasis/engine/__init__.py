"""Training: the epoch loop (``trainer.fit``) and its parts (``data``, ``learner``, ``best``,
``state``, ``history``, ``finalise``), the plain loop functions (``loop``) and checkpoints.

The engine writes a run's data files; figures and reports are drawn above it (``reports``).
"""
