"""Pathology foundation encoders, offline: the registry of known encoders (``registry.py``),
their weights from local files (``weights.py``), the encoder module (``backbone.py``), the
embedding store (``store.py``) and ``metastasis embed`` (``embed.py``). The probe that turns an
encoder into a patch classifier is the ``encoder-probe`` model family
(``metastasis.models.encoder_probe``); it is trained by ``metastasis train --encoder``
(``metastasis.engine.probe``).
"""
