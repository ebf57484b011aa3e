"""models.yaml read with the line of every key and item remembered, so an error can name where to look.

read_yaml parses the file (refusing duplicate keys, which YAML would silently collapse) and checks it against
records/models.schema.json; key_at names a key of a parsed mapping as `where.key (line N)` for ScreenInputError.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from quantscreen.records.errors import ScreenInputError
from quantscreen.records.schema import validate


class _LineDict(dict):
    lines: dict  # key -> line


class _LineList(list):
    lines: dict  # index -> line


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and lists remember the line of each key and item, for error messages."""


def _line_mapping(loader, node):
    loader.flatten_mapping(node)
    mapping = _LineDict(yaml.SafeLoader.construct_mapping(loader, node, deep=True))
    mapping.lines = {loader.construct_object(k): k.start_mark.line + 1 for k, _ in node.value}
    return mapping


def _line_sequence(loader, node):
    sequence = _LineList(loader.construct_sequence(node, deep=True))
    sequence.lines = {i: item.start_mark.line + 1 for i, item in enumerate(node.value)}
    return sequence


_LineLoader.add_constructor("tag:yaml.org,2002:map", _line_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _line_sequence)


def _no_duplicate_keys(node, where):
    seen = {}
    for key_node, _ in node.value:
        if key_node.value in seen:
            raise ScreenInputError(f"{where} (line {key_node.start_mark.line + 1})",
                                   f"key '{key_node.value}' appears twice (first on line {seen[key_node.value]})",
                                   "keep one of them")
        seen[key_node.value] = key_node.start_mark.line + 1
        if isinstance(_, yaml.MappingNode):
            _no_duplicate_keys(_, where)
        elif isinstance(_, yaml.SequenceNode):
            for item in _.value:
                if isinstance(item, yaml.MappingNode):
                    _no_duplicate_keys(item, where)


def key_at(where: str, mapping, key) -> str:
    """`where.key (line N)`: the key's line where the loader remembered it, else just the dotted path."""
    line = getattr(mapping, "lines", {}).get(key)
    return f"{where}.{key}" + (f" (line {line})" if line else "")


def read_yaml(path: Path) -> dict:
    """models.yaml, parsed and checked against records/models.schema.json."""
    if not path.is_file():
        raise ScreenInputError(path, "does not exist", "pass --models FILE, or --checkpoint PATH with --baseline PATH")
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if isinstance(node, yaml.MappingNode):
            _no_duplicate_keys(node, path.name)
        data = yaml.load(text, Loader=_LineLoader)
    except UnicodeDecodeError:
        raise ScreenInputError(path, "is not UTF-8 text", "re-save it as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path} (line {mark.line + 1})" if mark else str(path)
        raise ScreenInputError(where, f"is not valid YAML ({getattr(exc, 'problem', exc)})",
                               "fix the indentation or quoting there") from None
    if data is None:
        raise ScreenInputError(path, "is empty", "add a models: list (see the repo's models.yaml)")
    validate(data, path.name)
    return data
