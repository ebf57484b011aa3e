"""models.yaml's schema (records/models.schema.json) and the one-line ScreenInputError its first violation becomes.

The schema is the one source of keys, types, enums and ranges; pipeline.plan keeps what a schema cannot say (files
that must exist, recipes, rules across fields or across the command line). Mappings and lists read by
pipeline.yaml_lines' loader carry `lines` (key or index -> line), which the messages point at.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import fields
from functools import cache
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import extend

from quantscreen.records.errors import ScreenInputError

SCHEMA_PATH = Path(__file__).with_name("models.schema.json")

# YAML reads 2.0 as a float, and code that counts prompts or layers needs an int: JSON Schema alone would take 2.0.
_Validator = extend(Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)))

_KINDS = {"object": "a mapping", "array": "a list", "string": "text", "integer": "an integer", "number": "a number",
          "boolean": "true or false", "null": "empty"}


@cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate(data, file_name: str) -> None:
    """Raise the violation that comes first in the file, as `<file>.<key.path> (line N): problem; fix: ...`."""
    errors = [(*_place(error, data), error) for error in _Validator(schema()).iter_errors(data)]
    if not errors:
        return
    # a oneOf failure is about the same mapping a sibling error on its line reports more precisely
    path, line, error = min(errors, key=lambda e: (e[1] or 0, e[2].validator == "oneOf"))
    subject = file_name + _dotted(path) + (f" (line {line})" if line else "")
    raise ScreenInputError(subject, *_explain(error, path[-1] if path else file_name))


def validate_flag(flag: str, path: tuple, value) -> None:
    """A command-line value that replaces the models.yaml setting at `path` obeys that setting's schema."""
    document = value
    for key in reversed(path):
        document = [document] if isinstance(key, int) else {key: document}
    for error in _Validator(schema()).iter_errors(document):
        if tuple(error.absolute_path) == path:
            problem, fix = _explain(error, flag, sep="=")
            raise ScreenInputError(flag, problem, fix)


def typed(cls, mapping: dict):
    """The dataclass from a checked mapping, YAML's 5 made 5.0 where the field is a float (cache keys hash them)."""
    kinds = {f.name: f.type for f in fields(cls)}

    def convert(kind: str, value):
        if kind == "float":
            return float(value)
        return tuple(float(v) for v in value) if kind.startswith("tuple[float") else value

    return cls(**{key: convert(kinds[key], value) for key, value in mapping.items()})


def _place(error, data) -> tuple[list, int | None]:
    """The key path an error is about, and the line of its last key (an unknown key's own line)."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        path.append(_unknown_key(error))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    return path, (getattr(parent, "lines", {}).get(path[-1]) if path else None)


def _dotted(path: list) -> str:
    return "".join(f"[{key}]" if isinstance(key, int) else f".{key}" for key in path)


def _unknown_key(error):
    return next(key for key in error.instance if key not in error.schema.get("properties", {}))


def _explain(error, key, sep: str = ": ") -> tuple[str, str]:
    """Plain words for what is wrong, and what to write instead: the schema's x-fix or first example by default."""
    examples = error.schema.get("examples")
    hint = error.schema.get("x-fix") or (f"write e.g. {key}{sep}{_yaml(examples[0])}" if examples else None)
    problem, fix = _EXPLAIN.get(error.validator, _as_is)(error, error.schema, error.instance)
    return problem, fix if error.validator in _OWN_FIX else hint or fix


def _unknown(error, schema, value):
    allowed = list(schema["properties"])
    guess = difflib.get_close_matches(str(_unknown_key(error)), allowed, n=1)
    return (f"unknown key '{_unknown_key(error)}'",
            (f"did you mean '{guess[0]}'? " if guess else "") + f"keys here: {', '.join(allowed)}")


def _wrong_type(error, schema, value):
    kinds = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
    kind = " or ".join(_KINDS[k] for k in kinds if k != "null" or len(kinds) == 1)
    keys = ", ".join(schema.get("properties", {}))
    return f"must be {kind}, got {_got(value)}", f"write {kind}" + (f" (keys: {keys})" if keys else "")


def _not_allowed(error, schema, value):
    allowed = ", ".join(map(_yaml, schema["enum"]))
    return f"{_got(value)} is not one of {allowed}", f"use one of: {allowed}"


def _out_of_range(error, schema, value):
    return f"{_got(value)} is out of range ({_span(schema)})", f"write a number {_span(schema)}"


def _missing(error, schema, value):
    missing = next(k for k in error.validator_value if k not in value)
    wanted = schema.get("properties", {}).get(missing, {})
    example = wanted.get("examples")
    fix = wanted.get("x-fix") or (f"add {missing}: {_yaml(example[0])}" if example else schema.get("x-fix"))
    return f"has no {missing}", fix or f"add {missing}:"


def _item_count(error, schema, value):
    low, high = schema.get("minItems"), schema.get("maxItems")
    if low == high:
        want = f"exactly {low}"
    else:
        want = f"at least {low}" if error.validator == "minItems" else f"at most {high}"
    return f"must list {want} {'item' if want.endswith(' 1') else 'items'}, got {len(value)}", f"see {SCHEMA_PATH.name}"


def _empty(error, schema, value):
    return "must not be empty", "write a value"


def _one_of(error, schema, value):
    """A oneOf between required keys (a quant's path, derive or server, or a kv_cache alone), or between kinds of
    value (a baseline's checkpoint path or served model: the closest kind's own violation is named)."""
    branches = error.validator_value
    if all("required" in branch for branch in branches):
        keys = [branch["required"][0] for branch in branches]
        given = [k for k in keys[:-1] if k in value]  # the last, kv_cache, goes with any of the others
        return (f"has both {' and '.join(given)}, but takes only one" if len(given) > 1 else f"needs {' or '.join(keys)}",
                schema.get("x-fix") or f"write one of {', '.join(keys)}")
    closest = best_match(error.context)
    where = "".join(f".{k}" for k in closest.relative_path)
    return f"is not what it may be{f' ({where[1:]}: {closest.message})' if closest else ''}", schema.get("x-fix")


def _pattern(error, schema, value):
    return f"{_got(value)} is not a valid value", f"write e.g. {_yaml(schema['examples'][0])}" if schema.get(
        "examples") else f"see {SCHEMA_PATH.name}"


def _as_is(error, schema, value):
    return error.message, f"see {SCHEMA_PATH.name}"


_EXPLAIN = {"additionalProperties": _unknown, "type": _wrong_type, "enum": _not_allowed, "required": _missing,
            "minItems": _item_count, "maxItems": _item_count, "minLength": _empty, "oneOf": _one_of, "pattern": _pattern,
            **dict.fromkeys(("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"), _out_of_range)}
# their fix is about the mapping's keys or values, not an example of the whole setting
_OWN_FIX = {"additionalProperties", "enum", "required"}


def _span(schema: dict) -> str:
    low = f">{schema['exclusiveMinimum']}" if "exclusiveMinimum" in schema else schema.get("minimum")
    high = f"<{schema['exclusiveMaximum']}" if "exclusiveMaximum" in schema else schema.get("maximum")
    if low is not None and high is not None:
        return f"{low} to {high}"
    return f"at least {low}" if high is None else f"at most {high}"


def _got(value) -> str:
    if isinstance(value, (dict, list)):
        return _KINDS["object" if isinstance(value, dict) else "array"]
    if value is None:
        return "nothing"
    return repr(value) if isinstance(value, str) else _yaml(value)


def _yaml(value) -> str:
    """A value as it would be written in models.yaml (flow style for lists and mappings)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).removesuffix("\n...\n").strip()
