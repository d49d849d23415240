"""`charrnn sample --interactive`: a prompt loop where each line primes the model and the sample streams out.

Lines starting with ':' are commands (:temp 0.7, :len 300, :topp 0.9, :greedy, :seed 5, :help,
:quit). On a terminal a prompt is shown on stderr; otherwise lines are read one by one from stdin
without a prompt, so the loop can be scripted. Ctrl-D ends it; Ctrl-C stops a sample, or leaves at the prompt.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from charrnn.core.errors import CharRNNError

HELP = """commands:
  :temp T    softmax temperature (> 0); turns :greedy off
  :len N     tokens to generate per sample
  :topp P    draw from the smallest set with probability >= P (0 < P <= 1; :topp off to disable)
  :greedy    always take the most probable token (:greedy off to stop)
  :seed N    repeatable samples from seed N (:seed off for fresh randomness)
  :settings  show the current settings
  :help      this help
  :quit      leave (or Ctrl-D)
any other line primes the model; an empty line samples from the start of a line"""


@dataclass
class Settings:
    """What the next sample uses; commands change it."""

    temperature: float = 1.0
    length: int = 300
    top_p: float | None = None
    greedy: bool = False
    seed: int | None = None

    def describe(self) -> str:
        top_p = "off" if self.top_p is None else f"{self.top_p:g}"
        seed = "off" if self.seed is None else str(self.seed)
        return (
            f"temperature {self.temperature:g}, length {self.length}, top-p {top_p}, "
            f"greedy {'on' if self.greedy else 'off'}, seed {seed}"
        )


def _number(text: str, kind: type, name: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise CharRNNError(f":{name} needs a number, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise CharRNNError(f":{name} needs a finite number, got {text!r}")
    return value


def apply_command(settings: Settings, line: str) -> str | None:
    """Change `settings` by the command `line` (":temp 0.7"); the message to show, or None to quit."""
    name, _, arg = line[1:].strip().partition(" ")
    arg = arg.strip()
    if name in ("quit", "q", "exit"):
        return None
    if name in ("help", "h", "?"):
        return HELP
    if name == "settings":
        return settings.describe()
    if name == "temp":
        value = _number(arg, float, name)
        if value <= 0:
            raise CharRNNError(f":temp must be > 0, got {arg}")
        settings.temperature, settings.greedy = value, False
    elif name == "len":
        value = _number(arg, int, name)
        if not 1 <= value <= 1_000_000:
            raise CharRNNError(f":len must be between 1 and 1,000,000, got {arg}")
        settings.length = value
    elif name == "topp":
        if arg == "off":
            settings.top_p = None
        else:
            value = _number(arg, float, name)
            if not 0 < value <= 1:
                raise CharRNNError(f":topp must be in (0, 1], got {arg}")
            settings.top_p = value
    elif name == "greedy":
        settings.greedy = arg != "off"
    elif name == "seed":
        value = None if arg == "off" else _number(arg, int, name)
        if value is not None and not 0 <= value < 2**63:
            raise CharRNNError(f":seed must be between 0 and 2**63 - 1, got {arg}")
        settings.seed = value
    else:
        raise CharRNNError(f"unknown command :{name}; :help lists the commands")
    return settings.describe()


def _lines(stdin: TextIO, prompt: bool, err: TextIO):
    """Lines of stdin without their line ends; on a terminal each after a prompt on stderr."""
    while True:
        if prompt:
            err.write("> ")
            err.flush()
        line = stdin.readline()
        if not line:
            return
        yield line.rstrip("\r\n")


INTERACTIVE_NAMES = {"prime": "the line", "temperature": ":temp", "length": ":len", "top-p": ":topp"}


def interactive_name(flag: str, placeholder: str | None = None) -> str:
    """What the sampler calls the setting of `--flag` in an error: the line typed, or its :command."""
    named = INTERACTIVE_NAMES.get(flag, f":{flag}" if flag in ("greedy", "seed") else f"--{flag}")
    return f"{named} {placeholder}" if placeholder else named


def interactive_loop(run: Any, settings: Settings, stdin: TextIO | None = None, out: TextIO | None = None,
                     err: TextIO | None = None) -> None:  # fmt: skip
    """Read primes and commands until :quit or end of input; stream each sample to `out`."""
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    prompt = stdin.isatty()
    if prompt:
        err.write(f"charrnn interactive sampler ({settings.describe()}); :help for commands, Ctrl-D to leave\n")
    lines = _lines(stdin, prompt, err)
    while True:
        try:
            line = next(lines)
        except (StopIteration, KeyboardInterrupt, EOFError):
            if prompt:
                err.write("\n")
            return
        try:
            if line.startswith(":"):
                message = apply_command(settings, line)
                if message is None:
                    return
                err.write(message + "\n")
                continue
            options = {"greedy": settings.greedy, "top_p": settings.top_p, "seed": settings.seed}
            for piece in run.stream(line, settings.length, settings.temperature, **options):
                out.write(piece)
                out.flush()
            out.write("\n")
            out.flush()
        except CharRNNError as exc:
            err.write(f"charrnn: {exc.in_words_of(interactive_name)}\n")
        except KeyboardInterrupt:  # stop this sample, keep the loop
            out.write("\n")
            err.write("(stopped)\n")
