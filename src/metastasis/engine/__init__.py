"""Training: the epoch loop (``trainer.fit``) and its parts (``data``, ``learner``, ``best``,
``state``, ``history``, ``finalise``) and the plain training-epoch function (``loop``).

The engine writes a run's data files; the exports and figures and reports are drawn above it
(``metastasis.training``, ``reports``). What using a model shares with training lives outside it
(``metastasis.checkpoint``, ``inference.batches``, ``metastasis.memory``): nothing that uses a
trained model imports this package.
"""
