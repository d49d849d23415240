"""The one-sentence beam search: the reference `batched_beam_search` must agree with (tests, bench/beam.py).

It takes the same step (`expand_beam`) as the batched search, one sentence at a time, with none of the
batch's bookkeeping (slots left empty at -inf, sentences leaving the batch, memory rows selected).
"""

from __future__ import annotations

import torch

from charrnn.core.recurrent import select_state
from charrnn.core.sampling import never_emitted
from charrnn.core.special_tokens import EOS_ID
from charrnn.seq2seq.decoding import Hypothesis, TranslateSettings, expand_beam
from charrnn.seq2seq.model import Seq2Seq


@torch.inference_mode()
def beam_search(
    model: Seq2Seq, source: list[int], settings: TranslateSettings, with_attention: bool = False
) -> list[Hypothesis]:
    """Beam search for one source; hypotheses best first by length-normalised score."""
    model.eval()
    device = next(model.parameters()).device
    k, alpha, limit = settings.beam, settings.length_penalty, settings.limit(len(source))
    memory = model.encode(torch.tensor([source], device=device), torch.tensor([len(source)]))
    state = memory.init_state
    alive: list[Hypothesis] = [Hypothesis([], 0.0, False, [] if with_attention else None)]
    alive_logprob = torch.zeros(1, dtype=torch.float64, device=device)
    tokens = torch.full((1,), EOS_ID, dtype=torch.long, device=device)
    done: list[Hypothesis] = []
    for step in range(limit):
        beam_memory = memory.select(torch.zeros(len(alive), dtype=torch.long, device=device))
        log_probs, state, weights = model.decode_step(tokens, state, beam_memory)  # (alive, vocab)
        candidates = alive_logprob.unsqueeze(1) + never_emitted(log_probs).double()
        top = torch.topk(candidates.flatten(), min(2 * k, candidates.numel()))
        rows, next_tokens, kept = expand_beam(
            alive, top.values.tolist(), top.indices.tolist(), candidates.shape[1], k, weights, done
        )
        if len(done) >= k or not kept:
            break
        alive = kept
        if step + 1 == limit:
            break
        state = select_state(state, torch.tensor(rows, dtype=torch.long, device=device))
        tokens = torch.tensor(next_tokens, dtype=torch.long, device=device)
        alive_logprob = torch.tensor([h.logprob for h in alive], dtype=torch.float64, device=device)
    return sorted(done if done else alive, key=lambda h: -h.score(alpha))
