"""The REST service and web page (`metastasis serve`): `app.create_app(checkpoint)`.

Importing it without the ``serve`` extra is one line naming the ``pip install`` that brings it
(`metastasis.extras`), never a ``ModuleNotFoundError``."""

from metastasis.extras import SERVE, require

require("the REST service", *SERVE)
