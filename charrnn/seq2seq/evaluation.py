"""Evaluating a seq2seq model on reference translations: corpus BLEU (sacrebleu), exact match, log P(reference | source)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from charrnn.core.errors import CharRNNError
from charrnn.core.tokenizers import Tokenizer
from charrnn.seq2seq.decoding import TranslateSettings, translate
from charrnn.seq2seq.model import Seq2Seq
from charrnn.seq2seq.scoring import score_pairs


@dataclass
class EvalResult:
    """Corpus-level translation quality on a set of pairs."""

    pairs: int
    bleu: float
    bleu_signature: str
    exact_match: float  # fraction of hypotheses equal to their reference (after trimming spaces)
    mean_logprob: float  # mean per sentence of log P(reference | source)
    logprob_per_token: float  # total log P over total reference tokens (<eos> included)
    translations: list[str]
    reference_logprobs: list[float]

    def summary(self) -> dict:
        """The figures without the per-sentence lists."""
        return {k: v for k, v in asdict(self).items() if k not in ("translations", "reference_logprobs")}


def corpus_bleu(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """sacrebleu's corpus BLEU on detokenised text (its default 13a tokenisation, cased), and its signature."""
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    result = metric.corpus_score(hypotheses, [references])
    return float(result.score), str(metric.get_signature())


def evaluate_pairs(
    model: Seq2Seq,
    source_tokenizer: Tokenizer,
    target_tokenizer: Tokenizer,
    sources: list[str],
    references: list[str],
    settings: TranslateSettings | None = None,
) -> EvalResult:
    """BLEU and exact match of the model's translations, and log P(reference | source) per sentence."""
    if not sources:
        raise CharRNNError("No pairs to evaluate.")
    translations = [t.text for t in translate(model, source_tokenizer, target_tokenizer, sources, settings)]
    bleu, signature = corpus_bleu(translations, references)
    exact = sum(h.strip() == r.strip() for h, r in zip(translations, references, strict=True)) / len(sources)
    scores = score_pairs(model, source_tokenizer, target_tokenizer, sources, references)
    total_tokens = sum(s.n_tokens for s in scores)
    return EvalResult(
        pairs=len(sources),
        bleu=bleu,
        bleu_signature=signature,
        exact_match=exact,
        mean_logprob=sum(s.logprob for s in scores) / len(scores),
        logprob_per_token=sum(s.logprob for s in scores) / max(total_tokens, 1),
        translations=translations,
        reference_logprobs=[s.logprob for s in scores],
    )
