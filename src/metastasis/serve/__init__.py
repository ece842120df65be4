"""The REST service and web page (`metastasis serve`): `app.create_app(checkpoint)`."""
