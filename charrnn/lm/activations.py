"""What the recurrent layers hold while the language model reads a text, and which units track a pattern.

`nn.LSTM` returns only the top layer's outputs, so `collect_activations` feeds the text one token
at a time and keeps the full state after each token: h^l_t for every layer l (and the LSTM cell
c^l_t). `find_units` ranks units by the Pearson correlation r = cov(a, s) / (std(a) std(s))
between a unit's activation a_t and a signal s_t computed from the text (inside quotes, inside
brackets, position in the line, just read a space); a unit with constant activation has r = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.recurrent import state_tensors
from charrnn.core.special_tokens import EOS_ID
from charrnn.core.tokenizers import Tokenizer
from charrnn.lm.model import LanguageModel

PATTERNS = ("quotes", "brackets", "line_position", "after_space")
OPENING, CLOSING = "([{", ")]}"
QUOTES = '"“”'


@dataclass
class Activations:
    """The recurrent state after each token of a text."""

    tokens: list[str]  # the stretch of the text each token covers ("\n" for a line break)
    token_ids: list[int]
    hidden: torch.Tensor  # (layers, tokens, hidden): h^l_t after reading token t
    cell: torch.Tensor | None  # (layers, tokens, hidden): the LSTM cell c^l_t; None for GRU/RNN

    def states(self, which: str) -> torch.Tensor:
        """`hidden` or `cell` by name, with a one-line error when the model has no cell state."""
        if which == "hidden":
            return self.hidden
        if which == "cell" and self.cell is not None:
            return self.cell
        if which == "cell":
            raise CharRNNError("Only an LSTM has a cell state; choose 'hidden'.")
        raise CharRNNError(f"Unknown state {which!r}; choose 'hidden' or 'cell'.")


def token_pieces(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """The text each id adds when the ids are decoded in order (`<eos>` is a line break)."""
    decode = tokenizer.stream_decoder()
    return [decode(i) for i in ids]


def text_pieces(tokenizer: Tokenizer, text: str, ids: list[int]) -> list[str]:
    """The stretch of `text` each token of `ids` covers (spaces before it included; a line break is "\\n").

    Unknown units keep their own text, so patterns see the real characters; where the tokens cannot
    be aligned with the text (sentencepiece), the decoded pieces are used instead.
    """
    split = getattr(tokenizer, "split", None)
    pieces: list[str] = []
    for number, line in enumerate(text.split("\n")):
        probe = line.lower() if tokenizer.lowercase else line
        if split is None or len(probe) != len(line):
            return token_pieces(tokenizer, ids)
        if number:
            pieces.append("\n")
        position = 0
        for unit in split(probe):
            found = probe.find(unit, position)
            if found < 0:
                return token_pieces(tokenizer, ids)
            pieces.append(line[position : found + len(unit)])
            position = found + len(unit)
    return pieces if len(pieces) == len(ids) else token_pieces(tokenizer, ids)


@torch.inference_mode()
def collect_activations(model: LanguageModel, tokenizer: Tokenizer, text: str) -> Activations:
    """Read `<eos>` (start of a line) then `text`; the state of every layer after each token of `text`."""
    if not text:
        raise CharRNNError("Give some text to look inside the model with.")
    model.eval()
    device = next(model.parameters()).device
    ids = tokenizer.encode(text)
    _, state = model(torch.tensor([[EOS_ID]], device=device))
    per_step: list[list[torch.Tensor]] = []
    for token in ids:
        _, state = model(torch.tensor([[token]], device=device), state)
        per_step.append([t[:, 0].float().cpu() for t in state_tensors(state)])  # each (layers, hidden)
    stacked = [torch.stack([step[k] for step in per_step], dim=1) for k in range(len(per_step[0]))]
    return Activations(
        tokens=text_pieces(tokenizer, text, ids),
        token_ids=ids,
        hidden=stacked[0],
        cell=stacked[1] if len(stacked) == 2 else None,
    )


def pattern_signal(pieces: list[str], pattern: str) -> list[float]:
    """The value of `pattern` after each piece of text: 1/0 flags, or the column for `line_position`.

    quotes: inside a "..." quotation (the opening quote counts as inside, the closing one not);
    brackets: nesting depth of (), [], {} above zero; line_position: characters since the last line
    break; after_space: the text read so far ends with whitespace.
    """
    if pattern not in PATTERNS:
        raise CharRNNError(f"Unknown pattern {pattern!r}; choose one of: {', '.join(PATTERNS)}.")
    values: list[float] = []
    quoted, depth, column = False, 0, 0
    for piece in pieces:
        for char in piece:
            if char in QUOTES:
                quoted = not quoted
            elif char in OPENING:
                depth += 1
            elif char in CLOSING:
                depth = max(depth - 1, 0)
            column = 0 if char == "\n" else column + 1
        if pattern == "quotes":
            values.append(float(quoted))
        elif pattern == "brackets":
            values.append(float(depth > 0))
        elif pattern == "line_position":
            values.append(float(column))
        else:
            values.append(float(bool(piece) and piece[-1].isspace()))
    return values


@dataclass
class UnitMatch:
    """One unit and how well its activation follows a pattern."""

    state: str  # "hidden" or "cell"
    layer: int
    unit: int
    correlation: float  # Pearson r over the text's tokens


def correlations(states: torch.Tensor, signal: list[float]) -> torch.Tensor:
    """Pearson r of each unit's activation with `signal`: (layers, tokens, hidden) -> (layers, hidden)."""
    s = torch.tensor(signal, dtype=torch.float64)
    a = states.double()
    a_c = a - a.mean(dim=1, keepdim=True)
    s_c = s - s.mean()
    cov = (a_c * s_c[None, :, None]).sum(dim=1)
    scale = a_c.pow(2).sum(dim=1).sqrt() * s_c.pow(2).sum().sqrt()
    return torch.where(scale > 1e-12, cov / scale.clamp_min(1e-12), torch.zeros_like(cov))


def find_units(activations: Activations, pattern: str, top: int = 10) -> list[UnitMatch]:
    """The `top` units (of h, and c for an LSTM) whose activation correlates most, by |r|, with `pattern`."""
    signal = pattern_signal(activations.tokens, pattern)
    if len(set(signal)) < 2:
        raise CharRNNError(f"The text never changes the pattern {pattern!r}; give text where it varies.")
    found: list[UnitMatch] = []
    for name, states in (("hidden", activations.hidden), ("cell", activations.cell)):
        if states is None:
            continue
        r = correlations(states, signal)
        for layer in range(r.shape[0]):
            found.extend(UnitMatch(name, layer, unit, float(r[layer, unit])) for unit in range(r.shape[1]))
    found.sort(key=lambda m: -abs(m.correlation))
    return found[:top]
