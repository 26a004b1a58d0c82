"""YAML to plain Python, remembering the line of every key, so spec errors can name the line to fix."""

from __future__ import annotations

from typing import Any

import yaml

Path_ = tuple[Any, ...]


class _Loader(yaml.SafeLoader):
    """Safe loader; used only to compose nodes (no object construction beyond scalars)."""


def _scalar(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    return loader.construct_object(node, deep=True)


def load_with_lines(text: str, source: str) -> tuple[Any, dict[Path_, int]]:
    """Parse ``text``; return (data, {path: 1-based line}) where a path is a tuple of keys / indexes.

    The line of a mapping entry is the line of its key; the line of a list item is the item's own line.
    """
    loader = _Loader(text)
    loader.name = source
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    if node is None:
        return None, lines

    def build(n: yaml.Node, path: Path_) -> Any:
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k, v in n.value:
                key = _scalar(loader, k) if isinstance(k, yaml.ScalarNode) else str(k.value)
                sub = (*path, key)
                lines[sub] = k.start_mark.line + 1
                out[key] = build(v, sub)
            return out
        if isinstance(n, yaml.SequenceNode):
            items = []
            for i, v in enumerate(n.value):
                lines[(*path, i)] = v.start_mark.line + 1
                items.append(build(v, (*path, i)))
            return items
        return _scalar(loader, n)

    lines[()] = node.start_mark.line + 1
    return build(node, ()), lines
