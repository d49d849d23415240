"""Char, word and sentencepiece-subword tokenizers behind one interface.

Every tokenizer reserves three ids (`charrnn.core.special_tokens`): `<pad>` = 0 (batch padding,
never predicted), `<unk>` = 1 (any unit outside the vocabulary) and `<eos>` = 2 (the end of every line).
A corpus is a sequence of lines; each line becomes its tokens followed by `<eos>`, so a
model learns where sentences end, and the first token of a line is conditioned on the
`<eos>` before it ("start of sentence" needs no extra token).
"""

from __future__ import annotations

import functools
import io
import json
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np

from charrnn.core.config import TokenizerConfig
from charrnn.core.errors import CharRNNError
from charrnn.core.special_tokens import EOS, EOS_ID, PAD, PAD_ID, SPECIALS, UNK, UNK_ID

TOKENIZER_JSON = "tokenizer.json"
SENTENCEPIECE_MODEL = "tokenizer.model"

# Word level: a literal "<unk>" (as in WikiText), words (letters/digits joined by inner
# apostrophes or hyphens: "don't", "well-known"), or any other single non-space character.
WORD_PATTERN = re.compile(r"<unk>|\w+(?:['’\-]\w+)*|[^\w\s]")
WORDS_AND_LINE_ENDS = re.compile(WORD_PATTERN.pattern + r"|\n")  # words, and line ends (as <eos>)
NO_SPACE_BEFORE = frozenset(".,;:!?)]}%'’”»…")
NO_SPACE_AFTER = frozenset("([{“«$")


