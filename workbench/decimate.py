"""Long series and heatmaps at screen resolution: bins of consecutive steps, one per pixel column.

A window ``[start, stop)`` of a time axis with more steps than ``columns`` is cut into
:class:`Bins` of equal width (the last one may be shorter); a window with at most ``columns``
steps keeps one bin per step, so every step is shown exactly (the raw values, bit for bit).

- :func:`envelope` decimates a series to its min and max per bin (two points per bin, at the
  steps where they occur, in time order: a spike survives, like tsdownsample's MinMax);
- :func:`heat` bins a ``[T, ...]`` array per unit: by the value of largest magnitude (sign kept,
  so spikes survive) or by the mean;
- :func:`thin_marks` keeps at most one mark (e.g. a reset) per bin.

Inputs are tensors or arrays; results are numpy arrays. No UI here.

Examples:
    >>> import numpy as np
    >>> b = bins(0, 10, columns=4)
    >>> b.width, b.count, b.edges().tolist()
    (3, 4, [0, 3, 6, 9, 10])
    >>> x, y = envelope(np.array([0., 5, 1, 2, -3, 2, 0, 0, 1, 9]), 0, 10, columns=4)
    >>> x.tolist(), y.tolist()
    ([0, 1, 3, 4, 6, 8, 9], [0.0, 5.0, 2.0, -3.0, 0.0, 1.0, 9.0])
    >>> heat(np.array([[1.], [-4], [2], [3]]), 0, 4, columns=2)[1].ravel().tolist()
    [-4.0, 3.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError

__all__ = ["COLUMNS", "Bins", "bins", "envelope", "heat", "thin_marks", "as_numpy", "HOW"]

COLUMNS = 1500
"""default number of pixel columns a window is drawn at"""
HOW = ("maxabs", "mean")
"""how :func:`heat` aggregates a bin: the value of largest magnitude, or the mean"""


@dataclass(frozen=True)
class Bins:
    """Consecutive bins of ``width`` steps covering ``[start, stop)`` exactly (the last may be shorter)."""

    start: int
    stop: int
    width: int

    @property
    def count(self) -> int:
        """Number of bins."""
        return -(-(self.stop - self.start) // self.width) if self.stop > self.start else 0

    @property
    def exact(self) -> bool:
        """True when every bin is one step (the raw values are shown)."""
        return self.width == 1

    def edges(self) -> np.ndarray:
        """``[count + 1]`` bin boundaries: ``start, start + width, …, stop``."""
        return np.minimum(np.arange(self.count + 1, dtype=np.int64) * self.width + self.start, self.stop)

    def centers(self) -> np.ndarray:
        """``[count]`` centre of each bin in steps (the step itself for one-step bins), float64.

        Examples:
            >>> bins(0, 7, columns=3).centers().tolist()
            [1.0, 4.0, 6.0]
        """
        e = self.edges()
        return (e[:-1] + e[1:] - 1) / 2.0

    def of(self, step: int) -> int:
        """The bin holding ``step``."""
        return (int(step) - self.start) // self.width


def _check_window(start: int, stop: int, columns: int, length: int | None = None) -> tuple[int, int, int]:
    start, stop, columns = int(start), int(stop), int(columns)
    if columns < 1:
        raise ConfigError(f"columns: expected an int >= 1; got {columns}.")
    if start < 0 or stop < start or (length is not None and stop > length):
        where = "" if length is None else f" of a series of {length} steps"
        raise ConfigError(f"window: expected 0 <= start <= stop{where}; got start={start}, stop={stop}.")
    return start, stop, columns


def bins(start: int, stop: int, *, columns: int = COLUMNS) -> Bins:
    """The bins that draw steps ``[start, stop)`` in at most ``columns`` columns (width 1 when they fit).

    Examples:
        >>> bins(0, 500, columns=1500).exact, bins(0, 100_000, columns=1500).count
        (True, 1493)
    """
    start, stop, columns = _check_window(start, stop, columns)
    n = stop - start
    return Bins(start, stop, max(1, -(-n // columns)))


def as_numpy(values) -> np.ndarray:
    """A tensor (any device, half precision widened to float32) or an array-like as a numpy array.

    Examples:
        >>> as_numpy(torch.ones(2, dtype=torch.float16)).dtype
        dtype('float32')
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dtype in (torch.bfloat16, torch.float16):
            values = values.float()
        return values.numpy()
    return np.asarray(values)


def _windowed(values, start: int, stop: int | None, columns: int, *, series: bool):
    """``(bins, window of values)``: the checked arguments of :func:`envelope` and :func:`heat`."""
    a = as_numpy(values)
    if (a.ndim != 1) if series else (a.ndim < 1):
        what = "a series [T]" if series else "an array [T, ...]"
        raise ConfigError(f"values: expected {what}; got shape {tuple(a.shape)}.")
    stop = a.shape[0] if stop is None else stop
    start, stop, columns = _check_window(start, stop, columns, a.shape[0])
    return bins(start, stop, columns=columns), a[start:stop]


