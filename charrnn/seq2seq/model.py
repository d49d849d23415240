"""Encoder–decoder with attention, both sides built from the language model's `RecurrentCore`.

The encoder is a `RecurrentCore` over the source (optionally bidirectional: each direction gets
`hidden / 2` units, so its outputs and merged final states are `hidden` wide whatever the
direction count). A learned bridge turns its final state into the decoder's initial state.
The decoder is another `RecurrentCore` over the target, with a linear softmax head.

Context, by `attention`:
  none           c = the encoder's final top-layer state; it always initialises the decoder
                 (through the bridge) and with `context="input"` is also concatenated to every
                 decoder input (Cho et al. 2014). The decoder runs as one fused RNN call.
  bahdanau       additive attention, e_ij = v·tanh(W s_{i-1} + U h_j), computed from the decoder's
                 previous state, so c_i feeds the recurrent input of step i: a Python step loop.
  luong-dot      multiplicative attention over the decoder's *outputs*: e_ij = s_i·h_j; then
  luong-general  e_ij = s_i·W h_j; h~_i = tanh(W_c[c_i; s_i]) feeds the softmax. Attention sits
                 above the recurrence, so in training the decoder is one fused RNN call over the
                 whole target (several times faster on a CPU than the Bahdanau loop).
In every case α_i = softmax(e_i) over the non-padded source positions (padding gets exactly 0)
and c_i = Σ_j α_ij h_j.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from charrnn.core.errors import CharRNNError
from charrnn.core.recurrent import RecurrentCore, State, state_from_tensors, state_tensors
from charrnn.core.special_tokens import PAD_ID
from charrnn.seq2seq.attention import Attention, Memory
from charrnn.seq2seq.config import Seq2SeqConfig


def top_layer(state: State) -> torch.Tensor:
    """The top layer's hidden vector of a unidirectional state, (batch, hidden)."""
    h = state[0] if isinstance(state, tuple) else state
    return h[-1]


