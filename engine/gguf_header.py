"""A GGUF header reader that reads only what the harness needs: scalar metadata, array lengths, tensor infos.

`gguf.GGUFReader` builds a Python object per element of every metadata array; a 150k-token vocabulary and its
merges cost it about 15 seconds per file. This walks the same layout (GGUF v2/v3, little-endian) with
`struct.unpack_from` over a memory map, skipping array contents, in well under a second.
"""
from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFHeaderError(ValueError):
    pass


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_id: int
    offset: int  # from the start of the data section


@dataclass
class GGUFHeader:
    version: int
    fields: dict = field(default_factory=dict)  # scalars and strings by key; arrays as ("array", elem type, length)
    tensors: list[TensorInfo] = field(default_factory=list)
    data_start: int = 0
    file_size: int = 0

    def array_length(self, key: str) -> int | None:
        value = self.fields.get(key)
        return value[2] if isinstance(value, tuple) and value[:1] == ("array",) else None


def read_header(path: Path) -> GGUFHeader:
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        if size < 24:
            raise GGUFHeaderError(f"only {size} bytes")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(buf, size)


def _parse(buf, size: int) -> GGUFHeader:
    """One pass over the header in the order the GGUF format lays it out (magic, counts, key-values, tensor infos);
    longer than 60 lines because splitting it would scatter that order over functions that share one offset."""
    if buf[:4] != b"GGUF":
        raise GGUFHeaderError("no GGUF magic")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    if version not in (2, 3):
        raise GGUFHeaderError(f"GGUF version {version} (only 2 and 3 are read)")
    pos = 24

    def need(n: int) -> None:
        if pos + n > size:
            raise GGUFHeaderError(f"header runs past the end of the file at byte {pos}")

    def string() -> str:
        nonlocal pos
        need(8)
        (n,) = struct.unpack_from("<Q", buf, pos)
        need(8 + n)
        text = bytes(buf[pos + 8:pos + 8 + n]).decode("utf-8", errors="replace")
        pos += 8 + n
        return text

    def scalar(type_id: int):
        nonlocal pos
        fmt = _SCALARS.get(type_id)
        if fmt is None:
            raise GGUFHeaderError(f"unknown value type {type_id} at byte {pos}")
        width = struct.calcsize(fmt)
        need(width)
        (value,) = struct.unpack_from(fmt, buf, pos)
        pos += width
        return value

    def skip_array(elem: int, count: int) -> None:
        nonlocal pos
        if elem == _STRING:
            for _ in range(count):
                need(8)
                (n,) = struct.unpack_from("<Q", buf, pos)
                pos += 8 + n
            need(0)
        elif elem == _ARRAY:
            for _ in range(count):
                need(12)
                inner, inner_count = struct.unpack_from("<IQ", buf, pos)
                pos += 12
                skip_array(inner, inner_count)
        else:
            fmt = _SCALARS.get(elem)
            if fmt is None:
                raise GGUFHeaderError(f"unknown array element type {elem} at byte {pos}")
            pos += struct.calcsize(fmt) * count
            need(0)

    header = GGUFHeader(version=version, file_size=size)
    for _ in range(n_kv):
        key = string()
        type_id = scalar(4)
        if type_id == _STRING:
            header.fields[key] = string()
        elif type_id == _ARRAY:
            need(12)
            elem, count = struct.unpack_from("<IQ", buf, pos)
            pos += 12
            skip_array(elem, count)
            header.fields[key] = ("array", elem, count)
        else:
            header.fields[key] = scalar(type_id)
    for _ in range(n_tensors):
        name = string()
        n_dims = scalar(4)
        need(8 * n_dims + 12)
        shape = struct.unpack_from(f"<{n_dims}Q", buf, pos)
        pos += 8 * n_dims
        type_id, offset = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        header.tensors.append(TensorInfo(name, tuple(int(d) for d in shape), type_id, offset))
    alignment = header.fields.get("general.alignment", 32)
    header.data_start = pos + (-pos % alignment)
    return header