def _blocks(a: np.ndarray, b: Bins):
    """``(full [n_full, width, ...], tail [r, ...] or None)`` views of ``a`` (time-major, already windowed)."""
    n_full = (b.stop - b.start) // b.width
    full = a[: n_full * b.width].reshape(n_full, b.width, *a.shape[1:])
    tail = a[n_full * b.width:] if n_full * b.width < a.shape[0] else None
    return full, tail


def envelope(values, start: int = 0, stop: int | None = None, *, columns: int = COLUMNS) -> tuple[np.ndarray, np.ndarray]:
    """Min/max envelope of a series ``[T]`` over steps ``[start, stop)``: ``(x steps int64, y)``.

    Each bin gives its minimum and its maximum at the steps where they occur, in time order
    (one point when they are the same step). A window that fits ``columns`` returns every step
    and the raw values.

    Examples:
        >>> x, y = envelope(np.arange(6.0), 1, 4)
        >>> x.tolist(), y.tolist()
        ([1, 2, 3], [1.0, 2.0, 3.0])
    """
    b, w = _windowed(values, start, stop, columns, series=True)
    start = b.start
    if b.exact:
        return np.arange(b.start, b.stop, dtype=np.int64), w.copy()
    full, tail = _blocks(w, b)
    lo, hi = _arg(full, "min"), _arg(full, "max")
    offsets = np.arange(full.shape[0], dtype=np.int64) * b.width
    lo, hi = lo + offsets, hi + offsets
    if tail is not None:
        t0 = full.shape[0] * b.width
        lo = np.append(lo, t0 + _arg(tail[None], "min"))
        hi = np.append(hi, t0 + _arg(tail[None], "max"))
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    idx = np.stack([first, second], 1).ravel()
    keep = np.ones(idx.shape[0], dtype=bool)
    keep[1::2] = first != second
    idx = idx[keep]
    return idx + start, w[idx]


def _arg(blocks: np.ndarray, kind: str) -> np.ndarray:
    """Index of the min or max along axis 1 of ``[n, width]`` blocks; NaN is skipped (an all-NaN bin gives 0)."""
    if blocks.dtype.kind == "f" and np.isnan(blocks).any():
        blocks = np.where(np.isnan(blocks), np.inf if kind == "min" else -np.inf, blocks)
    return (np.argmin if kind == "min" else np.argmax)(blocks, axis=1).astype(np.int64)


def heat(values, start: int = 0, stop: int | None = None, *, columns: int = COLUMNS,
         how: str = "maxabs") -> tuple[np.ndarray, np.ndarray]:
    """Bins ``values [T, ...]`` (time first) over steps ``[start, stop)``: ``(x centres, z [count, ...])``.

    ``how="maxabs"`` keeps, per unit and bin, the value of largest magnitude (its sign kept);
    ``"mean"`` averages. A window that fits ``columns`` returns the raw values of every step.

    Examples:
        >>> z = np.array([[1.0, 0.0], [-3.0, 1.0], [2.0, 5.0]])
        >>> heat(z, columns=1)[1].tolist(), heat(z, columns=1, how="mean")[1].tolist()
        ([[-3.0, 5.0]], [[0.0, 2.0]])
    """
    if how not in HOW:
        raise ConfigError(f"how: expected one of {HOW}; got {how!r}.")
    b, w = _windowed(values, start, stop, columns, series=False)
    if b.exact:
        return b.centers(), np.array(w, copy=True)
    full, tail = _blocks(w, b)
    parts = [_reduce(full, how)]
    if tail is not None:
        parts.append(_reduce(tail[None], how))
    return b.centers(), np.concatenate(parts, 0)


def _reduce(blocks: np.ndarray, how: str) -> np.ndarray:
    if how == "mean":
        return blocks.mean(axis=1, dtype=np.float64).astype(blocks.dtype, copy=False)
    hi, lo = blocks.max(axis=1), blocks.min(axis=1)
    return np.where(np.abs(lo) > np.abs(hi), lo, hi)


def thin_marks(steps, start: int, stop: int, *, columns: int = COLUMNS) -> np.ndarray:
    """The marks (sorted steps, e.g. resets) inside ``[start, stop)``, at most one per bin (the first).

    Examples:
        >>> thin_marks([2, 3, 4, 9, 15], 0, 12, columns=4).tolist()
        [2, 3, 9]
    """
    s = np.asarray(as_numpy(steps), dtype=np.int64).ravel()
    start, stop, columns = _check_window(start, stop, columns)
    s = s[(s >= start) & (s < stop)]
    b = bins(start, stop, columns=columns)
    if b.exact or s.size == 0:
        return s
    which = (s - start) // b.width
    first = np.ones(s.shape[0], dtype=bool)
    first[1:] = which[1:] != which[:-1]
    return s[first]
