"""Writes the torch.save fixtures of TorchCheckpointTests into Tests/ViTTests/Fixtures/torch/.

Run by hand with the peers' Python (torch 2.13 CPU):
    /opt/catlip-peers/bin/python Tests/ViTTests/Fixtures/make_torch_fixtures.py

Files written:
- state.pt: a state dict (float32, float16, bfloat16, float64, an int64 scalar, a transposed
  view, two views of one storage, an nn.Parameter), saved by torch.save.
- wrapped.pt: {"state_dict": an nn.Module's state dict (OrderedDict with _metadata), "epoch": 3}.
- expected.safetensors: every tensor above as contiguous float32, "state/NAME" and "wrapped/NAME".
- vocab.pkl (pickle.dump, default protocol), vocab_p2.pkl (protocol 2), vocab.tsv (the pairs).
- legacy.pt: torch.save(..., _use_new_zipfile_serialization=False).
- Hostile archives, all built from hand-written pickles (nothing is ever unpickled here):
  malicious.pt (os.system through REDUCE), reduce_storage.pt (REDUCE of an allowed storage
  class), offset_past_end.pt, shape_overflow.pt, shape_vs_storage.pt, storage_size.pt,
  negative_stride.pt,
  missing_storage.pt, compressed.pt, big_endian.pt, duplicate_name.pt.
"""
import collections
import io
import os
import pickle
import zipfile

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(22)


def path(name):
    return os.path.join(OUT, name)


# --- valid checkpoints -------------------------------------------------------------------------
base = torch.arange(10, dtype=torch.float32) * 0.25 - 1.0
state = {
    "f32": torch.randn(2, 3),
    "f16": torch.tensor([1.0, -2.5, 65504.0, 6e-8, -0.0, 3.14159], dtype=torch.float16),
    "bf16": torch.tensor([1.0, -3.0e38, 1e-38, 0.1, 7.0], dtype=torch.bfloat16),
    "f64": torch.tensor([[0.1, -1e-300], [1e30, 123456789.123]], dtype=torch.float64),
    "bn.num_batches_tracked": torch.tensor(12345, dtype=torch.int64),
    "transposed": torch.randn(3, 4).t(),  # shape [4, 3], strides (1, 4)
    "shared.a": base[2:5],  # offset 2 in a 10-element storage
    "shared.b": base[6:10].view(2, 2),  # offset 6 in the same storage
    "param": torch.nn.Parameter(torch.randn(3)),
}
assert not state["transposed"].is_contiguous()
torch.save(state, path("state.pt"))

module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
wrapped_sd = module.state_dict()
torch.save({"state_dict": wrapped_sd, "epoch": 3}, path("wrapped.pt"))

expected = {}
for name, t in state.items():
    expected["state/" + name] = t.detach().to(torch.float32).contiguous()
for name, t in wrapped_sd.items():
    expected["wrapped/" + name] = t.detach().to(torch.float32).contiguous()
save_file(expected, path("expected.safetensors"))

# --- vocabularies --------------------------------------------------------------------------------
vocab = {}
for i in range(1200):
    vocab["n%08d" % (i * 7919 % 100000000)] = (i * 104729) % 70000 + (i % 3) * 1000
vocab["big"] = 5_000_000_000  # LONG1
vocab["zero"] = 0
vocab["unicode ü"] = 300
with open(path("vocab.pkl"), "wb") as f:
    pickle.dump(vocab, f)
with open(path("vocab_p2.pkl"), "wb") as f:
    pickle.dump(vocab, f, protocol=2)
with open(path("vocab.tsv"), "w", encoding="utf-8") as f:
    for k, v in vocab.items():
        f.write("%s\t%d\n" % (k, v))

# --- legacy format -------------------------------------------------------------------------------
torch.save({"a": torch.zeros(2)}, path("legacy.pt"), _use_new_zipfile_serialization=False)


