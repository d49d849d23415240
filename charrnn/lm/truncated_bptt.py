"""Truncated back-propagation through time: how a language model learns from one long token stream.

1. Lay the stream out as `batch` parallel rows (pytorch/examples calls this batchify). With the
   corpus a b c d e f g h i j k l m n o p q r s t u v w x (24 tokens) and batch 4:

       row 0:  a b c d e f
       row 1:  g h i j k l        each row is a contiguous slice of the text,
       row 2:  m n o p q r        so the state at the end of one column is the
       row 3:  s t u v w x        right start for the next column of the same row

2. Walk across the rows in chunks of `bptt` columns. With bptt 2, chunk 0 reads columns 0-1 as
   input and predicts columns 1-2; chunk 1 reads 2-3 and predicts 3-4; and so on:

       chunk 0: input [a b]  target [b c]       chunk 1: input [c d]  target [d e]   (row 0)

3. Carry the hidden state from chunk to chunk, detached: the forward pass of chunk i+1 starts
   from the state chunk i ended in (context flows across the boundary), but `detach_state`
   cuts the autograd graph there, so back-propagation runs through at most `bptt` steps:

       h0 -> [chunk 0] -> h1 -/-> [chunk 1] -> h2 -/-> [chunk 2] ...    (-/-> : detached)

4. Clip: the engine rescales the gradient to norm at most `clip` before each update.

The loss of a chunk is the mean of -log P(target | inputs so far) over its batch x bptt tokens.
Validation runs the same way over the held-out stream, carrying the state across its chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from charrnn.core import distributed
from charrnn.core.errors import CharRNNError
from charrnn.core.recurrent import State, detach_state, state_from_tensors, state_tensors
from charrnn.core.state import TrainState
from charrnn.core.tokenizers import Tokenizer
from charrnn.lm.config import LMTrainConfig
from charrnn.lm.heldout import TokenView
from charrnn.lm.model import LanguageModel


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
    """A token stream cut into `batch_size` parallel streams and `bptt`-long chunks (see the module docstring).

    Row `b` is stream positions `[b*length, (b+1)*length)`; chunk `i` reads columns
    `[i*bptt, (i+1)*bptt)` as input and the next column over as target, so the hidden
    state at the end of chunk `i` is the right start for chunk `i+1` in every row. Each chunk
    is read from `source` (usually a memory map) when asked for: the corpus is never copied.
    `rows` are the rows this process reads (all of them, except under distributed training).
    """

    source: TokenView
    batch_size: int  # rows of the whole layout (every process's rows together)
    length: int  # columns per row
    bptt: int
    rows: range | None = None

    @classmethod
    def from_ids(
        cls, ids: torch.Tensor | np.ndarray | TokenView, batch_size: int, bptt: int, full_chunk: bool = True
    ) -> StreamBatches:
        """Lay `ids` out; with `full_chunk`, insist on at least one whole batch of one chunk."""
        if isinstance(ids, torch.Tensor):
            ids = ids.numpy()
        source = ids if isinstance(ids, TokenView) else TokenView.of(np.asarray(ids))
        length = len(source) // batch_size
        needed = bptt + 1 if full_chunk else 2
        if length < needed:
            what = "training" if full_chunk else "validation"
            raise CharRNNError(
                f"The {what} text has {len(source)} tokens, fewer than one batch of one chunk "
                f"(--batch-size {batch_size} x (--bptt {needed - 1} + 1) = {batch_size * needed}); "
                "lower --batch-size or --bptt, or use a longer corpus."
            )
        return cls(source=source, batch_size=batch_size, length=length, bptt=bptt)

    def with_rows(self, rows: range) -> StreamBatches:
        """The same layout, reading only `rows` (one process's share of the streams)."""
        return StreamBatches(self.source, self.batch_size, self.length, self.bptt, rows)

    @property
    def local_rows(self) -> range:
        return self.rows if self.rows is not None else range(self.batch_size)

    def __len__(self) -> int:
        """Number of chunks in one pass."""
        steps = self.length - 1
        return (steps + self.bptt - 1) // self.bptt

    @property
    def n_tokens(self) -> int:
        """Number of predicted tokens in one pass (over the rows this process reads)."""
        return len(self.local_rows) * (self.length - 1)

    def window(self, start: int, stop: int) -> np.ndarray:
        """Columns [start, stop) of this process's rows, (rows, stop - start) int64."""
        rows = self.local_rows
        if self.source.contiguous and len(self.source):
            base = int(self.source.starts[0])
            grid = self.source.ids[base : base + self.batch_size * self.length].reshape(
                self.batch_size, self.length
            )
            return np.asarray(grid[rows.start : rows.stop : rows.step, start:stop], dtype=np.int64)
        return np.stack([self.source.read(r * self.length + start, r * self.length + stop) for r in rows])

    def chunk(self, index: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of chunk `index`, both (batch, time) int64 on `device`."""
        start = index * self.bptt
        end = min(start + self.bptt, self.length - 1)
        window = torch.from_numpy(self.window(start, end + 1))
        if torch.device(device).type == "cuda":
            window = window.pin_memory().to(device, non_blocking=True)
        window = window.to(device=device)
        return window[:, :-1], window[:, 1:]


def validation_batch_size(n_tokens: int, batch_size: int, bptt: int) -> int:
    """Rows of the validation layout: --batch-size, fewer when the text is too short for one chunk per row."""
    return max(1, min(batch_size, n_tokens // (bptt + 1)))


@torch.inference_mode()
def evaluate_stream(
    model: LanguageModel, batches: StreamBatches, device: torch.device, max_tokens: int | None = None
) -> float:
    """Mean negative log-likelihood per token over (a prefix of) `batches`, state carried across chunks."""
    was_training = model.training
    model.eval()
    state = model.initial_state(len(batches.local_rows), device)
    total, count = 0.0, 0
    for index in range(len(batches)):
        x, y = batches.chunk(index, device)
        out, state = model(x, state)
        total += float(model.loss(out, y)) * y.numel()
        count += y.numel()
        if max_tokens is not None and count >= max_tokens:
            break
    model.train(was_training)
    return total / max(count, 1)


class TruncatedBPTTTask(distributed.DataParallelTask):
    """The language model's training task for the engine: chunk after chunk, hidden state carried and detached."""

    def __init__(
        self,
        model: LanguageModel,
        train_batches: StreamBatches,
        val_batches: StreamBatches,
        cfg: LMTrainConfig,
        device: torch.device,
    ) -> None:
        self.model, self.train_batches, self.val_batches = model, train_batches, val_batches
        self.cfg, self.device = cfg, device
        self.hidden: State | None = None
        self.next_hidden: State | None = None
        self.batches_per_epoch = len(train_batches)
        self._setup_forward()

    def _lay_out(self, rows: int) -> None:
        """Cut the training stream into `rows` global streams and keep this process's B rows."""
        layout = StreamBatches.from_ids(self.train_batches.source, rows, self.cfg.bptt)
        self.train_batches = layout.with_rows(distributed.my_rows(self.world, rows))
        self.batches_per_epoch = len(self.train_batches)

    def start_epoch(self) -> None:
        self.hidden = None  # each epoch starts every row from a zero state

    def step_loss(self, state: TrainState) -> tuple[torch.Tensor, int]:
        x, y = self.train_batches.chunk(state.chunk, self.device)
        if self.hidden is not None:
            self.hidden = detach_state(self.hidden)  # the chunk boundary: no gradient flows back past it
        out, self.next_hidden = self.forward(x, self.hidden)
        return self.model.loss(out, y), y.numel()

    def end_step(self, finite: bool) -> None:
        self.hidden = self.next_hidden if finite else None  # a non-finite step may have poisoned the state

    def evaluate(self) -> float:
        return evaluate_stream(self.model, self.val_batches, self.device, self.cfg.eval_tokens)

    def carried_tensors(self) -> dict[str, torch.Tensor]:
        """The hidden state of every global stream, (layers, streams, hidden): all ranks' rows, gathered."""
        hidden = self.hidden
        if hidden is None:
            hidden = self.model.initial_state(len(self.train_batches.local_rows), self.device)
        return {
            f"hidden.{i}": distributed.gather_rows(self.world, t, 1) for i, t in enumerate(state_tensors(hidden))
        }

    def restore_carried(self, tensors: dict[str, torch.Tensor]) -> None:
        """Take this rank's rows of the saved state; a run saved with other processes keeps its global streams.

        The saved state must be the model's: every tensor of its state (an LSTM's h and c), each
        (layers, streams, hidden) with the same streams, finite; ValueError otherwise.
        """
        model_state = state_tensors(self.model.initial_state(1, self.device))
        names = [f"hidden.{i}" for i in range(len(model_state))]
        if not tensors:
            self.hidden = None
            return
        if sorted(tensors) != names:
            raise ValueError(f"the carried state holds {sorted(tensors)[:4]}, the model needs {names}")
        found = [tensors[name] for name in names]
        rows = found[0].shape[1] if found[0].dim() == 3 else 0
        for saved, like in zip(found, model_state, strict=True):
            if saved.dim() != 3 or (saved.shape[0], saved.shape[2]) != (like.shape[0], like.shape[2]):
                raise ValueError(f"a carried state of shape {tuple(saved.shape)} does not fit the model")
            if saved.shape[1] != rows or rows < 1 or not saved.is_floating_point():
                raise ValueError("the carried state's tensors do not agree")
            if not bool(torch.isfinite(saved).all()):
                raise ValueError("the carried state holds NaN or infinite values")
        if rows != self.train_batches.batch_size:
            self._lay_out(rows)  # e.g. 2 processes x B streams resumed by one process: it reads all 2B
        mine = self.train_batches.local_rows
        self.hidden = state_from_tensors([t[:, mine.start : mine.stop].contiguous() for t in found])
