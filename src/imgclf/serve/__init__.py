"""The serving stage: one model behind an HTTP API and a web page.

Owns: the FastAPI app and its endpoints (``app``), reading request bodies into images within
limits (``requests``), the model card (``card``), who may call it and the access log
(``access``), running uvicorn on one or several processes
(``server``), and the page (``assets/``). May import: ``imgclf.deploy`` (it loads models only
through ``imgclf.deploy.load``), ``imgclf.data.images``, ``imgclf.record``, ``imgclf.ranking``.

Example:
    >>> from imgclf.serve import create_app, serve
    >>> app = create_app("runs/digits", preload=True)
    >>> serve("runs/digits", port=8080)  # doctest: +SKIP
"""
from imgclf.serve.app import create_app
from imgclf.serve.card import model_card
from imgclf.serve.requests import ApiError, Limits
from imgclf.serve.server import app_from_env, serve

__all__ = ["create_app", "serve", "model_card", "Limits", "ApiError", "app_from_env"]
