"""A run config file -> plain Python values, or a `ConfigError` naming the file.

The bytes are decoded as UTF-8, strictly (a UTF-8 byte-order mark is allowed; UTF-16 and
Latin-1 files are refused with the offset of the first bad byte). YAML is parsed with
PyYAML's safe loader under two limits a hand-written config never comes near: nesting depth
(`MAX_DEPTH`; deeper input would otherwise end in a `RecursionError`) and the number of nodes
once every alias is expanded (`MAX_NODES`; a few lines of nested aliases — a "billion laughs"
— would otherwise expand into billions of values the moment anything walks or prints them).
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import Node

from ml4t_pipeline.errors import ConfigError

MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences a config may have."""
MAX_NODES = 100_000
"""Most values (scalars, mappings, sequences) a config may hold with its aliases expanded."""


class _LimitedLoader(yaml.SafeLoader):
    """The safe loader, counting nesting depth and nodes with each alias expanded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0  # nodes composed so far, each alias counted as the nodes it stands for
        self._sizes: dict[int, int] = {}  # id(node) -> its node count, aliases expanded

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            node = super().compose_node(parent, index)
            self._count(self._sizes.get(id(node), 1), node)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            msg = f"nesting deeper than {MAX_DEPTH} levels{_at(mark)}"
            raise _LimitError(msg)
        before = self._nodes
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._count(1, node)
        if node is not None:
            self._sizes[id(node)] = self._nodes - before
        return node

    def _count(self, n: int, node: Node | None) -> None:
        self._nodes += n
        if self._nodes > MAX_NODES:
            where = _at(node.start_mark) if node is not None else ""
            msg = f"more than {MAX_NODES} values once aliases are expanded{where}"
            raise _LimitError(msg)


def _at(mark: yaml.Mark) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})"


class _LimitError(Exception):
    """A config over one of the loader's limits."""


def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"{path}: cannot read the config file ({exc.strerror or exc})"
        raise ConfigError(msg) from exc
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        msg = f"{path}: the config file is UTF-16 encoded; save it as UTF-8"
        raise ConfigError(msg)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = (
            f"{path}: the config file is not UTF-8 text: byte 0x{data[exc.start]:02x} at "
            f"offset {exc.start} ({exc.reason}); save it as UTF-8"
        )
        raise ConfigError(msg) from exc
    return text.removeprefix("\ufeff")


def load_yaml(path: Path) -> Any:
    """The values of the YAML file at `path` (None when it is empty)."""
    text = _text(path)
    loader = _LimitedLoader(text)
    loader.name = str(path)  # YAML error marks name the file
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        msg = f"{path}: not valid YAML: {exc}"
        raise ConfigError(msg) from exc
    except _LimitError as exc:
        msg = f"{path}: refused: {exc}"
        raise ConfigError(msg) from exc
    except ValueError as exc:  # a well-formed scalar out of range, e.g. 2023-02-30
        msg = f"{path}: not valid YAML: {exc}"
        raise ConfigError(msg) from exc
    finally:
        loader.dispose()
