"""Read a PyTorch ``state_dict`` saved in the old (pre-1.6, non-zip) ``.pth`` format with pickle + numpy.

Why not ``torch.load``: torch is a 2 GB dependency we need for one file of weights.

The old format is five pickles in a row, then the raw tensor storages:

1. a magic number, 2. the protocol version (1001), 3. system info (endianness, type sizes),
4. the state dict itself, where each tensor is ``torch._utils._rebuild_tensor_v2(storage, offset,
   size, stride, ...)`` and each storage is a *persistent id*
   ``("storage", torch.FloatStorage, key, location, numel, view_metadata)``,
5. the list of storage keys in the order their bytes follow;
then per storage: an int64 element count and ``count * itemsize`` little-endian bytes.

Only the classes a state dict needs are allowed when unpickling, so a hostile file cannot run code.
"""

import collections
import pickle
import struct
import zipfile

import numpy as np

from capstone.errors import CapstoneError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageRef:
    """A storage named in the pickle; its bytes are read after the pickles."""

    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = dtype, key, numel


class _TensorRef:
    """A tensor that will be a strided view of its storage once the storage is read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused_flags_and_hooks):
    """Stands in for torch._utils._rebuild_tensor_v2: remembers where the tensor's numbers are."""
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused_flags_and_hooks):
    """Stands in for torch._utils._rebuild_parameter: a Parameter is just its tensor here."""
    return data


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles pickle 4 without torch: tensors become _TensorRef, storages _StorageRef."""

    allowed = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def find_class(self, module, name):
        if module == "torch" and name in STORAGE_DTYPES:
            return name  # the storage type travels as its name, see persistent_load
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a state dict")

    def persistent_load(self, persistent_id):
        kind, storage_type, key, _location, numel, view_metadata = persistent_id
        if kind != "storage" or view_metadata is not None:
            raise pickle.UnpicklingError(f"unsupported storage record {persistent_id[:3]}")
        return _StorageRef(np.dtype(STORAGE_DTYPES[storage_type]).newbyteorder("<"), key, numel)


def _read_storages(file, keys, storages):
    """{key: 1-D numpy array} for the raw storages that follow the pickles."""
    arrays = {}
    for key in keys:
        (numel,) = struct.unpack("<q", file.read(8))
        dtype = storages[key].dtype
        data = file.read(numel * dtype.itemsize)
        if len(data) != numel * dtype.itemsize:
            raise ValueError(f"storage {key} is truncated")
        arrays[key] = np.frombuffer(data, dtype=dtype)
    return arrays


def _to_array(tensor, arrays):
    """A _TensorRef -> a C-contiguous native-endian numpy array of its size."""
    flat = arrays[tensor.storage.key][tensor.offset:]
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(flat, tensor.size, [step * itemsize for step in tensor.stride])
    return np.ascontiguousarray(view, dtype=flat.dtype.newbyteorder("="))


def read_state_dict(path):
    """{parameter name: numpy array} from an old-format PyTorch .pth file.

    "efficientnet-lite0-57934424.pth" -> {"_conv_stem.weight": float32 [32, 3, 3, 3], ...}
    Raises CapstoneError when the file is missing, a zip-format .pth, or not a state dict.
    """
    if zipfile.is_zipfile(path):
        raise CapstoneError(
            f"{path}: zip-format .pth (PyTorch >= 1.6) is not supported; expected the old format"
        )
    try:
        with open(path, "rb") as file:
            if pickle.load(file) != MAGIC_NUMBER or pickle.load(file) != PROTOCOL_VERSION:
                raise ValueError("not a legacy PyTorch file")
            sys_info = pickle.load(file)
            if not sys_info.get("little_endian", False):
                raise ValueError("big-endian files are not supported")
            state_dict = _StateDictUnpickler(file).load()
            keys = pickle.load(file)
            storages = {tensor.storage.key: tensor.storage for tensor in state_dict.values()}
            arrays = _read_storages(file, keys, storages)
            return {name: _to_array(tensor, arrays) for name, tensor in state_dict.items()}
    except OSError as error:
        raise CapstoneError(f"{path}: cannot read ({error.strerror or error})") from None
    except (pickle.UnpicklingError, ValueError, EOFError, KeyError, AttributeError, TypeError) as error:
        raise CapstoneError(f"{path}: not a PyTorch state dict in the old .pth format ({error})") from None
