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

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from charrnn import FORMAT_VERSION, __version__
from charrnn import checkpoint as ckpt
from charrnn.config import CELLS, TokenizerConfig, TrainConfig, _choice, dataclass_from_dict
from charrnn.errors import CharRNNError
from charrnn.model import RecurrentCore, State, state_from_tensors, state_tensors
from charrnn.tokenizers import PAD_ID, Tokenizer

ATTENTIONS = ("none", "bahdanau", "luong-dot", "luong-general")
CONTEXTS = ("init", "input")


@dataclass
class Seq2SeqConfig:
    """Shape of the encoder–decoder."""

    source_vocab_size: int = 0  # filled in from the source tokenizer
    target_vocab_size: int = 0  # filled in from the target tokenizer
    cell: str = "gru"
    embed: int = 256
    hidden: int = 256  # decoder units; encoder outputs are this wide too
    layers: int = 1  # encoder and decoder layers
    dropout: float = 0.2
    bidirectional: bool = True
    attention: str = "luong-general"
    context: str = "init"  # attention none only: c initialises the decoder, or is also fed at every step
    attention_size: int = 0  # Bahdanau's inner size; 0 means `hidden`

    def validate(self) -> None:
        _choice("cell", self.cell, CELLS)
        _choice("attention", self.attention, ATTENTIONS)
        _choice("context", self.context, CONTEXTS)
        for name in ("embed", "hidden", "layers"):
            if getattr(self, name) < 1:
                raise CharRNNError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if self.bidirectional and self.hidden % 2:
            raise CharRNNError(
                f"--bidirectional splits --hidden between two directions; give an even size (got {self.hidden})."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise CharRNNError(f"--dropout must be in [0, 1), got {self.dropout}.")
        if self.attention_size < 0:
            raise CharRNNError(f"--attention-size must be 0 (= hidden) or more, got {self.attention_size}.")

    @property
    def fused_training(self) -> bool:
        """Whether teacher-forced training runs the decoder as one RNN call (all but Bahdanau)."""
        return self.attention != "bahdanau"


@dataclass
class Memory:
    """What the decoder reads from the encoder, for a batch of source sentences."""

    outputs: torch.Tensor  # (batch, src_time, hidden) encoder outputs h_j
    keys: torch.Tensor | None  # (batch, src_time, key) the attention's precomputed transform of h_j
    mask: torch.Tensor  # (batch, src_time) True at real (non-pad) positions
    context: torch.Tensor  # (batch, hidden) the encoder's final top-layer state
    init_state: State  # the decoder's initial state, (layers, batch, hidden) each

    def select(self, rows: torch.Tensor) -> Memory:
        """The memory of the given rows (for beam search: repeat a sentence K times)."""
        return Memory(
            outputs=self.outputs.index_select(0, rows),
            keys=None if self.keys is None else self.keys.index_select(0, rows),
            mask=self.mask.index_select(0, rows),
            context=self.context.index_select(0, rows),
            init_state=select_state(self.init_state, rows),
        )


def select_state(state: State, rows: torch.Tensor) -> State:
    """Pick batch rows of a recurrent state."""
    return state_from_tensors([t.index_select(1, rows) for t in state_tensors(state)])


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


class Attention(nn.Module):
    """Scores e_ij between decoder queries and encoder outputs; the three kinds differ only here."""

    def __init__(self, kind: str, hidden: int, attention_size: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":
            size = attention_size or hidden
            self.key_proj = nn.Linear(hidden, size)  # U h_j (+ bias)
            self.query_proj = nn.Linear(hidden, size, bias=False)  # W s_{i-1}
            self.v = nn.Linear(size, 1, bias=False)
        elif kind == "luong-general":
            self.key_proj = nn.Linear(hidden, hidden, bias=False)  # W h_j, so s_i·(W h_j)

    def keys(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """The per-sentence part of the score, computed once: (batch, src_time, key) or None for dot."""
        return self.key_proj(outputs) if self.kind in ("bahdanau", "luong-general") else None

    def forward(self, query: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        """query (batch, tgt_time, hidden) -> context (batch, tgt_time, hidden), weights (batch, tgt_time, src_time)."""
        if self.kind == "bahdanau":
            # (batch, tgt, 1, size) + (batch, 1, src, size) -> (batch, tgt, src)
            energy = torch.tanh(self.query_proj(query).unsqueeze(2) + memory.keys.unsqueeze(1))
            scores = self.v(energy).squeeze(-1)
        else:
            keys = memory.outputs if memory.keys is None else memory.keys
            scores = torch.bmm(query, keys.transpose(1, 2))  # (batch, tgt, src)
        scores = scores.masked_fill(~memory.mask.unsqueeze(1), -math.inf)
        weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)  # exactly 0 where masked
        return torch.bmm(weights, memory.outputs), weights


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
        self.attention = Attention(config.attention, hidden, config.attention_size) if self.attends else None
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


# -- run configuration and run directories --------------------------------------------------------

SOURCE_DIR, TARGET_DIR = "source", "target"  # each side's tokenizer files live in its own subfolder


@dataclass
class Seq2SeqTrainConfig(TrainConfig):
    """Training settings: the language model's, plus teacher forcing, label smoothing and a length cap.

    `bptt` and `eval_tokens` are not used by seq2seq training (a batch is whole sentence pairs;
    validation always covers every held-out pair).
    """

    batch_size: int = 64  # sentence pairs per step
    lr: float = 2e-3
    epochs: int = 30
    eval_every: int = 500
    save_every: int = 500
    val_fraction: float = 0.05
    teacher_forcing: float = 1.0  # probability of feeding the gold previous token (1: always)
    label_smoothing: float = 0.0
    max_length: int | None = None  # skip training pairs with more tokens than this on either side

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise CharRNNError(f"--teacher-forcing must be in [0, 1], got {self.teacher_forcing}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise CharRNNError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.max_length is not None and self.max_length < 1:
            raise CharRNNError(f"--max-length must be at least 1, got {self.max_length}.")


@dataclass
class Seq2SeqRunConfig:
    """Everything that describes a seq2seq run; saved as config.json with kind "seq2seq"."""

    source_tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    target_tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    training: Seq2SeqTrainConfig = field(default_factory=Seq2SeqTrainConfig)
    pairs: str | None = None  # training TSV ...
    source_file: str | None = None  # ... or two parallel files
    target_file: str | None = None
    val_pairs: str | None = None  # held-out TSV or parallel files; else --val-fraction of the training pairs
    val_source_file: str | None = None
    val_target_file: str | None = None
    kind: str = "seq2seq"
    charrnn_version: str = __version__
    format_version: int = FORMAT_VERSION

    def validate(self) -> None:
        self.source_tokenizer.validate()
        self.target_tokenizer.validate()
        self.model.validate()
        self.training.validate()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Seq2SeqRunConfig:
        parts = {
            "source_tokenizer": TokenizerConfig,
            "target_tokenizer": TokenizerConfig,
            "model": Seq2SeqConfig,
            "training": Seq2SeqTrainConfig,
        }
        nested = {name: dataclass_from_dict(kind, data.get(name, {})) for name, kind in parts.items()}
        return dataclass_from_dict(cls, {**{k: v for k, v in data.items() if k not in parts}, **nested})


def read_seq2seq_config(run_dir: str | Path) -> Seq2SeqRunConfig:
    """Read and check the config.json of a seq2seq run directory."""
    data = ckpt.read_run_json(Path(run_dir), "seq2seq", "seq2seq train")
    try:
        return Seq2SeqRunConfig.from_dict(data)
    except TypeError as exc:
        raise CharRNNError(f"{Path(run_dir) / ckpt.CONFIG_FILE} is damaged: {exc}.") from None


def write_seq2seq_run_files(
    run_dir: Path, config: Seq2SeqRunConfig, source_tokenizer: Tokenizer, target_tokenizer: Tokenizer
) -> None:
    """Write config.json and both tokenizers (source/..., target/...)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write(run_dir / ckpt.CONFIG_FILE, config.to_json().encode("utf-8"))
    for side, tokenizer in ((SOURCE_DIR, source_tokenizer), (TARGET_DIR, target_tokenizer)):
        (run_dir / side).mkdir(exist_ok=True)
        for name, data in tokenizer.to_files().items():
            ckpt.atomic_write(run_dir / side / name, data)


def tokenizers_fingerprint(source_tokenizer: Tokenizer, target_tokenizer: Tokenizer) -> str:
    """A short hash of both tokenizers, stored with the weights so a swapped tokenizer file is caught."""
    return ckpt.tokenizer_fingerprint(source_tokenizer) + "-" + ckpt.tokenizer_fingerprint(target_tokenizer)


def read_side_tokenizers(run_dir: Path) -> tuple[Tokenizer, Tokenizer]:
    """The source and target tokenizers of a seq2seq run."""
    tokenizers = []
    for side in (SOURCE_DIR, TARGET_DIR):
        if not (run_dir / side).is_dir():
            raise CharRNNError(f"{run_dir / side} is missing; the run directory is incomplete.")
        tokenizers.append(ckpt.read_tokenizer(run_dir / side))
    return tokenizers[0], tokenizers[1]


def load_seq2seq(
    run_dir: str | Path, device: torch.device | str = "cpu", weights: str = ckpt.WEIGHTS_FILE
) -> tuple[Seq2SeqRunConfig, Tokenizer, Tokenizer, Seq2Seq]:
    """Load (config, source tokenizer, target tokenizer, model in eval mode) from a seq2seq run."""
    run_dir = Path(run_dir)
    config = read_seq2seq_config(run_dir)
    source_tokenizer, target_tokenizer = read_side_tokenizers(run_dir)
    for side, tokenizer, size in (
        ("source", source_tokenizer, config.model.source_vocab_size),
        ("target", target_tokenizer, config.model.target_vocab_size),
    ):
        if tokenizer.vocab_size != size:
            raise CharRNNError(
                f"{run_dir}: the {side} tokenizer has {tokenizer.vocab_size} entries but the model was built "
                f"for {size}; the tokenizer file belongs to another run."
            )
    if not (run_dir / weights).is_file():
        raise CharRNNError(
            f"{run_dir} has no {weights} yet: training has not reached its first evaluation; train longer."
        )
    model = Seq2Seq(config.model)
    metadata = ckpt.load_weights_into(model, run_dir / weights)
    recorded = metadata.get("tokenizer")
    if recorded is not None and recorded != tokenizers_fingerprint(source_tokenizer, target_tokenizer):
        raise CharRNNError(
            f"The tokenizer files in {run_dir} are not the ones {weights} was trained with; "
            "restore the run's own source/ and target/ folders."
        )
    return config, source_tokenizer, target_tokenizer, model.to(device).eval()
