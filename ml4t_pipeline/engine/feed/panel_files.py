"""A prepared panel: a run's data in one read-only chunk, and its files on disk.

`PreparedData` is what the loop reads like a `MarketData` (`feed.Feed`). An entry on disk is one
`.npy` file per array (the calendar, the bars, `has_bar`, each signal and context column, the
delistings) and `manifest.json`, written last, which names the arrays, the columns and the input
files' stat records; `entry_files` gives the files to publish, `read_entry` memory-maps them
read-only (None when a file is missing or damaged). Arrays are stored without pickle: text asset
ids as fixed-width strings, turned back into the object array the feed uses. The cache policy
(which entry, when it is valid, eviction) is `feed.prepared`'s.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ml4t_pipeline.engine.feed.actions import ActionRows, load_actions
from ml4t_pipeline.engine.feed.listings import Delistings
from ml4t_pipeline.engine.feed.market_data import MarketData
from ml4t_pipeline.engine.feed.panel import Calendar, Panel
from ml4t_pipeline.engine.results.output import write_text
from ml4t_pipeline.fingerprint import FileStat

PANEL_FORMAT = "1"
MANIFEST = "manifest.json"
_BARS = ("open", "high", "low", "close")


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedData:
    """A run's data in one read-only chunk, as the loop reads a `MarketData`."""

    calendar: Calendar
    panel: Panel
    signal_columns: tuple[str, ...]
    context_columns: tuple[str, ...]
    has_volume: bool
    delistings: Delistings
    actions: ActionRows | None
    widened_bars: int
    n_rows: int
    entry: Path | None = None  # the cache entry it was read from or stored as (None: neither)

    @property
    def n_chunks(self) -> int:
        return 1

    def chunks(self) -> Iterator[Panel]:
        """The one chunk, in a shell of its own: feature providers add their arrays to the
        shell's dicts, so runs sharing this data never see each other's features."""
        yield dataclasses.replace(
            self.panel, signals=dict(self.panel.signals), context=dict(self.panel.context)
        )

    @classmethod
    def from_market_data(cls, data: MarketData) -> PreparedData:
        """The single chunk of an eager `MarketData` (consumed: its chunks are not read again)."""
        if data.n_chunks != 1:
            msg = f"a prepared panel holds one chunk; this data has {data.n_chunks}"
            raise ValueError(msg)
        (panel,) = data.chunks()
        return cls(
            calendar=data.calendar,
            panel=panel,
            signal_columns=tuple(data.signal_columns),
            context_columns=tuple(data.context_columns),
            has_volume=data.has_volume,
            delistings=data.delistings,
            actions=data.actions,
            widened_bars=data.widened_bars,
            n_rows=data.n_rows,
        )


def entry_files(data: PreparedData, stats: dict[str, FileStat]) -> dict[str, Any]:
    """The entry's files: one .npy per array, and the manifest (written last)."""
    panel, calendar = data.panel, data.calendar
    arrays: dict[str, np.ndarray] = {
        "timestamps": calendar.timestamps,
        "assets": _saveable_ids(calendar.assets),
        "has_bar": panel.has_bar,
        **{name: getattr(panel, name) for name in _BARS},
    }
    if data.has_volume:
        arrays["volume"] = panel.volume
    arrays |= {f"signal-{i}": panel.signals[c] for i, c in enumerate(data.signal_columns)}
    arrays |= {f"context-{i}": panel.context[c] for i, c in enumerate(data.context_columns)}
    bars = sorted(data.delistings.at_bar)
    arrays["delisted-bars"] = np.array(
        [b for b in bars for _ in data.delistings.at_bar[b]], dtype=np.int64
    )
    arrays["delisted-assets"] = (
        np.concatenate([data.delistings.at_bar[b] for b in bars]).astype(np.int64)
        if bars
        else np.empty(0, np.int64)
    )
    arrays["delisted-before"] = data.delistings.before.astype(np.int64)
    manifest = {
        "format": PANEL_FORMAT,
        "files": {role: dataclasses.asdict(f) for role, f in stats.items()},
        "text_ids": calendar.assets.dtype.kind == "O",
        "prices_name": calendar.prices,
        "signal_columns": list(data.signal_columns),
        "context_columns": list(data.context_columns),
        "has_volume": data.has_volume,
        "widened_bars": data.widened_bars,
        "n_rows": data.n_rows,
        "arrays": sorted(arrays),
    }
    members: dict[str, Any] = {
        f"{name}.npy": functools.partial(_save_array, array) for name, array in arrays.items()
    }
    members[MANIFEST] = functools.partial(write_text, json.dumps(manifest, sort_keys=True))
    return members


def read_entry(
    entry: Path, manifest: dict[str, Any], corporate_actions: Path | None
) -> PreparedData | None:
    """The arrays of the entry, memory-mapped (None when a file is missing or damaged)."""
    try:
        return _read(entry, manifest, corporate_actions)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _read(entry: Path, manifest: dict[str, Any], corporate_actions: Path | None) -> PreparedData:
    arrays = {
        name: np.load(entry / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        for name in manifest["arrays"]
    }
    assets = arrays["assets"]
    calendar = Calendar(
        timestamps=arrays["timestamps"],
        assets=assets.astype(object) if manifest["text_ids"] else assets,
        prices=manifest["prices_name"],
    )
    has_bar = arrays["has_bar"]
    signal_columns = tuple(manifest["signal_columns"])
    context_columns = tuple(manifest["context_columns"])
    panel = Panel(
        timestamps=calendar.timestamps,
        volume=arrays["volume"]
        if manifest["has_volume"]
        else np.broadcast_to(np.float64(np.inf), has_bar.shape),
        has_bar=has_bar,
        signals={c: arrays[f"signal-{i}"] for i, c in enumerate(signal_columns)},
        context={c: arrays[f"context-{i}"] for i, c in enumerate(context_columns)},
        **{name: arrays[name] for name in _BARS},
    )
    panel.freeze()
    at_bar: dict[int, list[int]] = {}
    for bar, asset in zip(
        arrays["delisted-bars"].tolist(), arrays["delisted-assets"].tolist(), strict=True
    ):
        at_bar.setdefault(bar, []).append(asset)
    delistings = Delistings(
        at_bar={b: np.array(a, dtype=np.int64) for b, a in at_bar.items()},
        before=np.array(arrays["delisted-before"]),
    )
    actions = load_actions(corporate_actions) if corporate_actions is not None else None
    return PreparedData(
        calendar=calendar,
        panel=panel,
        signal_columns=signal_columns,
        context_columns=context_columns,
        has_volume=bool(manifest["has_volume"]),
        delistings=delistings,
        actions=actions,
        widened_bars=int(manifest["widened_bars"]),
        n_rows=int(manifest["n_rows"]),
    )


def read_manifest(entry: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != PANEL_FORMAT:
        return None
    return manifest


def _saveable_ids(assets: np.ndarray) -> np.ndarray:
    """Asset ids as a numpy array `np.load` reads without pickle (text as fixed-width str)."""
    if assets.dtype.kind == "O":
        return np.array(assets.tolist(), dtype=str) if assets.shape[0] else np.empty(0, "U1")
    return assets


def _save_array(array: np.ndarray, path: Path) -> None:
    with path.open("wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
