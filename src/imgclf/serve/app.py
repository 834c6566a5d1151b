"""The HTTP service: a trained model behind a JSON API and one web page.

``POST /predict`` takes images (multipart upload, a JSON body of base64 strings, or one raw
image body) and answers the top-k classes per image; ``GET /health`` is 503 until the model is
loaded and warmed up; ``GET /model`` is the model card; ``GET /`` is the page, whose assets
the app serves itself. Every refusal is a 4xx JSON ``{"error": ..., "detail": ...}``; uploads
are decoded in memory and never written to disk. The model comes from :func:`imgclf.deploy.predict.load`
only, so whatever it loads, the service serves.

Example:
    >>> app = create_app("runs/digits", limits=Limits(max_images=4))
    >>> # uvicorn.run(app)  or  $ imgclf serve runs/digits
"""
from __future__ import annotations

import asyncio
import io
import logging
import os
import threading
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from imgclf.errors import ImgclfError
from imgclf.ranking import answer, top_k as rank
from imgclf.serve.access import AccessLog, require_key
from imgclf.serve.card import model_card
from imgclf.serve.requests import ApiError, Limits, read_body, read_uploads

ASSETS = Path(__file__).parent / "assets"
# The page loads nothing from elsewhere; the browser enforces it.
_PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
             "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
log = logging.getLogger("imgclf.serve")


class Label(BaseModel):
    label: str
    probability: float


class ImagePrediction(BaseModel):
    name: str
    label: str  # the top class, or "unknown" below min_confidence
    top: list[Label]


class PredictResponse(BaseModel):
    top_k: int
    min_confidence: float
    predictions: list[ImagePrediction]


class ErrorResponse(BaseModel):
    error: str
    detail: Any = None


class _State:
    def __init__(self, source: Path, limits: Limits):
        self.source, self.limits = source, limits
        self.classifier = None
        self.card: dict | None = None
        self.error: str | None = None
        self.lock = threading.Lock()  # one forward pass at a time: interpreters are not thread-safe
        self.limiter: anyio.CapacityLimiter | None = None
        self.api_key: str | None = None  # None: /predict and /model are open

    def load(self, background: bool = False) -> None:
        from imgclf.deploy import predict
        try:
            clf = predict.load(self.source)
            for n in (1, 2):  # trace now (a batch of one, then any size), not on a user's request
                clf.predict_arrays(np.zeros((n, clf.image_size, clf.image_size, 3), np.uint8))
            self.card, self.classifier = model_card(self.source, clf), clf
        except Exception as exc:
            if not background:
                raise
            # Loading in the background: the app keeps answering and /health reports why.
            self.error = str(exc) if isinstance(exc, ImgclfError) else f"{type(exc).__name__}: {exc}"
            log.error("cannot load %s: %s", self.source, self.error)

    def ready(self):
        if self.classifier is None:
            raise ApiError(503, "model not ready", self.error or "loading")
        return self.classifier


def _predict(state: _State, uploads: list[tuple[str, bytes]], top_k: int, min_confidence: float = 0.0) -> dict:
    from imgclf.data.images import BadImage, read_image, resize
    clf = state.classifier
    max_pixels = min(state.limits.max_pixels, clf.max_pixels)
    arrays = []
    for i, (name, data) in enumerate(uploads):
        try:
            arrays.append(resize(read_image(io.BytesIO(data), max_pixels), clf.image_size))
        except BadImage as exc:
            too_large = exc.reason.startswith("too large")
            raise ApiError(413 if too_large else 415, "image too large" if too_large else "not an image",
                           {"index": i, "name": name, "reason": exc.reason}) from None
    with state.lock:
        probs = clf.predict_arrays(np.stack(arrays))
    k = min(top_k, len(clf.class_names))
    ranked = [(name, rank(p, clf.class_names, k)) for (name, _), p in zip(uploads, probs)]
    predictions = [{"name": name, "label": answer(top, min_confidence),
                    "top": [{"label": label, "probability": prob} for label, prob in top]} for name, top in ranked]
    return {"top_k": k, "min_confidence": min_confidence, "predictions": predictions}


_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "application/json": {"schema": {"type": "object", "required": ["images"], "properties": {
        "images": {"type": "array", "items": {"type": "string", "description": "base64 or a data: URL"}}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}}}}}
_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422, 503)}


def _error(status: int, error: str, detail: Any = None, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(request, exc: ApiError):
        return _error(exc.status, exc.error, exc.detail)

    async def http_error(request, exc: HTTPException):
        from http import HTTPStatus
        return _error(exc.status_code, HTTPStatus(exc.status_code).phrase.lower(), exc.detail,
                      getattr(exc, "headers", None))

    async def invalid(request, exc: RequestValidationError):
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
        return _error(422, "invalid parameter", detail)

    async def bug(request, exc: Exception):  # never meant to happen; a test throws garbage to make sure
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, bug)