# --- hand-written pickles for hostile archives ---------------------------------------------------
class Raw:
    """Pickle opcodes assembled by hand (protocol 2, as torch writes)."""

    def __init__(self):
        self.b = bytearray(pickle.PROTO + b"\x02")

    def op(self, code):
        self.b += code
        return self

    def glob(self, module, name):
        self.b += pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n"
        return self

    def str(self, s):
        data = s.encode()
        self.b += pickle.BINUNICODE + len(data).to_bytes(4, "little") + data
        return self

    def int(self, n):
        self.b += pickle.LONG1 + bytes([8]) + n.to_bytes(8, "little", signed=True)
        return self

    def ints(self, values):
        self.op(pickle.MARK)
        for v in values:
            self.int(v)
        return self.op(pickle.TUPLE)

    def tensor(self, storage_type, key, numel, offset, size, stride):
        self.glob("torch._utils", "_rebuild_tensor_v2").op(pickle.MARK)
        self.op(pickle.MARK).str("storage").glob("torch", storage_type).str(key).str("cpu")
        self.int(numel).op(pickle.TUPLE).op(pickle.BINPERSID)
        self.int(offset).ints(size).ints(stride).op(pickle.NEWFALSE)
        self.glob("collections", "OrderedDict").op(pickle.EMPTY_TUPLE).op(pickle.REDUCE)
        return self.op(pickle.TUPLE).op(pickle.REDUCE)

    def state_dict(self, items):
        """items: (name, callable adding the value)."""
        self.op(pickle.EMPTY_DICT).op(pickle.MARK)
        for name, add in items:
            self.str(name)
            add(self)
        return self.op(pickle.SETITEMS).op(pickle.STOP)


def archive(name, pkl, storages, byteorder=b"little", compress=()):
    """A torch.save-like zip: archive/data.pkl, archive/data/KEY, byteorder, version."""
    with zipfile.ZipFile(path(name), "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", bytes(pkl))
        z.writestr("archive/byteorder", byteorder)
        for key, data in storages.items():
            method = zipfile.ZIP_DEFLATED if key in compress else zipfile.ZIP_STORED
            z.writestr("archive/data/" + key, data, compress_type=method)
        z.writestr("archive/version", b"3\n")


floats1000 = torch.arange(1000, dtype=torch.float32).numpy().tobytes()


def one_tensor(name, numel, offset, size, stride, key="0", storage_type="FloatStorage"):
    return Raw().state_dict([(name, lambda r: r.tensor(storage_type, key, numel, offset, size, stride))]).b


# os.system('echo pwned') through REDUCE: refused at the GLOBAL, nothing runs.
evil = Raw().glob("os", "system").str("echo pwned").op(pickle.TUPLE1).op(pickle.REDUCE).op(pickle.STOP)
archive("malicious.pt", evil.b, {})
# An allowed global (a storage class) called through REDUCE.
call = Raw().glob("torch", "FloatStorage").op(pickle.EMPTY_TUPLE).op(pickle.REDUCE).op(pickle.STOP)
archive("reduce_storage.pt", call.b, {})
archive("offset_past_end.pt", one_tensor("blocks.0.qkv.weight", 1000, 900, [1200], [1]), {"0": floats1000})
archive("shape_overflow.pt", one_tensor("w", 1000, 0, [2**40, 2**40], [0, 0]), {"0": floats1000})
# A shape that needs more than the storage holds.
archive("shape_vs_storage.pt", one_tensor("w", 1000, 0, [10, 200], [200, 1]), {"0": floats1000})
# The storage says 1000 floats, its entry holds 999.
archive("storage_size.pt", one_tensor("w", 1000, 0, [10, 100], [100, 1]), {"0": floats1000[:-4]})
archive("negative_stride.pt", one_tensor("w", 1000, 999, [10], [-1]), {"0": floats1000})
archive("missing_storage.pt", one_tensor("w", 1000, 0, [1000], [1], key="7"), {"0": floats1000})
archive("compressed.pt", one_tensor("w", 1000, 0, [1000], [1]), {"0": floats1000}, compress=("0",))
archive("big_endian.pt", one_tensor("w", 1000, 0, [1000], [1]), {"0": floats1000}, byteorder=b"big")
dup = Raw().state_dict([
    ("w", lambda r: r.tensor("FloatStorage", "0", 1000, 0, [10], [1])),
    ("w", lambda r: r.tensor("FloatStorage", "0", 1000, 10, [10], [1])),
])
archive("duplicate_name.pt", dup.b, {"0": floats1000})

total = sum(os.path.getsize(path(n)) for n in os.listdir(OUT))
print("wrote %d files, %d bytes in %s" % (len(os.listdir(OUT)), total, OUT))
