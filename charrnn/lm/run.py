"""A trained language model, loaded from its run directory: sample, stream, score, describe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from charrnn.core import rundir
from charrnn.core.errors import api_errors
from charrnn.core.loaded_run import LoadedRun, read_one_tokenizer
from charrnn.core.runtime import scoring_autocast
from charrnn.core.sampling import SampleSettings
from charrnn.core.scoring import SentenceScore
from charrnn.core.special_tokens import EOS_ID
from charrnn.core.text import read_text
from charrnn.core.tokenizers import Tokenizer
from charrnn.lm.config import RunConfig
from charrnn.lm.evaluation import FileEvaluation, evaluate_text
from charrnn.lm.model import LanguageModel
from charrnn.lm.sampling import encode_prime, generate, generate_steps
from charrnn.lm.scoring import score_sentences


def read_config(run_dir: str | Path) -> RunConfig:
    """Read, migrate and check a language-model run's config.json."""
    return rundir.read_run_config(Path(run_dir), RunConfig, "train")


class LanguageModelRun(LoadedRun):
    """A language model loaded from a run directory (`charrnn.load`)."""

    kind = "lm"
    config_class = RunConfig

    def __init__(
        self, run_dir: Path, config: RunConfig, tokenizer: Tokenizer, model: LanguageModel, note: str | None
    ) -> None:
        self.run_dir, self.config, self.tokenizer, self.model = run_dir, config, tokenizer, model
        self.note = note  # set when the weights are not the best checkpoint (see `LoadedRun.load`)

    @classmethod
    def read_tokenizers(cls, run_dir: Path, config: RunConfig) -> tuple[Tokenizer]:
        return (read_one_tokenizer(run_dir, config),)

    @classmethod
    def build_model(cls, config: RunConfig) -> LanguageModel:
        return LanguageModel(config.model)

    @api_errors
    def sample(
        self,
        prime: str = "",
        length: int = 500,
        temperature: float = 1.0,
        *,
        greedy: bool = False,
        top_k: int | None = None,
        top_p: float | None = None,
        until_eos: bool = False,
        num: int = 1,
        seed: int | None = None,
    ) -> str | list[str]:
        """Text that continues `prime` (the prime included); a list of `num` texts when num > 1.

        With `until_eos` each text ends at its first end of line (the line break is not included).
        """
        settings = SampleSettings(
            length=length, temperature=temperature, greedy=greedy, top_k=top_k, top_p=top_p, until_eos=until_eos,
            num=num, seed=seed,
        )  # fmt: skip
        encode_prime(self.tokenizer, prime)  # refuse a bad prime before generating
        texts = []
        for ids in generate(self.model, self.tokenizer, prime, settings):
            if until_eos and ids and ids[-1] == EOS_ID:
                ids = ids[:-1]
            texts.append(prime + self._continuation(prime, ids))
        return texts[0] if num == 1 else texts

    @api_errors
    def stream(
        self, prime: str = "", length: int = 500, temperature: float = 1.0, **options: Any
    ) -> Iterator[str]:
        """The prime, then each piece of text as soon as it is drawn (one sample).

        `options`: greedy, top_k, top_p, until_eos, seed, as for `sample`.
        """
        settings = SampleSettings(length=length, temperature=temperature, num=1, **options)
        settings.validate()
        encode_prime(self.tokenizer, prime)
        until_eos = settings.until_eos
        decode = self._decoder(prime)
        yield prime
        for tokens, active in generate_steps(self.model, self.tokenizer, prime, settings):
            if active[0] and not (until_eos and tokens[0] == EOS_ID):
                yield decode(tokens[0])

    @api_errors
    def score(
        self,
        sentences: str | list[str],
        *,
        oov: str = "penalty",
        oov_logprob: float | None = None,
        precision: str = "fp32",
    ) -> list[SentenceScore]:
        """log P, perplexity and per-token detail of each sentence (a closing `<eos>` included).

        `oov`: how `<unk>` targets count, "penalty" (default: log P(<unk>) + `oov_logprob`, which
        defaults to log(1/vocabulary)), "skip" or "include"; see `charrnn.core.scoring`. `precision`:
        fp32 (exact, the default) or bf16 (faster on bf16 hardware, at a small error).
        """
        texts = [sentences] if isinstance(sentences, str) else sentences
        device = next(self.model.parameters()).device
        with scoring_autocast(device, precision, self.config.model.cell):
            return score_sentences(self.model, self.tokenizer, texts, oov, oov_logprob)

    @api_errors
    def evaluate_file(
        self,
        path: str | Path,
        *,
        batch_size: int | None = None,
        bptt: int | None = None,
        oov: str = "include",
        oov_logprob: float | None = None,
    ) -> FileEvaluation:
        """Cross-entropy, perplexity (and bits/char) of a whole file read as one stream, as validation reads it.

        `batch_size` and `bptt` default to the run's training settings; `oov` as for `score`, but
        "include" by default, so the result equals the validation loss on the same text.
        """
        text = read_text(path, self.config.encoding, self.config.errors)
        training = self.config.training
        return evaluate_text(
            self.model, self.tokenizer, text, level=self.config.tokenizer.level,
            batch_size=training.batch_size if batch_size is None else batch_size,
            bptt=training.bptt if bptt is None else bptt, oov=oov, oov_logprob=oov_logprob, name=str(path),
        )  # fmt: skip

    def _decoder(self, prime: str):
        decode = self.tokenizer.stream_decoder()
        for token in self.tokenizer.encode(prime):  # so that spacing continues the prime correctly
            decode(token)
        return decode

    def _continuation(self, prime: str, ids: list[int]) -> str:
        decode = self._decoder(prime)
        return "".join(decode(t) for t in ids)
