"""Exploratory data analysis: know the data before training on it.

:mod:`.report` writes the report folder (``write_eda_report``: the `metastasis eda` command,
re-exported as ``metastasis.write_eda_report``); :mod:`.image_stats` holds the image statistics
(colour, focus, perceptual hashes, PCA: pure numpy), :mod:`.analysis` the pass over a cached
split, :mod:`.integrity` the integrity section, :mod:`.figures` the figures (arrays in, a
``Figure`` out) and :mod:`.page` the HTML page.
"""
