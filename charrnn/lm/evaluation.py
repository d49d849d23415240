"""Evaluating a language model on a whole file: the number to compare with papers and with validation.

The file is read as one token stream (each line's tokens then `<eos>`), laid out in `batch_size`
parallel rows (fewer when the text is short, by the same rule as validation) and walked in `bptt`-long chunks with the hidden state carried across them, exactly
as training's validation does (`charrnn.lm.truncated_bptt`). Every predicted token t contributes
log P(x_t | x_<t within its row); with N counted tokens and total L = sum log P:

    cross-entropy H = -L / N  (nats/token),   perplexity = exp(H),   bits/char = H / ln 2 (char level).

`<unk>` targets count as the OOV policy says (`charrnn.core.scoring`); with "include" H equals
the validation loss training reports for the same text and batch layout.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.sampling import NOT_FINITE
from charrnn.core.scoring import check_oov
from charrnn.core.special_tokens import UNK_ID
from charrnn.core.tokenizers import Tokenizer
from charrnn.lm.model import LanguageModel
from charrnn.lm.truncated_bptt import StreamBatches, encode_ids, validation_batch_size


@dataclass
class FileEvaluation:
    """The log-likelihood of a whole file under a language model, and what follows from it."""

    file: str
    level: str
    tokens: int  # predicted tokens counted in `logprob` (skipped <unk> targets excluded)
    unk: int  # predicted tokens that were <unk>
    skipped: int  # <unk> targets left out (oov "skip")
    oov: str
    logprob: float  # natural log, summed over the counted tokens
    nats_per_token: float
    bits_per_char: float | None  # char level only
    perplexity: float
    batch_size: int
    bptt: int
    file_tokens: int = 0  # tokens in the file: the first of each row has no context and is not predicted,
    # and the last len % batch_size do not fill a row

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.inference_mode()
def stream_log_probs(model: LanguageModel, batches: StreamBatches) -> tuple[torch.Tensor, torch.Tensor]:
    """(targets, log P(target)) of every predicted token of `batches`, state carried across chunks; both 1-D."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    state = model.initial_state(len(batches.local_rows), device)
    targets, logps = [], []
    for index in range(len(batches)):
        x, y = batches.chunk(index, device)  # (batch, time)
        out, state = model(x, state)
        logps.append(model.target_log_probs(out, y).float().cpu().reshape(-1))
        targets.append(y.cpu().reshape(-1))
    model.train(was_training)
    return torch.cat(targets), torch.cat(logps)


def evaluate_text(
    model: LanguageModel,
    tokenizer: Tokenizer,
    text: str,
    *,
    level: str,
    batch_size: int,
    bptt: int,
    oov: str = "include",
    oov_logprob: float | None = None,
    name: str = "<text>",
) -> FileEvaluation:
    """Cross-entropy, perplexity and bits/char of `text` read as one stream (see the module docstring)."""
    check_oov(oov, oov_logprob)
    if batch_size < 1 or bptt < 1:
        raise CharRNNError(f"--batch-size and --bptt must be at least 1, got {batch_size} and {bptt}.")
    ids = encode_ids(tokenizer, text)
    if len(ids) < 2:
        raise CharRNNError(f"{name} has {len(ids)} token(s); evaluating needs at least 2.")
    batch_size = validation_batch_size(len(ids), batch_size, bptt)  # as training lays out validation text
    batches = StreamBatches.from_ids(ids, batch_size, bptt, full_chunk=False)
    targets, logps = stream_log_probs(model, batches)
    if bool(torch.isnan(logps).any()):
        raise CharRNNError(NOT_FINITE)
    is_unk = targets == UNK_ID
    n_unk = int(is_unk.sum())
    penalty = -math.log(tokenizer.vocab_size) if oov_logprob is None else oov_logprob
    if oov == "skip":
        logps, skipped = logps[~is_unk], n_unk
    else:
        skipped = 0
        if oov == "penalty":
            logps = logps + is_unk.float() * penalty
    total = float(logps.double().sum())
    count = int(logps.numel())
    if count == 0:
        raise CharRNNError(f"Every token of {name} is <unk>; nothing is left to evaluate with --oov skip.")
    nats = -total / count
    return FileEvaluation(
        file=name,
        level=level,
        tokens=count,
        unk=n_unk,
        skipped=skipped,
        oov=oov,
        logprob=total,
        nats_per_token=nats,
        bits_per_char=nats / math.log(2.0) if level == "char" else None,
        perplexity=math.exp(min(nats, 700.0)),
        batch_size=batch_size,
        bptt=bptt,
        file_tokens=len(ids),
    )
