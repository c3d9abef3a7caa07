"""GGUF's value encoding (the GGUF specification in ggml's docs/gguf.md), shared by the test
scripts that write GGUF files by hand: tests/hostile/hostile_inputs.py and tests/fuzz/make_seeds.py.
Standard library only."""
import struct

# GGUF value types (gguf_type) and their little-endian struct formats; 8 = string, 9 = array.
TYPES = dict(u8=0, i8=1, u16=2, i16=3, u32=4, i32=5, f32=6, bool=7, str=8, arr=9, u64=10, i64=11, f64=12)
SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}


def pack_string(s):
    """A GGUF string: u64 length, then the bytes (str is UTF-8 encoded; bytes are taken as they are)."""
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def pack_value(t, v):
    """A value of GGUF type t; an array is (element type, items)."""
    if t == 8:
        return pack_string(v)
    if t == 9:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(pack_value(et, x) for x in items)
    return struct.pack(SCALAR_FORMATS[t], v)
