"""Byte sizes: parsing '24GiB' and showing bytes. Plain Python; rounding happens only here, where numbers are shown."""

import re

from qlorafit.errors import UserError

GIB = 1024**3
MIB = 1024**2

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": MIB,
    "g": GIB, "gb": 1000**3, "gib": GIB,   # a bare 'G' means GiB: that is what people mean by '24G' for a card
    "t": 1024**4, "tb": 1000**4, "tib": 1024**4,
}


def parse_bytes(text: str, field: str = "size") -> int:
    """'24GiB' -> 25769803776; '24GB' -> 24e9; '1.5g' -> 1.5 GiB; '1000' -> 1000 bytes.

    >>> parse_bytes("2GiB")
    2147483648
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise UserError(f"{field}: cannot read {text!r} as a size; write it like 24GiB, 16GB or 12000MiB")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if value <= 0:
        raise UserError(f"{field}: must be larger than zero, got {text!r}")
    return int(value)


def fmt_gib(n_bytes: int, digits: int = 2) -> str:
    """'11.80 GiB' (negative values keep their sign)."""
    return f"{n_bytes / GIB:.{digits}f} GiB"
