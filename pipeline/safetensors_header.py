"""A safetensors file's header, read and checked against the file's real size before anything is loaded.

safetensors' own loader trusts the header's offsets and allocates what it claims; a prompt artifact comes from a
registry anyone with write access can fill, so its header is checked here first (pipeline.artifact compares the
shapes with those its recorded config implies before the method is built). Format:
https://huggingface.co/docs/safetensors (8-byte little-endian header length, a JSON header, the data).
"""

from __future__ import annotations

import math
from pathlib import Path

from pipeline.schema import DuplicateKeyError, loads_unique

MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on the JSON header
_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
                "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class HeaderError(ValueError):
    """A file is not a valid safetensors file (one line naming the file and what is wrong)."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


Header = dict[str, tuple[tuple[int, ...], str]]  # tensor name -> (shape, safetensors dtype code such as 'F32')


def read_header(path: Path) -> Header:
    """Tensor name -> (shape, dtype code) from the safetensors header of `path`, checked against the file's real
    size first: header length within the file, every entry's dtype known, its bytes (dtype size x numel) exactly its
    data span, and the spans tiling the data without gap or overlap. Reads the header only, never more than it is."""
    size = path.stat().st_size

    def bad(why: str) -> HeaderError:
        return HeaderError(f"{path} is not a valid safetensors file: {why}")

    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise bad(f"{size} bytes; expected at least an 8-byte header length")
        n = int.from_bytes(head, "little")
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise bad(f"its header length is {n} bytes; expected at most the {size - 8} bytes after it "
                      f"(and at most {MAX_HEADER_BYTES})")
        raw = f.read(n)
    try:
        header = loads_unique(raw)
    except DuplicateKeyError as e:
        raise bad(f"its header is not valid: {e}") from None
    except (ValueError, RecursionError):  # JSONDecodeError, undecodable bytes
        raise bad("its header is not valid JSON") from None
    if not isinstance(header, dict):
        raise bad(f"its header is a JSON {'null' if header is None else type(header).__name__}; expected an object")
    data_len, spans, shapes = size - 8 - n, [], {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name!r} entry {str(entry)[:80]}; expected the keys dtype, shape, data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPE_BYTES:
            raise bad(f"tensor {name!r} has dtype {str(dtype)[:20]!r}; expected one of {', '.join(_DTYPE_BYTES)}")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise bad(f"tensor {name!r} has shape {str(shape)[:80]}; expected a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_len):
            raise bad(f"tensor {name!r} has data_offsets {str(offsets)[:80]}; expected [begin, end] within the "
                      f"{data_len} data bytes")
        claimed = math.prod(shape) * _DTYPE_BYTES[dtype]
        if claimed != offsets[1] - offsets[0]:
            raise bad(f"tensor {name!r} claims shape {shape} of {dtype} ({claimed} bytes) but spans "
                      f"{offsets[1] - offsets[0]} bytes")
        spans.append((offsets[0], offsets[1], name))
        shapes[name] = (tuple(shape), dtype)
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise bad(f"tensor {name!r} starts at byte {begin}; expected {end} (contiguous, non-overlapping data)")
        end = stop
    if end != data_len:
        raise bad(f"its tensors cover {end} of the {data_len} data bytes")
    return shapes
