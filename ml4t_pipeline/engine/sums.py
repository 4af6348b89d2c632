"""Sums of products that come out to the same bits on every machine.

`a @ b` on float64 vectors is a BLAS call, and the OpenBLAS numpy ships picks its kernel by
CPU at run time (DYNAMIC_ARCH): an AVX-512 machine adds the products in another order than an
AVX2 one, and the last bits of an equity differ (seen: a golden output 2e-10 apart on an AMD
EPYC). numpy's own reduction adds in one fixed order (pairwise, eight running sums) whatever
the CPU, so results are byte-identical across machines.
"""

from __future__ import annotations

import numpy as np

_add = np.add.reduce


def dot(a: np.ndarray, b: np.ndarray) -> float:
    """sum(a * b), in an order that does not depend on the CPU (see the module docstring)."""
    return float(_add(a * b))
