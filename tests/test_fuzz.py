"""A bounded fuzz run (issue 18): mutated and truncated images, .tflite, .keras and
checkpoint.npz files, and request bodies. Each case returns or raises our one-line error; never
another exception, never longer than a time limit, never a large jump in memory.

Reproducible (derandomize=True); ``benchmarks/fuzz.py --minutes N`` runs the same targets longer.
"""
from __future__ import annotations

import contextlib
import resource
import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _fuzz

CASE_SECONDS = 10  # a case that takes longer is a hang
MEMORY_GROWTH_MB = 1500  # a case that claims more is a memory bomb that got through

FLIPS = st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=8)
CUT = st.none() | st.integers(0, 2**20)


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@contextlib.contextmanager
def bounded():
    """Fail a case that runs past CASE_SECONDS or grows the peak RSS past the allowance."""
    def expire(*_):
        raise TimeoutError(f"case ran past {CASE_SECONDS} s")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown < MEMORY_GROWTH_MB, f"peak memory grew {grown:.0f} MB"


def check(target, *args) -> None:
    with bounded():
        try:
            target(*args)
        except _fuzz.EXPECTED as exc:
            assert "\n" not in str(exc), f"a multi-line error: {exc!r}"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    model = _fuzz.tiny_model()
    return {"tflite": _fuzz.tflite_seed(model), "keras": _fuzz.keras_seed(model, folder),
            "checkpoint": _fuzz.checkpoint_seed(folder), **_fuzz.image_seeds()}


@pytest.mark.parametrize("fmt", ["png", "jpeg", "gif", "webp", "tiff"])
def test_mutated_images_through_the_decoder(seeds, fmt):
    @_settings(150)
    @given(FLIPS, CUT)
    def case(flips, cut):
        check(_fuzz.decode, _fuzz.mutate(seeds[fmt], flips, cut))
    case()


def test_mutated_tflite_through_load(seeds, tmp_path):
    # 120 cases: every path-loaded .tflite first runs once in a child process (runtime.trial), ~0.4 s each
    @_settings(120)
    @given(FLIPS, CUT)
    def case(flips, cut):
        check(_fuzz.load_model_file, _fuzz.mutate(seeds["tflite"], flips, cut), tmp_path / "m.tflite")
    case()


def test_mutated_keras_through_load(seeds, tmp_path):
    @_settings(25)
    @given(st.integers(0, 10), FLIPS, CUT)
    def case(member, flips, cut):
        data = _fuzz.zip_member_mutate(seeds["keras"], member, flips, cut)
        check(_fuzz.load_model_file, data, tmp_path / "m.keras")
    case()


def test_mutated_checkpoints_through_load(seeds, tmp_path):
    @_settings(150)
    @given(st.integers(0, 10), FLIPS, CUT, st.booleans())
    def case(member, flips, cut, inside):
        seed = seeds["checkpoint"]
        data = _fuzz.zip_member_mutate(seed, member, flips, cut) if inside else _fuzz.mutate(seed, flips, cut)
        check(_fuzz.load_checkpoint_bytes, data, tmp_path)
    case()


@pytest.mark.parametrize("kind", ["multipart", "json", "raw"])
def test_mutated_bodies_through_the_request_reader(seeds, kind):
    content_type, body = _fuzz.body_seeds(seeds["png"])[kind]

    @_settings(100)
    @given(FLIPS, CUT)
    def case(flips, cut):
        check(_fuzz.read_request, content_type, _fuzz.mutate(body, flips, cut))
    case()
