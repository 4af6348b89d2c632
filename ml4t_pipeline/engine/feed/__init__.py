"""The data feed: Parquet / Polars inputs -> dense (bars x assets) arrays, chunk by chunk.

How a prices file becomes the arrays the loop reads, one module per step:

1. `tables`: the file is opened column-projected (`Table`): only the columns the run uses are
   ever decoded, and a text `asset_id` column is read as a Parquet dictionary, so millions of
   rows arrive as integer indices into a few thousand strings. In-memory frames (polars, Arrow) are
   read the same way. `columns` turns each Arrow column into numpy without pandas.
2. `coords`: the keys (timestamp, asset_id) are read first. The sorted distinct timestamps in
   the run window are the calendar (the bars), the sorted distinct ids the universe (the
   assets); every row gets its coordinates (bar, asset), -1 when it falls outside the run.
3. `panel`: each value column is scattered into a (bars, assets) float64 array at the rows'
   coordinates; `has_bar` marks the cells a row filled. A missing row means the asset has no bar
   at that timestamp (not listed yet, or delisted) and cannot trade on it; a cell filled twice
   is a duplicate key. One fused pass then refuses malformed bars (`check_bars`).
4. `context`: market-wide columns become (bars,) arrays, each bar holding the latest value
   stamped at or before it. Signals with `available_at` were placed, in step 2, at the first
   bar at or after the moment they became known.
5. `market_data`: `MarketData` runs these steps and yields `Panel` chunks: one chunk when the
   run fits in `DEFAULT_MAX_CHUNK_CELLS` cells, else runs of whole months, so memory stays
   bounded on long histories while the engine state carries over.
6. `prepared`: a one-chunk run's arrays kept on disk (`prepared_data`), memory-mapped by the
   next run or sweep variant on the same unchanged files instead of decoding them again.
7. `features`: providers attach extra per-asset and market-wide arrays to each chunk.

Rows may arrive in any order. Every array of a `Panel` is read-only: strategies, rules and
result tables receive views of them. Column names, time conversion, key counting and the rules'
names and conditions are shared with `ml4t_pipeline.validation` through `ml4t_pipeline.keys`.
"""

from ml4t_pipeline.engine.feed.market_data import DEFAULT_MAX_CHUNK_CELLS, Feed, MarketData
from ml4t_pipeline.engine.feed.panel import Calendar, Panel, asset_list
from ml4t_pipeline.engine.feed.tables import Source
from ml4t_pipeline.keys import KEY_COLUMNS, to_datetime, to_micros

__all__ = [
    "DEFAULT_MAX_CHUNK_CELLS",
    "KEY_COLUMNS",
    "Calendar",
    "Feed",
    "MarketData",
    "Panel",
    "Source",
    "asset_list",
    "to_datetime",
    "to_micros",
]