def split_lines(text: str) -> list[str]:
    """Split text into lines on '\\n'; a final newline does not start an extra empty line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


class Tokenizer(ABC):
    """Maps text to ids and back; `<eos>` stands for a line break."""

    level: str

    def __init__(self, lowercase: bool = False) -> None:
        self.lowercase = lowercase

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, specials included."""

    @abstractmethod
    def encode_line(self, line: str) -> list[int]:
        """Ids of one line, without `<eos>`."""

    @abstractmethod
    def id_to_token(self, token_id: int) -> str:
        """The vocabulary entry for an id (specials as `<unk>`, `<eos>`, `<pad>`)."""

    @abstractmethod
    def _piece(self, token_id: int, previous: int | None) -> str:
        """Text to append for `token_id` (not `<eos>`), given the id before it on this line."""

    @abstractmethod
    def to_files(self) -> dict[str, bytes]:
        """The files that store this tokenizer, by name."""

    def encode(self, text: str) -> list[int]:
        """Ids of `text`; each line break becomes `<eos>` (no `<eos>` added at the end)."""
        ids: list[int] = []
        for i, line in enumerate(text.split("\n")):
            if i:
                ids.append(EOS_ID)
            ids.extend(self.encode_line(line))
        return ids

    def bulk_encoder(self) -> Callable[[str], np.ndarray]:
        """A function doing what `encode` does to a large piece of text, as uint32 ids (token caches use it).

        Each line break becomes `<eos>`. This default encodes line by line; char and word level have
        faster ones.
        """

        def encode_text(text: str) -> np.ndarray:
            return np.asarray(self.encode(text), dtype=np.uint32)

        return encode_text

    def encode_corpus(self, text: str) -> list[int]:
        """Ids of a corpus: every line's ids followed by `<eos>`."""
        ids: list[int] = []
        for line in split_lines(text):
            ids.extend(self.encode_line(line))
            ids.append(EOS_ID)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; `<eos>` becomes a line break, `<pad>` is dropped."""
        step = self.stream_decoder()
        return "".join(step(i) for i in ids)

    def stream_decoder(self):
        """A function id -> text to append, for printing tokens as they are generated."""
        previous: int | None = None

        def step(token_id: int) -> str:
            nonlocal previous
            if token_id == PAD_ID:
                return ""
            if token_id == EOS_ID:
                previous = None
                return "\n"
            piece = self._piece(token_id, previous)
            previous = token_id
            return piece

        return step

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """Vocabulary entries of `ids`, for per-token display."""
        return [self.id_to_token(i) for i in ids]


class VocabTokenizer(Tokenizer):
    """A tokenizer with an explicit list of units (char or word)."""

    def __init__(self, units: list[str], lowercase: bool = False) -> None:
        super().__init__(lowercase)
        if list(units[: len(SPECIALS)]) != list(SPECIALS):
            raise CharRNNError("Tokenizer vocabulary must start with <pad>, <unk>, <eos>; the file is damaged.")
        self.units = list(units)
        self.index = {u: i for i, u in enumerate(self.units)}
        if len(self.index) != len(self.units):
            raise CharRNNError("Tokenizer vocabulary has duplicate entries; the file is damaged.")

    @property
    def vocab_size(self) -> int:
        return len(self.units)

    def id_to_token(self, token_id: int) -> str:
        return self.units[token_id]

    @abstractmethod
    def split(self, line: str) -> list[str]:
        """The units of one line, before vocabulary lookup."""

    def encode_line(self, line: str) -> list[int]:
        if self.lowercase:
            line = line.lower()
        get = self.index.get
        return [get(u, UNK_ID) for u in self.split(line)]

    @classmethod
    def build(cls, text: str, config: TokenizerConfig) -> VocabTokenizer:
        """Count units in `text` and keep the most frequent ones allowed by the config."""
        counts: Counter[str] = Counter()
        probe = cls(list(SPECIALS), config.lowercase)
        for line in split_lines(text):
            counts.update(probe.split(line.lower() if config.lowercase else line))
        return cls.from_counts(counts, config)

    @classmethod
    def from_counts(cls, counts: Counter[str], config: TokenizerConfig) -> VocabTokenizer:
        """The vocabulary of the most frequent units in `counts` allowed by the config (ties by unit)."""
        counts = Counter(counts)
        for special in SPECIALS:
            counts.pop(special, None)
        kept = [u for u, c in sorted(counts.items(), key=lambda uc: (-uc[1], uc[0])) if c >= config.min_count]
        if config.vocab_size is not None:
            kept = kept[: max(config.vocab_size - len(SPECIALS), 0)]
        if not kept:
            raise CharRNNError("The corpus yields an empty vocabulary; check the file or lower --min-count.")
        return cls(list(SPECIALS) + kept, config.lowercase)

    def to_files(self) -> dict[str, bytes]:
        payload = {"level": self.level, "lowercase": self.lowercase, "units": self.units}
        return {TOKENIZER_JSON: json.dumps(payload, ensure_ascii=False, indent=0).encode("utf-8")}


class CharTokenizer(VocabTokenizer):
    """Unicode code points; lossless for any text whose characters are in the vocabulary."""

    level = "char"

    def split(self, line: str) -> list[str]:
        return list(line)

    def bulk_encoder(self) -> Callable[[str], np.ndarray]:
        """`encode` as one table look-up per character (code point -> id)."""
        table = np.full(0x110000, UNK_ID, dtype=np.uint32)
        for index, unit in enumerate(self.units):
            if len(unit) == 1 and index >= len(SPECIALS):
                table[ord(unit)] = index
        table[ord("\n")] = EOS_ID

        def encode_chars(text: str) -> np.ndarray:
            if self.lowercase:
                text = text.lower()
            return table[np.frombuffer(text.encode("utf-32-le"), dtype="<u4")]

        return encode_chars

    def _piece(self, token_id: int, previous: int | None) -> str:
        return self.units[token_id]


class WordTokenizer(VocabTokenizer):
    """Words and punctuation marks (see WORD_PATTERN); decoding re-inserts spaces between words."""

    level = "word"

    def split(self, line: str) -> list[str]:
        return WORD_PATTERN.findall(line)

    def bulk_encoder(self) -> Callable[[str], np.ndarray]:
        """`encode` as one regular-expression pass over the text; a module-level function, so worker processes can run it."""
        return functools.partial(_encode_words, {**self.index, "\n": EOS_ID}, self.lowercase)

    def _piece(self, token_id: int, previous: int | None) -> str:
        word = self.units[token_id]
        if previous is None or word in NO_SPACE_BEFORE or self.units[previous] in NO_SPACE_AFTER:
            return word
        return " " + word


def _encode_words(index: dict[str, int], lowercase: bool, text: str) -> np.ndarray:
    """Ids of the words of `text`, each '\n' as `<eos>`, as uint32."""
    units = WORDS_AND_LINE_ENDS.findall(text.lower() if lowercase else text)
    get = index.get
    return np.fromiter((get(u, UNK_ID) for u in units), dtype=np.uint32, count=len(units))


class SubwordTokenizer(Tokenizer):
    """A sentencepiece model (unigram or BPE) trained on the corpus."""

    level = "subword"

    def __init__(self, model_proto: bytes, lowercase: bool = False) -> None:
        import sentencepiece as spm

        super().__init__(lowercase)
        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(model_proto)
        except Exception:  # sentencepiece raises plain RuntimeError/OSError
            raise CharRNNError("The sentencepiece model file is damaged; retrain or restore it.") from None
        if (self.sp.pad_id(), self.sp.unk_id(), self.sp.eos_id()) != (PAD_ID, UNK_ID, EOS_ID):
            raise CharRNNError("The sentencepiece model does not use charrnn's special ids; retrain it.")

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode_line(self, line: str) -> list[int]:
        if self.lowercase:
            line = line.lower()
        return self.sp.encode(line) if line else []

    def id_to_token(self, token_id: int) -> str:
        return SPECIALS[token_id] if token_id < len(SPECIALS) else self.sp.id_to_piece(token_id)

    def _piece(self, token_id: int, previous: int | None) -> str:
        if token_id == UNK_ID:
            return (" " if previous is not None else "") + UNK
        text = self.sp.id_to_piece(token_id).replace("\u2581", " ")
        return text.lstrip(" ") if previous is None else text

    def to_files(self) -> dict[str, bytes]:
        payload = {"level": self.level, "lowercase": self.lowercase, "model_file": SENTENCEPIECE_MODEL}
        return {
            TOKENIZER_JSON: json.dumps(payload, indent=0).encode("utf-8"),
            SENTENCEPIECE_MODEL: self.model_proto,
        }

    @classmethod
    def build(cls, text: str, config: TokenizerConfig) -> SubwordTokenizer:
        """Train a sentencepiece model on the lines of `text`."""
        return cls.train_on_lines(split_lines(text), config)

    @classmethod
    def train_on_lines(cls, sample: Iterable[str], config: TokenizerConfig) -> SubwordTokenizer:
        """Train a sentencepiece model on the non-blank lines of `sample`."""
        import sentencepiece as spm

        if config.vocab_size is None:
            raise CharRNNError("--level subword needs --vocab-size (e.g. --vocab-size 4000).")
        lines = [line.lower() if config.lowercase else line for line in sample if line.strip()]
        if not lines:
            raise CharRNNError("The corpus has no non-empty lines to train a subword model on.")
        proto = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines),
                model_writer=proto,
                vocab_size=config.vocab_size,
                model_type=config.subword_model,
                pad_id=PAD_ID,
                unk_id=UNK_ID,
                eos_id=EOS_ID,
                bos_id=-1,
                pad_piece=PAD,
                unk_piece=UNK,
                eos_piece=EOS,
                hard_vocab_limit=False,
                character_coverage=1.0 if len(set("".join(lines[:10000]))) < 1000 else 0.9995,
                input_sentence_size=2_000_000,
                shuffle_input_sentence=True,
                minloglevel=2,
                num_threads=2,
            )
        except RuntimeError as exc:
            raise CharRNNError(f"sentencepiece could not train on this corpus: {exc}") from None
        return cls(proto.getvalue(), config.lowercase)


def build_tokenizer(text: str, config: TokenizerConfig) -> Tokenizer:
    """Build the tokenizer that `config` asks for from the corpus `text`."""
    config.validate()
    if config.level == "char":
        return CharTokenizer.build(text, config)
    if config.level == "word":
        return WordTokenizer.build(text, config)
    return SubwordTokenizer.build(text, config)


def tokenizer_from_files(files: dict[str, bytes]) -> Tokenizer:
    """Rebuild a tokenizer from the files written by `Tokenizer.to_files`."""
    if TOKENIZER_JSON not in files:
        raise CharRNNError(f"{TOKENIZER_JSON} is missing from the run directory.")
    try:
        payload = json.loads(files[TOKENIZER_JSON].decode("utf-8"))
        level = payload["level"]
        lowercase = payload.get("lowercase", False)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise CharRNNError(f"{TOKENIZER_JSON} is damaged; restore it from the run's source.") from None
    if not isinstance(level, str) or not isinstance(lowercase, bool):
        raise CharRNNError(f"{TOKENIZER_JSON} is damaged (level or lowercase of the wrong type); restore it.")
    if level == "subword":
        if SENTENCEPIECE_MODEL not in files:
            raise CharRNNError(f"{SENTENCEPIECE_MODEL} is missing from the run directory.")
        return SubwordTokenizer(files[SENTENCEPIECE_MODEL], lowercase)
    classes = {"char": CharTokenizer, "word": WordTokenizer}
    if level not in classes or not isinstance(payload.get("units"), list):
        raise CharRNNError(f"{TOKENIZER_JSON} is damaged (level {level!r}); restore it.")
    units = payload["units"]
    if len(units) > 10_000_000 or not all(isinstance(u, str) for u in units):
        raise CharRNNError(
            f"{TOKENIZER_JSON} is damaged (its units must be at most 10,000,000 strings); restore it."
        )
    try:
        "".join(units).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate ("\ud800"): no text holds it, no file can store it
        raise CharRNNError(
            f"{TOKENIZER_JSON} is damaged (a unit holds {exc.object[exc.start]!r}, a lone surrogate, not a "
            "character); restore it."
        ) from None
    return classes[level](payload["units"], lowercase)
