"""Reading parallel text (TSV and parallel files), batching pairs, and the shared scorer path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from charrnn.core.errors import CharRNNError
from charrnn.core.special_tokens import EOS_ID, PAD_ID
from charrnn.lm.config import ModelConfig
from charrnn.lm.model import LanguageModel
from charrnn.lm.scoring import score_token_ids
from charrnn.seq2seq.pairs import EncodedPairs, PairBatches, make_batch, read_pairs, read_pairs_tsv

torch.set_num_threads(1)

BUNDLED = Path(__file__).resolve().parent.parent / "corpora" / "multi30k-de-en-small.tsv"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv_pairs_are_read_and_stripped(tmp_path: Path) -> None:
    path = write(tmp_path, "p.tsv", "Ein Hund.\tA dog.\n  Zwei Katzen \t Two cats \n")
    corpus = read_pairs_tsv(path)
    assert corpus.sources == ["Ein Hund.", "Zwei Katzen"]
    assert corpus.targets == ["A dog.", "Two cats"]
    assert corpus.skipped_empty == 0


def test_malformed_tsv_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    text = "a\tb\nno tab here\nc\td\ne\tf\tg\nh\ti\n"
    path = write(tmp_path, "bad.tsv", text)
    with pytest.raises(CharRNNError) as info:
        read_pairs_tsv(path)
    message = str(info.value)
    assert "line 2, 4" in message and "2 malformed" in message
    assert "1 field (e.g. line 2)" in message and "3 fields (e.g. line 4)" in message
    assert "\n" not in message
    corpus = read_pairs_tsv(path, skip_malformed=True)
    assert corpus.sources == ["a", "c", "h"] and corpus.malformed_lines == [2, 4]


def test_many_malformed_lines_are_summarised(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.tsv", "ok\tfine\n" + "".join(f"bad{i}\n" for i in range(9)))
    with pytest.raises(CharRNNError, match=r"line 2, 3, 4, 5, 6 and 4 more"):
        read_pairs_tsv(path)


def test_a_file_without_tabs_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "plain.txt", "just text\nmore text\n")
    with pytest.raises(CharRNNError, match="no tab characters.*--src FILE --tgt FILE"):
        read_pairs_tsv(path)


def test_empty_sides_are_skipped_with_a_count(tmp_path: Path) -> None:
    path = write(tmp_path, "p.tsv", "a\tb\n\t\n\tonly target\nonly source\t\n   \t  \n\nc\td\n")
    corpus = read_pairs_tsv(path)
    assert corpus.sources == ["a", "c"] and corpus.targets == ["b", "d"]
    assert corpus.skipped_empty == 5


def test_only_empty_pairs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CharRNNError, match="no pair"):
        read_pairs_tsv(write(tmp_path, "p.tsv", "\t\n \tx\n"))


def test_parallel_files(tmp_path: Path) -> None:
    src = write(tmp_path, "s.de", "Hund\n\nKatze\tmit Tab\n")
    tgt = write(tmp_path, "t.en", "dog\ncat\ncat\n")
    corpus = read_pairs(source=src, target=tgt)
    assert corpus.sources == ["Hund", "Katze\tmit Tab"] and corpus.skipped_empty == 1
    with pytest.raises(CharRNNError, match="has 3 lines but.*has 2"):
        read_pairs(source=src, target=write(tmp_path, "short.en", "a\nb\n"))


def test_read_pairs_wants_exactly_one_format(tmp_path: Path) -> None:
    path = write(tmp_path, "p.tsv", "a\tb\n")
    with pytest.raises(CharRNNError, match="not both"):
        read_pairs(path, source=path, target=path)
    with pytest.raises(CharRNNError, match="--src FILE and --tgt FILE"):
        read_pairs(source=path)
    with pytest.raises(CharRNNError, match="no such file"):
        read_pairs(tmp_path / "missing.tsv")


def test_bundled_slice_is_well_formed() -> None:
    corpus = read_pairs_tsv(BUNDLED)
    assert len(corpus) == 3000 and corpus.skipped_empty == 0
    assert BUNDLED.stat().st_size < 1_000_000


def test_make_batch_pads_and_shifts() -> None:
    batch = make_batch([[5, 6, EOS_ID], [7, EOS_ID]], [[8, 9], [10, 11, 12]])
    assert batch.src.tolist() == [[5, 6, EOS_ID], [7, EOS_ID, PAD_ID]]
    assert batch.src_lengths.tolist() == [3, 2]
    assert batch.tgt_out.tolist() == [[8, 9, EOS_ID, PAD_ID], [10, 11, 12, EOS_ID]]
    assert batch.tgt_in.tolist() == [[EOS_ID, 8, 9, EOS_ID], [EOS_ID, 10, 11, 12]]
    assert batch.n_target_tokens == 7


def test_pair_batches_cover_every_pair_once_in_a_repeatable_order() -> None:
    pairs = EncodedPairs(
        [[3] * (i % 7 + 1) + [EOS_ID] for i in range(103)], [[4] * (i % 5 + 1) for i in range(103)]
    )
    batches = PairBatches(pairs, 10, seed=1)
    assert len(batches) == 11
    for epoch in (0, 1):
        order = batches.order(epoch)
        assert sorted(i for b in order for i in b) == list(range(103))
    again = PairBatches(pairs, 10, seed=1)
    assert again.order(1) == batches.order(1) and again.order(0) != again.order(1)


def test_language_model_scoring_is_unchanged_by_the_shared_path() -> None:
    torch.manual_seed(0)
    model = LanguageModel(ModelConfig(vocab_size=9, embed=8, hidden=12, layers=1, dropout=0.0)).eval()
    sequences = [[3, 4, 5, EOS_ID], [6, EOS_ID], [7, 8, 3, 4, 5, 6, EOS_ID]]
    batched = score_token_ids(model, sequences, max_batch_tokens=8)  # forces several batches
    for seq, logps in zip(sequences, batched, strict=True):
        inputs = torch.tensor([[EOS_ID] + seq[:-1]])
        hidden, _ = model(inputs)
        direct = model.target_log_probs(hidden, torch.tensor([seq]))[0].tolist()
        assert logps == pytest.approx(direct, abs=1e-5)
