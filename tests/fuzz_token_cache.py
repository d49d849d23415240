"""Hypothesis fuzzing of a token cache's files (header.json, tokens.bin, the vocabulary's tokenizer.json and
header.json, and what kind of file each is), run in a subprocess under an address-space limit (see
tests/test_fuzz_token_cache.py).

Usage: python -m tests.fuzz_token_cache WORK_DIR EXAMPLES LIMIT_BYTES
A tiny corpus is prepared once; every example copies its cache, damages one file and prepares again.
The cache must be reused or rebuilt, and either way give exactly the tokenizer and ids of the undamaged
cache; a `CharRNNError` (one line) is tolerated, anything else (MemoryError, a hang on a FIFO, wrong
ids) is a failure, reported by hypothesis with the smallest input it finds, and a non-zero exit.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path


def main(work: Path, examples: int, limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # bounded memory: a huge allocation fails here
    import numpy as np
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from charrnn.core import rundir, token_cache
    from charrnn.core.config import TokenizerConfig
    from tests.fuzz_support import Copies, check_damaged, json_values
    from tests.support import write_corpus

    corpus = write_corpus(work, chars=2000)
    reference_root = work / "reference"

    def prepare(root: Path) -> tuple[list[str], list[int]]:
        notes: list[str] = []
        tokenizer = token_cache.cached_tokenizer(
            [corpus], TokenizerConfig(), "utf-8", "strict", root, None, notes.append
        )
        fingerprint = rundir.tokenizer_fingerprint(tokenizer)
        tokens = token_cache.cached_tokens(
            [corpus], tokenizer, fingerprint, "utf-8", "strict", root, None, notes.append
        )
        assert all("\n" not in note for note in notes), notes
        return tokenizer.tokens(range(tokenizer.vocab_size)), np.asarray(tokens.ids()).tolist()

    expected = prepare(reference_root)
    [tokens_dir] = reference_root.glob("tokens-*")
    [vocab_dir] = reference_root.glob("vocab-*")
    files = {
        "tokens header": tokens_dir.relative_to(reference_root) / "header.json",
        "vocab header": vocab_dir.relative_to(reference_root) / "header.json",
        "tokenizer": vocab_dir.relative_to(reference_root) / "tokenizer.json",
    }
    tokens_bin = tokens_dir.relative_to(reference_root) / "tokens.bin"
    fresh = Copies(reference_root, work, "c").fresh

    def check(target: Path) -> None:
        check_damaged(target, prepare, expected)

    values = json_values(5, st.sampled_from(["|u1", "<u2", "<u4", "|O", "<f8", ">u2"]))
    few = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )

    @few
    @given(st.sampled_from(sorted(files)), st.data(), values, st.booleans())
    def fuzz_json(which, data, value, delete) -> None:
        target = fresh()
        path = target / files[which]
        payload = json.loads(path.read_text())
        holder = payload
        if isinstance(payload.get("files"), list) and payload["files"] and data.draw(st.booleans()):
            holder = payload["files"][0]  # a field of a corpus file's entry
        if which == "tokenizer" and data.draw(st.booleans()):
            holder = {"units": payload["units"]}
            index = data.draw(st.integers(0, len(payload["units"]) - 1))
            payload["units"][index] = value  # a unit of another type, or another string
        else:
            key = data.draw(st.sampled_from(sorted(holder)))
            if delete:
                del holder[key]
            else:
                holder[key] = value
        path.write_text(json.dumps(payload))
        check(target)

    @few
    @given(
        st.sampled_from([*files.values(), tokens_bin]), st.integers(0, 3000), st.binary(max_size=16), st.booleans()
    )
    def fuzz_bytes(relative, cut, junk, truncate) -> None:
        target = fresh()
        path = target / relative
        raw = path.read_bytes()
        if truncate:
            path.write_bytes(raw[: cut % (len(raw) + 1)])
        else:
            at = cut % (len(raw) + 1)
            path.write_bytes(raw[:at] + junk + raw[at + len(junk) :])  # ids out of range, broken JSON
        check(target)

    @few
    @given(
        st.sampled_from([*files.values(), tokens_bin]), st.sampled_from(["fifo", "dir", "zero", "link", "gone"])
    )
    def fuzz_kinds(relative, kind) -> None:
        target = fresh()
        path = target / relative
        copy = path.read_bytes()
        path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "dir":
            path.mkdir()
        elif kind == "zero":
            path.symlink_to("/dev/zero")
        elif kind == "link":  # a link to a copy of the right file: still not a plain cache file
            (target / "elsewhere").write_bytes(copy)
            path.symlink_to(target / "elsewhere")
        check(target)

    fuzz_json()
    fuzz_bytes()
    fuzz_kinds()
    print(f"fuzzed {3 * examples} token caches")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
