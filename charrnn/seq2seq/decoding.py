"""Translating with a seq2seq model: batched greedy decoding and beam search.

`<unk>` (and `<pad>`) are never emitted, as in the sampler: their log-probabilities are set to
-inf before choosing. The other tokens keep the model's own log-probabilities (no renormalising),
so a hypothesis's `logprob` is exactly log P(tokens + `<eos>` | source) as the scorer computes it.

Beam search keeps the K best partial hypotheses by total log-probability; a hypothesis that emits
`<eos>` among the K best candidates is finished. It stops when K hypotheses are finished (or at the
length limit) and returns the finished one with the best length-normalised score
logprob / length ** alpha (`length_penalty` alpha; 0 ranks by raw log-probability, which favours
short outputs). With K = 1 it is exactly greedy decoding.

`batched_beam_search` runs the search for many sentences at once, as one decoder batch of sentences x K
rows; `expand_beam` is one sentence's step of it. The one-sentence search in tests/beam_oracle.py takes
the same steps one sentence at a time: the tests (and bench/beam.py) check that both find the same hypotheses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.recurrent import select_state
from charrnn.core.sampling import SampleSettings, check_rows_fit, choose_tokens, never_emitted
from charrnn.core.scoring import pad_sequences
from charrnn.core.special_tokens import EOS_ID
from charrnn.core.tokenizers import Tokenizer
from charrnn.seq2seq.model import Seq2Seq
from charrnn.seq2seq.pairs import encode_source

GREEDY = SampleSettings(greedy=True)


MAX_BEAM = 256  # beam width: the decoder computes sentences x beam rows of vocabulary scores each step


@dataclass
class TranslateSettings:
    """How to search for a translation."""

    beam: int = 1
    max_length: int | None = None  # target tokens, <eos> included; None: 2 x source tokens + 10
    length_penalty: float = 1.0  # alpha in logprob / length ** alpha (beam search ranking)
    batch_size: int = 64  # sentences decoded together (beam search: batch_size x beam decoder rows)

    def validate(self) -> None:
        if not 1 <= self.beam <= MAX_BEAM:
            raise CharRNNError(
                f"--beam must be between 1 and {MAX_BEAM} (wider beams hold beam x vocabulary scores per "
                f"sentence and seldom translate better), got {self.beam}."
            )
        if self.max_length is not None and self.max_length < 1:
            raise CharRNNError(f"--max-length must be at least 1, got {self.max_length}.")
        if not (math.isfinite(self.length_penalty) and self.length_penalty >= 0):
            raise CharRNNError(f"--length-penalty must be 0 or more, got {self.length_penalty}.")
        if self.batch_size < 1:
            raise CharRNNError(f"--batch-size must be at least 1, got {self.batch_size}.")

    def limit(self, source_length: int) -> int:
        """The most target tokens (with `<eos>`) to generate for a source of this many tokens."""
        return self.max_length if self.max_length is not None else 2 * source_length + 10


def decoder_rows(sentences: int, beam: int) -> int:
    """Rows the decoder computes per step when translating `sentences` sentences at this beam width."""
    return min(sentences, TranslateSettings.batch_size) * beam


@dataclass
class Hypothesis:
    """Generated target ids and their scores."""

    ids: list[int]  # without the closing <eos>
    logprob: float  # log P(ids (+ <eos> when finished) | source)
    finished: bool  # ended with <eos> (False: stopped at the length limit)
    attention: list[list[float]] | None = None  # (generated steps, source tokens), one row per step

    @property
    def length(self) -> int:
        """Tokens scored: the ids plus `<eos>` when finished."""
        return len(self.ids) + int(self.finished)

    def score(self, alpha: float) -> float:
        """Length-normalised log-probability."""
        return self.logprob / max(self.length, 1) ** alpha


@dataclass
class Translation:
    """One translated sentence."""

    source: str
    text: str
    source_tokens: list[str]  # what the encoder read, closing <eos> included
    tokens: list[str]  # generated tokens, closing <eos> included when finished
    logprob: float
    score: float
    finished: bool
    attention: list[list[float]] | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq, sources: list[list[int]], settings: TranslateSettings, with_attention: bool = False
) -> list[Hypothesis]:
    """The most probable token at every step, for many sources at once (batched by length)."""
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[Hypothesis | None] = [None] * len(sources)
    for start in range(0, len(order), settings.batch_size):
        rows = order[start : start + settings.batch_size]
        batch = [sources[i] for i in rows]
        memory = model.encode(
            pad_sequences(batch).to(device), torch.tensor([len(s) for s in batch], dtype=torch.long)
        )
        limits = torch.tensor([settings.limit(len(s)) for s in batch], device=device)
        n = len(rows)
        tokens = torch.full((n,), EOS_ID, dtype=torch.long, device=device)
        state = memory.init_state
        ids: list[list[int]] = [[] for _ in rows]
        logprob = torch.zeros(n, dtype=torch.float64, device=device)
        finished = torch.zeros(n, dtype=torch.bool, device=device)
        active = torch.ones(n, dtype=torch.bool, device=device)
        attention: list[list[list[float]]] = [[] for _ in rows]
        for step in range(int(limits.max())):
            log_probs, state, weights = model.decode_step(tokens, state, memory)
            tokens = choose_tokens(log_probs, GREEDY, None)  # <unk>/<pad> masked, as in the sampler
            chosen = log_probs.gather(1, tokens.unsqueeze(1)).squeeze(1)
            logprob += torch.where(active, chosen.double(), torch.zeros_like(logprob))
            for r in torch.nonzero(active).flatten().tolist():
                token = int(tokens[r])
                if token != EOS_ID:
                    ids[r].append(token)
                if with_attention and weights is not None:
                    attention[r].append(weights[r, : len(batch[r])].tolist())
            finished |= active & (tokens == EOS_ID)
            active &= (tokens != EOS_ID) & (step + 1 < limits)
            if not bool(active.any()):
                break
        for r, i in enumerate(rows):
            results[i] = Hypothesis(
                ids[r], float(logprob[r]), bool(finished[r]), attention[r] if with_attention else None
            )
    return results  # type: ignore[return-value]


def expand_beam(
    alive: list[Hypothesis],
    totals: list[float],
    flat: list[int],
    vocab: int,
    k: int,
    weights: torch.Tensor | None,
    done: list[Hypothesis],
) -> tuple[list[int], list[int], list[Hypothesis]]:
    """One beam-search step for one sentence, from its best candidates in order.

    Candidate i extends hypothesis `alive[slot]` by `token` (flat[i] = slot * vocab + token) with total
    log-probability totals[i]. One that ends in `<eos>` among the K best finishes its hypothesis (appended
    to `done`); the others are kept until K are. `weights` (slots, source tokens) is this step's attention,
    recorded when the hypotheses carry theirs. Returns the kept hypotheses' parent slots, tokens and hypotheses.
    """
    slots: list[int] = []
    tokens: list[int] = []
    kept: list[Hypothesis] = []
    for rank, (total, index) in enumerate(zip(totals, flat, strict=True)):
        if total == -math.inf:
            break
        slot, token = divmod(index, vocab)
        parent = alive[slot]
        attn = None
        if parent.attention is not None and weights is not None:
            attn = parent.attention + [weights[slot].tolist()]
        if token == EOS_ID:
            if rank < k:
                done.append(Hypothesis(list(parent.ids), total, True, attn))
            continue
        slots.append(slot)
        tokens.append(token)
        kept.append(Hypothesis(parent.ids + [token], total, False, attn))
        if len(kept) == k:
            break
    return slots, tokens, kept


@torch.inference_mode()
def batched_beam_search(
    model: Seq2Seq, sources: list[list[int]], settings: TranslateSettings, with_attention: bool = False
) -> list[list[Hypothesis]]:
    """Beam search for many sources at once; per source, hypotheses best first by length-normalised score."""
    model.eval()
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    results: list[list[Hypothesis]] = [[] for _ in sources]
    for start in range(0, len(order), settings.batch_size):
        rows = order[start : start + settings.batch_size]
        found = _beam_batch(model, [sources[i] for i in rows], settings, with_attention)
        for i, hyps in zip(rows, found, strict=True):
            results[i] = hyps
    return results


def _beam_batch(
    model: Seq2Seq, batch: list[list[int]], settings: TranslateSettings, with_attention: bool
) -> list[list[Hypothesis]]:
    """Beam search over one batch of sources: sentence s owns decoder rows s*K .. s*K+K-1 (its slots).

    A slot with no hypothesis (fewer than K survived) carries log-probability -inf, so none of its
    candidates is ever chosen. Sentences that finish leave the batch, so late steps decode fewer rows.
    """
    device = next(model.parameters()).device
    k, n = settings.beam, len(batch)
    memory = model.encode(pad_sequences(batch).to(device), torch.tensor([len(s) for s in batch], dtype=torch.long))
    memory = memory.select(torch.arange(n, device=device).repeat_interleave(k))  # (n * k, ...)
    state = memory.init_state
    tokens = torch.full((n * k,), EOS_ID, dtype=torch.long, device=device)
    slot_logprob = torch.full((n, k), -math.inf, dtype=torch.float64, device=device)
    slot_logprob[:, 0] = 0.0
    alive = [[Hypothesis([], 0.0, False, [] if with_attention else None)] for _ in batch]
    done: list[list[Hypothesis]] = [[] for _ in batch]
    limits = [settings.limit(len(s)) for s in batch]
    searching = list(range(n))  # the sentences still in the decoder batch, in row order
    for step in range(max(limits)):
        log_probs, state, weights = model.decode_step(tokens, state, memory)  # (rows, vocab)
        vocab = log_probs.shape[1]
        candidates = slot_logprob.unsqueeze(2) + never_emitted(log_probs).double().view(len(searching), k, vocab)
        top = torch.topk(candidates.view(len(searching), k * vocab), min(2 * k, k * vocab), dim=1)
        next_rows: list[int] = []
        next_tokens: list[int] = []
        next_logprob: list[list[float]] = []
        still: list[int] = []
        attention = weights if with_attention else None  # (rows, source tokens) or None
        for position, (s, values, indices) in enumerate(
            zip(searching, top.values.tolist(), top.indices.tolist(), strict=True)
        ):
            own = None if attention is None else attention[position * k : (position + 1) * k, : len(batch[s])]
            keep_slots, keep_tokens, keep_hyps = expand_beam(alive[s], values, indices, vocab, k, own, done[s])
            keep_rows = [position * k + slot for slot in keep_slots]
            if len(done[s]) >= k or not keep_hyps:
                continue
            alive[s] = keep_hyps
            if step + 1 == limits[s]:
                continue
            still.append(s)
            empty = k - len(keep_rows)  # slots left without a hypothesis follow any row, at -inf
            next_rows += keep_rows + [keep_rows[0]] * empty
            next_tokens += keep_tokens + [keep_tokens[0]] * empty
            next_logprob.append([h.logprob for h in keep_hyps] + [-math.inf] * empty)
        if not still:
            break
        rows = torch.tensor(next_rows, dtype=torch.long, device=device)
        state = select_state(state, rows)
        if len(still) != len(searching):
            memory = memory.select(rows)  # every slot of a sentence reads the same memory
        searching = still
        tokens = torch.tensor(next_tokens, dtype=torch.long, device=device)
        slot_logprob = torch.tensor(next_logprob, dtype=torch.float64, device=device)
    alpha = settings.length_penalty
    return [sorted(d if d else a, key=lambda h: -h.score(alpha)) for d, a in zip(done, alive, strict=True)]


def translate_ids(
    model: Seq2Seq, sources: list[list[int]], settings: TranslateSettings, with_attention: bool = False
) -> list[Hypothesis]:
    """The best hypothesis for every source: greedy for beam 1, beam search otherwise (both batched)."""
    settings.validate()
    check_rows_fit(decoder_rows(len(sources), settings.beam), model.config.target_vocab_size, "--beam")
    if settings.beam == 1:
        return greedy_search(model, sources, settings, with_attention)
    return [hyps[0] for hyps in batched_beam_search(model, sources, settings, with_attention)]


def translate(
    model: Seq2Seq,
    source_tokenizer: Tokenizer,
    target_tokenizer: Tokenizer,
    texts: list[str],
    settings: TranslateSettings | None = None,
    with_attention: bool = False,
) -> list[Translation]:
    """Translate source sentences into detokenised target text."""
    settings = settings or TranslateSettings()
    settings.validate()
    sources = []
    for text in texts:
        if not text.strip():
            raise CharRNNError("Cannot translate an empty sentence; give some text.")
        sources.append(encode_source(source_tokenizer, text.strip()))
    hypotheses = translate_ids(model, sources, settings, with_attention)
    translations = []
    for text, ids, hyp in zip(texts, sources, hypotheses, strict=True):
        generated = hyp.ids + ([EOS_ID] if hyp.finished else [])
        translations.append(
            Translation(
                source=text,
                text=target_tokenizer.decode(hyp.ids),
                source_tokens=source_tokenizer.tokens(ids),
                tokens=target_tokenizer.tokens(generated),
                logprob=hyp.logprob,
                score=hyp.score(settings.length_penalty),
                finished=hyp.finished,
                attention=hyp.attention,
            )
        )
    return translations
