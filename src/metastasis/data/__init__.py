"""Readers, checks and the cache: everything up to uint8 patches and labels.

``layouts`` detects what a path holds and hands it to that layout's lister (``kaggle``,
``folder``, ``pcam_h5``: one module per format, each returning a ``listing.Listing``);
``decode`` reads one image under one policy; ``checks`` reports on a data set; ``cache`` turns
a listing into the memory-mapped uint8 arrays training reads (``pcam_h5`` also reads PCam's
rows); ``splits`` and ``id_lists`` choose rows; ``synthetic`` makes the demo data.
"""