def create_app(source: str | Path, *, limits: Limits | None = None, preload: bool = False,
               api_key: str | None = None, cors_origins: tuple[str, ...] = (), access_log: bool = False) -> FastAPI:
    """The FastAPI app serving one model.

    Args:
        source: a run directory or anything else :func:`imgclf.deploy.predict.load` accepts.
        limits: request limits (defaults: :class:`Limits`).
        preload: load the model now (a bad source raises ImgclfError here) instead of in the
            background after start-up, while ``/health`` answers 503.
        api_key: when set, ``/predict`` and ``/model`` answer 401 unless the request carries
            ``Authorization: Bearer <api_key>``; ``/health`` and the page stay open.
        cors_origins: browser origins on other hosts allowed to call the API (CORS).
        access_log: one line per request on stdout (serve.access.AccessLog).

    Returns:
        The app; run it with uvicorn.

    Example:
        >>> from fastapi.testclient import TestClient
        >>> with TestClient(create_app("runs/digits", preload=True)) as client:
        ...     client.get("/health").json()["status"]
        'ready'
    """
    state = _State(Path(source), limits or Limits())
    state.api_key = api_key or None
    if preload:
        state.load()

    @asynccontextmanager
    async def lifespan(app):
        # Per start, not per app: anyio primitives belong to the event loop that made them.
        state.limiter = anyio.CapacityLimiter(state.limits.decode_threads)
        loading = None if state.classifier else asyncio.create_task(asyncio.to_thread(state.load, True))
        yield
        if loading and not loading.done():
            log.warning("shutting down while the model is still loading")

    from imgclf import __version__
    app = FastAPI(title="imgclf", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Image classification with a model trained by imgclf.")
    app.state.imgclf = state
    _add_error_handlers(app)
    app.mount("/assets", StaticFiles(directory=ASSETS), name="assets")
    _add_routes(app, state)
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    if access_log:
        app.add_middleware(AccessLog)  # added last: outermost, so it times and logs every answer
    return app


def _add_routes(app: FastAPI, state: _State) -> None:
    """The page, /health, /model and /predict, all answering from ``state``."""
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(ASSETS / "index.html", headers={"Content-Security-Policy": _PAGE_CSP})

    @app.get("/health", responses={503: {"description": "the model is loading or failed to load"}})
    async def health():
        """Ready (200) once the model is loaded and warmed up; 503 before, or if loading failed."""
        if state.classifier is not None:  # pid: which --workers process answered
            return {"status": "ready", "pid": os.getpid()}
        status = "failed" if state.error else "loading"
        return JSONResponse({"status": status, "detail": state.error}, status_code=503)

    @app.get("/model", responses=_ERRORS)
    async def model(request: Request):
        """The model card: backbone, input size, class names, the run's test metrics, the limits."""
        require_key(request.headers.get("authorization"), state.api_key)
        state.ready()
        return {**state.card, "limits": asdict(state.limits)}

    @app.post("/predict", response_model=PredictResponse, responses=_ERRORS, openapi_extra=_PREDICT_BODY)
    async def predict(request: Request, top_k: int = 5, min_confidence: float = 0.0):
        """Top-k classes with (calibrated) probabilities for each image, in the order they were
        sent; ``label`` is the top class, or "unknown" when its probability is below ``min_confidence``."""
        require_key(request.headers.get("authorization"), state.api_key)
        state.ready()
        if not 1 <= top_k <= state.limits.max_top_k:
            raise ApiError(422, "invalid parameter", f"top_k must be 1-{state.limits.max_top_k}, got {top_k}")
        if not 0.0 <= min_confidence <= 1.0:
            raise ApiError(422, "invalid parameter", f"min_confidence must be 0-1, got {min_confidence}")
        uploads = await read_uploads(request, await read_body(request, state.limits.max_upload_bytes))
        request.state.images = len(uploads)  # for the access log
        if not uploads:
            raise ApiError(400, "no images", "the request holds no image")
        if len(uploads) > state.limits.max_images:
            raise ApiError(413, "too many images", f"at most {state.limits.max_images} per request, "
                                                   f"got {len(uploads)}")
        state.limiter = state.limiter or anyio.CapacityLimiter(state.limits.decode_threads)
        return await anyio.to_thread.run_sync(_predict, state, uploads, top_k, min_confidence,
                                           limiter=state.limiter)

