"""Reading the JSON API's requests: typed fields with bounds, and the limits every request is held to.

Every mistake becomes a `BadRequest` (a 4xx status and a one-line message), never a traceback.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    """Caps that keep one request from occupying the server."""

    max_length: int = 2000  # tokens one generation may draw
    max_text: int = 4000  # characters in a prime, a text to score, translate or look inside
    max_sentences: int = 50  # sentences in one score request
    max_units: int = 64  # units in one activation heat map
    max_body: int = 256 * 1024  # bytes in a request body
    max_pending: int = 64  # model computations queued at once before new ones get 429
    max_waiting: int = 4  # generations waiting behind the one under way (one per server) before new ones get 429
    workers: int = 2  # model computations run at once (in threads, so the page stays responsive)


class BadRequest(Exception):
    """A request the server refuses: `status` (4xx) and a message for the user."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_body(raw: bytes, limits: Limits) -> dict[str, Any]:
    """The JSON object in a request body (an empty body is an empty object)."""
    if len(raw) > limits.max_body:
        raise BadRequest(f"The request body is over {limits.max_body} bytes.", 413)
    if not raw.strip():
        return {}
    too_deep = BadRequest(f"The request body is nested deeper than the API's {MAX_DEPTH} levels.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise too_deep from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    if depth(body) > MAX_DEPTH:
        raise too_deep
    return body


MAX_DEPTH = 3  # the deepest request: {"pairs": [["source", "target"], ...]}


def depth(value: Any) -> int:
    """How deeply lists and objects nest in a JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def known_keys(body: dict[str, Any], keys: tuple[str, ...], route: str) -> None:
    """Refuse keys a route does not read (a misspelt "temprature" would otherwise be ignored without a word)."""
    unknown = sorted(set(body) - {"run", *keys})
    if unknown:
        listed = ", ".join(json.dumps(k)[:40] for k in unknown[:5])
        raise BadRequest(f"Unknown key(s) {listed} for {route}; it reads: run, {', '.join(keys)}.")


def json_key(flag: str, placeholder: str | None = None) -> str:
    """How the JSON API names the setting of `--flag` in an error: its key (`top_p` for --top-p)."""
    return flag.replace("-", "_") + (f" {placeholder}" if placeholder else "")


def number(body: dict[str, Any], name: str, default: float | None, low: float, high: float) -> float | None:
    """A finite number in [low, high] (or `default` when absent or null)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{name} must be a number, got {json.dumps(value)[:40]}.")
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low:g} and {high:g}, got {value:g}.")
    return float(value)


def integer(body: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    """An integer in [low, high] (or `default` when absent or null)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer, got {json.dumps(value)[:40]}.")
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}.")
    return value


def text(body: dict[str, Any], name: str, limits: Limits, default: str | None = None) -> str:
    """A string of at most `limits.max_text` characters; required unless `default` is given."""
    value = body.get(name, default)
    if value is None:
        raise BadRequest(f"{name} is required.")
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string, got {json.dumps(value)[:40]}.")
    if len(value) > limits.max_text:
        raise BadRequest(f"{name} is {len(value)} characters; the limit is {limits.max_text}.", 413)
    return value


def flag(body: dict[str, Any], name: str) -> bool:
    """A boolean (false when absent)."""
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false, got {json.dumps(value)[:40]}.")
    return value


def choice(body: dict[str, Any], name: str, options: tuple[str, ...], default: str | None) -> str | None:
    """One of `options` (or `default` when absent or null)."""
    value = body.get(name)
    if value is None:
        return default
    if value not in options:
        raise BadRequest(f"{name} must be one of {', '.join(options)}, got {json.dumps(value)[:40]}.")
    return value


def integer_list(body: dict[str, Any], name: str, low: int, high: int, most: int) -> list[int] | None:
    """A list of at most `most` integers in [low, high] (None when absent or null)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise BadRequest(f"{name} must be a list of integers.")
    if not value or len(value) > most:
        raise BadRequest(f"{name} must list between 1 and {most} units, got {len(value)}.")
    bad = [v for v in value if not low <= v <= high]
    if bad:
        raise BadRequest(f"{name}: unit {bad[0]} is out of range; units are numbered {low} to {high}.")
    return value


def sentences(body: dict[str, Any], limits: Limits) -> list[str]:
    """`sentences` (a list of strings) or `text` (one sentence per non-blank line)."""
    value = body.get("sentences")
    if value is None:
        value = [line for line in text(body, "text", limits).split("\n") if line.strip()]
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise BadRequest("sentences must be a list of strings.")
    if not value or not all(s.strip() for s in value):
        raise BadRequest("Give at least one sentence, and no empty ones.")
    if len(value) > limits.max_sentences:
        raise BadRequest(f"{len(value)} sentences; the limit is {limits.max_sentences} per request.", 413)
    if sum(len(s) for s in value) > limits.max_text:
        raise BadRequest(f"The sentences are over {limits.max_text} characters in all.", 413)
    return value


LABELS_LISTED = 20  # labels an unknown-label error names


def label(body: dict[str, Any], labels: list[str], required: bool = False) -> str | None:
    """One of the run's `labels` (None when absent or null, unless `required`); an unknown one is refused,
    naming the first `LABELS_LISTED` labels."""
    value = body.get("label")
    if value is None and not required:
        return None
    if isinstance(value, str) and value in labels:
        return value
    shown = ", ".join(labels[:LABELS_LISTED]) + (
        f", … ({len(labels)} in all)" if len(labels) > LABELS_LISTED else ""
    )
    if value is None:
        raise BadRequest(f"label is required; this run's labels are: {shown}.")
    raise BadRequest(
        f"Unknown label {json.dumps(value, ensure_ascii=False)[:60]}; this run's labels are: {shown}."
    )