class Encoder(nn.Module):
    """A `RecurrentCore` over the source; returns outputs and final states with directions merged."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        per_direction = config.hidden // 2 if config.bidirectional else config.hidden
        self.core = RecurrentCore(
            config.source_vocab_size,
            config.embed,
            per_direction,
            config.layers,
            config.cell,
            config.dropout,
            bidirectional=config.bidirectional,
        )

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, State]:
        """src (batch, time), lengths (batch,) -> outputs (batch, time, hidden), state (layers, batch, hidden)."""
        outputs, state = self.core(src, lengths=lengths)
        return outputs, state_from_tensors([self._merge(t) for t in state_tensors(state)])

    def _merge(self, t: torch.Tensor) -> torch.Tensor:
        # (layers * dirs, batch, per_dir) -> (layers, batch, dirs * per_dir): forward and backward side by side
        dirs = self.core.directions
        layers, batch, per_dir = t.shape[0] // dirs, t.shape[1], t.shape[2]
        return t.view(layers, dirs, batch, per_dir).permute(0, 2, 1, 3).reshape(layers, batch, dirs * per_dir)


class Seq2Seq(nn.Module):
    """Encoder `RecurrentCore` -> bridge -> attention -> decoder `RecurrentCore` -> softmax head."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        hidden = config.hidden
        self.encoder = Encoder(config)
        self.bridge = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(2 if config.cell == "lstm" else 1))
        feeds_context = config.attention == "bahdanau" or (
            config.attention == "none" and config.context == "input"
        )
        self.decoder = RecurrentCore(
            config.target_vocab_size,
            config.embed,
            hidden,
            config.layers,
            config.cell,
            config.dropout,
            extra_input=hidden if feeds_context else 0,
        )
        self.attention = (
            Attention(config.attention, hidden, config.attention_size, config.scaled_scores)
            if self.attends
            else None
        )
        # h~ = tanh(W_c [c; s]) for attention; the plain decoder output otherwise
        self.combine = nn.Linear(2 * hidden, hidden) if self.attends else None
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(hidden, config.target_vocab_size)

    @property
    def attends(self) -> bool:
        return self.config.attention != "none"

    # -- encoder side ---------------------------------------------------------------------------

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> Memory:
        """Read a padded source batch (batch, src_time) with its lengths (batch,)."""
        if bool((lengths < 1).any()):
            raise CharRNNError("Cannot translate an empty source sentence; give some text.")
        outputs, final = self.encoder(src, lengths)
        tensors = state_tensors(final)
        init = [torch.tanh(self.bridge[0](tensors[0]))]
        if len(tensors) == 2:  # LSTM cell state: a linear map, no squashing
            init.append(self.bridge[1](tensors[1]))
        return Memory(
            outputs=outputs,
            keys=self.attention.keys(outputs) if self.attention is not None else None,
            mask=torch.arange(src.shape[1], device=src.device).unsqueeze(0) < lengths.to(src.device).unsqueeze(1),
            context=tensors[0][-1],
            init_state=state_from_tensors([t.contiguous() for t in init]),
        )

    # -- decoder side ---------------------------------------------------------------------------

    def _luong_or_plain(
        self, tokens: torch.Tensor, state: State, memory: Memory
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """Fused decoder over tokens (batch, time) for attention none/luong: (h~ (batch, time, hidden), state, weights)."""
        extra = None
        if self.config.attention == "none" and self.config.context == "input":
            extra = memory.context.unsqueeze(1).expand(-1, tokens.shape[1], -1)
        out, state = self.decoder(tokens, state, extra=extra)  # (batch, time, hidden)
        if self.attention is None:
            return out, state, None
        context, weights = self.attention(out, memory)
        return torch.tanh(self.combine(torch.cat([context, out], dim=-1))), state, weights

    def _bahdanau_step(
        self, tokens: torch.Tensor, state: State, memory: Memory
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One Bahdanau step for tokens (batch, 1): attend from s_{i-1}, feed c_i, read s_i."""
        context, weights = self.attention(top_layer(state).unsqueeze(1), memory)  # (batch, 1, hidden)
        out, state = self.decoder(tokens, state, extra=context)
        return torch.tanh(self.combine(torch.cat([context, out], dim=-1))), state, weights

    def decode_step(
        self, tokens: torch.Tensor, state: State, memory: Memory
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """One step from tokens (batch,): log-probabilities (batch, vocab), new state, weights (batch, src_time)."""
        step = self._bahdanau_step if self.config.attention == "bahdanau" else self._luong_or_plain
        h, state, weights = step(tokens.unsqueeze(1), state, memory)
        return self.log_probs(h[:, 0]), state, None if weights is None else weights[:, 0]

    def decode(
        self,
        memory: Memory,
        tgt_in: torch.Tensor,
        teacher_forcing: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decoder pre-softmax vectors (batch, time, hidden) for inputs tgt_in (batch, time), and weights.

        With `teacher_forcing` < 1, each step's input is the gold token with that probability and
        the model's own previous prediction otherwise (scheduled sampling), which needs a step loop.
        """
        if teacher_forcing >= 1.0 and self.config.fused_training:
            h, _, weights = self._luong_or_plain(tgt_in, memory.init_state, memory)
            return h, weights
        step = self._bahdanau_step if self.config.attention == "bahdanau" else self._luong_or_plain
        state, outputs, all_weights = memory.init_state, [], []
        tokens = tgt_in[:, :1]
        for t in range(tgt_in.shape[1]):
            if t and teacher_forcing < 1.0:
                with torch.no_grad():
                    predicted = self.head(outputs[-1][:, 0]).argmax(-1, keepdim=True)
                gold = torch.rand(tokens.shape, generator=generator, device=tokens.device) < teacher_forcing
                tokens = torch.where(gold, tgt_in[:, t : t + 1], predicted)
            elif t:
                tokens = tgt_in[:, t : t + 1]
            h, state, weights = step(tokens, state, memory)
            outputs.append(h)
            if weights is not None:
                all_weights.append(weights)
        return torch.cat(outputs, 1), (torch.cat(all_weights, 1) if all_weights else None)

    def forward(
        self,
        src: torch.Tensor,
        src_lengths: torch.Tensor,
        tgt_in: torch.Tensor,
        teacher_forcing: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher-forced logits (batch, tgt_time, vocab) and attention weights (batch, tgt_time, src_time)."""
        h, weights = self.decode(self.encode(src, src_lengths), tgt_in, teacher_forcing)
        return self.head(self.dropout(h)), weights

    def log_probs(self, h: torch.Tensor) -> torch.Tensor:
        """Log-probabilities over the target vocabulary, (..., vocab)."""
        return F.log_softmax(self.head(self.dropout(h)).float(), dim=-1)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy per target token, `<pad>` targets masked out."""
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            targets.reshape(-1),
            ignore_index=PAD_ID,
            label_smoothing=label_smoothing,
        )

    def target_log_probs(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """log P(target token | source, previous target tokens) at every position, (batch, tgt_time)."""
        h, _ = self.decode(self.encode(src, src_lengths), tgt_in)
        return self.log_probs(h).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
