"""Read a legacy (pre-zip) PyTorch ``.pth`` state dict into NumPy, without torch and safely.

The legacy format is five pickles in a row: a magic number, a protocol version, a dict of
system info, the state dict (whose tensors point at storages through persistent ids), and the
list of storage keys. After the pickles come the storages, in key order, each as an 8-byte
little-endian element count followed by the raw little-endian elements.

A pickle can call any importable function while it loads, so ``pickle.load`` on a downloaded
file runs whatever the file asks for. The unpickler here resolves only a short allow-list of
names, each to a stand-in of ours that records what to build; anything else is refused before
it runs.
"""
from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgclf.errors import ImgclfError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
PROTOCOL_VERSION = 1001

# torch storage class name -> little-endian NumPy dtype of its elements
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
    "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only its dtype matters."""

    dtype: str


@dataclass(frozen=True)
class _StorageRef:
    """A storage the state dict points at; ``offset``/``numel`` describe a legacy view."""

    key: str
    dtype: str
    offset: int
    numel: int


@dataclass(frozen=True)
class _PendingTensor:
    """A tensor whose storage bytes come after the pickles: built once they are read."""

    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    # Stands in for torch._utils._rebuild_tensor(_v2); requires_grad, hooks, metadata ignored.
    return _PendingTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    # Stands in for torch._utils._rebuild_parameter: a Parameter is its data here.
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names in ``_ALLOWED``; records storages met through persistent ids."""

    def __init__(self, file, path: Path):
        super().__init__(file)
        self.path = path
        self.storages: dict[str, tuple[str, int]] = {}  # root key -> (dtype, numel)

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            shown = "os" if module in ("posix", "nt") else module  # os.system pickles as posix.system
            raise ImgclfError(
                f"{self.path}: refused to load: pickle wants to call {shown}.{name}, "
                "which is not tensor data (a malicious or unsupported file)"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise ImgclfError(f"{self.path}: refused to load: unexpected persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel, view = pid
        self.storages.setdefault(str(key), (storage_type.dtype, int(numel)))
        if view is None:
            return _StorageRef(str(key), storage_type.dtype, 0, int(numel))
        _view_key, view_offset, view_numel = view
        return _StorageRef(str(key), storage_type.dtype, int(view_offset), int(view_numel))


def load_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a legacy-format PyTorch state dict as NumPy arrays, refusing any code in the pickle.

    Args:
        path: a ``.pth`` file written by ``torch.save`` in the legacy (non-zip) format.

    Returns:
        The tensors by name, in file order, as C-contiguous NumPy arrays.

    Raises:
        ImgclfError: the file is missing, zip-format, truncated, corrupt, or its pickle asks
            for anything but tensor data (nothing it asks for is run).

    Example:
        >>> sd = load_legacy_state_dict("efficientnet-lite0-57934424.pth")
        >>> sd["_conv_stem.weight"].shape
        (32, 3, 3, 3)
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImgclfError(f"{path}: cannot read weights file ({e.strerror})") from None
    if data[:4] == b"PK\x03\x04":
        raise ImgclfError(
            f"{path}: zip-format PyTorch checkpoint; only the legacy format is supported "
            "(re-save with torch.save(sd, f, _use_new_zipfile_serialization=False))")
    stream = io.BytesIO(data)
    state, storages, keys = _read_pickles(stream, path)
    arrays = _read_storages(data, stream.tell(), storages, keys, path)
    return {str(name): _materialise(t, arrays, path, str(name)) for name, t in state.items()}


def _read_pickles(stream: io.BytesIO, path: Path):
    """The header pickles, the state dict (tensors pending) and the storage key list."""
    try:
        header = [_RestrictedUnpickler(stream, path).load() for _ in range(3)]
        unpickler = _RestrictedUnpickler(stream, path)
        state = unpickler.load()
        keys = _RestrictedUnpickler(stream, path).load()
    except ImgclfError:
        raise
    except Exception as e:  # EOFError, UnpicklingError, ... from a cut or garbled file
        raise ImgclfError(f"{path}: truncated or corrupt PyTorch file ({type(e).__name__}: {e})") from None
    if header[0] != MAGIC_NUMBER or header[1] != PROTOCOL_VERSION:
        raise ImgclfError(f"{path}: not a legacy PyTorch file (bad magic number or protocol)")
    if not (isinstance(header[2], dict) and header[2].get("little_endian", False)):
        raise ImgclfError(f"{path}: written on a big-endian machine; not supported")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint wrapping the weights
    if not (isinstance(state, dict) and all(isinstance(t, _PendingTensor) for t in state.values())):
        raise ImgclfError(f"{path}: does not hold a state dict of tensors")
    return state, unpickler.storages, [str(k) for k in keys]


def _read_storages(data: bytes, pos: int, storages: dict, keys: list[str], path: Path):
    """Each storage's elements as a 1-D array, read in key order after the pickles."""
    arrays = {}
    for key in keys:
        if key not in storages:
            raise ImgclfError(f"{path}: corrupt: storage {key} is listed but never used")
        dtype, numel = storages[key]
        if pos + 8 > len(data):
            raise ImgclfError(f"{path}: truncated: storage {key} is missing")
        count = int.from_bytes(data[pos:pos + 8], "little")
        nbytes = count * np.dtype(dtype).itemsize
        if count != numel or pos + 8 + nbytes > len(data):
            raise ImgclfError(
                f"{path}: truncated or corrupt: storage {key} needs {numel} elements, "
                f"header says {count}, {max(len(data) - pos - 8, 0)} bytes left")
        arrays[key] = np.frombuffer(data, dtype=dtype, count=count, offset=pos + 8)
        pos += 8 + nbytes
    return arrays


def _materialise(t: _PendingTensor, arrays: dict, path: Path, name: str) -> np.ndarray:
    """A copy of the tensor's elements, honouring storage view, offset, size and stride."""
    if t.storage.key not in arrays:
        raise ImgclfError(f"{path}: corrupt: tensor {name} uses storage {t.storage.key}, which is absent")
    flat = arrays[t.storage.key][t.storage.offset:t.storage.offset + t.storage.numel]
    size, stride = t.size, t.stride
    if len(size) != len(stride) or any(s < 0 for s in (*size, *stride)) or t.offset < 0:
        raise ImgclfError(f"{path}: corrupt: tensor {name} has size {size} and stride {stride}")
    if 0 not in size:
        last = t.offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= len(flat):
            raise ImgclfError(f"{path}: corrupt: tensor {name} reaches past its storage")
    elif t.offset > len(flat):
        raise ImgclfError(f"{path}: corrupt: tensor {name} starts past its storage")
    item = flat.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[t.offset:], shape=size, strides=[s * item for s in stride], writeable=False)
    return np.ascontiguousarray(view, dtype=flat.dtype.newbyteorder("="))
