"""Reading corpora and laying token streams out for truncated BPTT."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.errors import CharRNNError
from charrnn.tokenizers import Tokenizer

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "corpora" / "tinyshakespeare.txt"


def read_text(path: str | Path, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Read a text file, normalising line endings, with a one-line error for every bad case."""
    path = Path(path)
    if not path.exists():
        raise CharRNNError(f"{path}: no such file.")
    if path.is_dir():
        raise CharRNNError(f"{path} is a directory; give the path of a text file.")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise CharRNNError(f"Unknown --encoding {encoding!r} (try utf-8, latin-1, cp1252).") from None
    if errors not in ("strict", "replace", "ignore"):
        raise CharRNNError(f"--errors must be strict, replace or ignore, got {errors!r}.")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CharRNNError(f"{path}: cannot read ({exc.strerror}).") from None
    if b"\x00" in raw[:8192] and not encoding.lower().replace("-", "").startswith("utf16"):
        raise CharRNNError(f"{path} looks like a binary file (it contains NUL bytes), not text.")
    try:
        text = raw.decode(encoding, errors=errors)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise CharRNNError(
            f"{path} is not valid {encoding}: byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line}); "
            "pass --encoding (e.g. latin-1) or --errors replace."
        ) from None
    return text.replace("\r\n", "\n")


def read_stdin_text() -> str:
    """Standard input as UTF-8 text, with a one-line error for undecodable bytes."""
    import sys

    if not hasattr(sys.stdin, "buffer"):  # already text (a replaced stdin, e.g. in tests)
        return sys.stdin.read().replace("\r\n", "\n")
    raw = sys.stdin.buffer.read()
    try:
        return raw.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise CharRNNError(
            f"standard input is not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}; "
            "convert it to UTF-8 first (e.g. with iconv)."
        ) from None


def read_corpus(path: str | Path, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Read a training corpus; it must hold some non-blank text."""
    text = read_text(path, encoding, errors)
    if not text.strip():
        raise CharRNNError(f"{path} is empty; a corpus needs some text to learn from.")
    return text


def encode_ids(tokenizer: Tokenizer, text: str) -> torch.Tensor:
    """The corpus as one contiguous int32 tensor of ids (each line ends with `<eos>`)."""
    return torch.tensor(tokenizer.encode_corpus(text), dtype=torch.int32)


def split_train_val(ids: torch.Tensor, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out the last `val_fraction` of the token stream for validation."""
    n_val = max(int(len(ids) * val_fraction), 2)
    if len(ids) - n_val < 2:
        raise CharRNNError(f"The corpus has only {len(ids)} tokens, too few to split off a validation part.")
    return ids[:-n_val], ids[-n_val:]


@dataclass
class StreamBatches:
    """A token stream cut into `batch_size` parallel streams and `bptt`-long chunks.

    `streams[b]` is a contiguous slice of the corpus; chunk `i` reads columns
    `[i*bptt, (i+1)*bptt)` as input and the next column over as target, so the hidden
    state at the end of chunk `i` is the right start for chunk `i+1` in every row.
    """

    streams: torch.Tensor  # (batch, length) int32
    bptt: int

    @classmethod
    def from_ids(cls, ids: torch.Tensor, batch_size: int, bptt: int, full_chunk: bool = True) -> StreamBatches:
        """Lay `ids` out; with `full_chunk`, insist on at least one whole batch of one chunk."""
        length = len(ids) // batch_size
        needed = bptt + 1 if full_chunk else 2
        if length < needed:
            what = "training" if full_chunk else "validation"
            raise CharRNNError(
                f"The {what} text has {len(ids)} tokens, fewer than one batch of one chunk "
                f"(--batch-size {batch_size} x (--bptt {needed - 1} + 1) = {batch_size * needed}); "
                "lower --batch-size or --bptt, or use a longer corpus."
            )
        streams = ids[: length * batch_size].view(batch_size, length)
        return cls(streams=streams, bptt=bptt)

    def __len__(self) -> int:
        """Number of chunks in one pass."""
        steps = self.streams.shape[1] - 1
        return (steps + self.bptt - 1) // self.bptt

    @property
    def n_tokens(self) -> int:
        """Number of predicted tokens in one pass."""
        return self.streams.shape[0] * (self.streams.shape[1] - 1)

    def chunk(self, index: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of chunk `index`, both (batch, time) int64 on `device`."""
        start = index * self.bptt
        end = min(start + self.bptt, self.streams.shape[1] - 1)
        window = self.streams[:, start : end + 1]
        if torch.device(device).type == "cuda":
            window = window.pin_memory().to(device, non_blocking=True)
        window = window.to(device=device, dtype=torch.long)
        return window[:, :-1], window[:, 1:]
