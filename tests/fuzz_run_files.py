"""Hypothesis fuzzing of a run's config.json, tokenizer.json and safetensors header, run in a subprocess
under an address-space limit (see tests/test_fuzz_run_files.py).

Usage: python -m tests.fuzz_run_files RUN_DIR WORK_DIR EXAMPLES LIMIT_BYTES
Every example copies RUN_DIR, damages one file and loads the run with `charrnn.load`. The load must
succeed or raise `CharRNNError` with a one-line message; anything else (MemoryError included) is a
failure, reported by hypothesis with the smallest input it finds, and a non-zero exit.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
from pathlib import Path


def main(run_dir: Path, work: Path, examples: int, limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # bounded memory: a huge allocation fails here
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from charrnn.api import load
    from charrnn.core import rundir
    from tests.fuzz_support import Copies, check_damaged, json_values

    values = json_values(4)
    config = json.loads((run_dir / rundir.CONFIG_FILE).read_text())
    paths = [(None, k) for k in config] + [
        (part, k) for part in config if isinstance(config[part], dict) for k in config[part]
    ]
    tokenizer = json.loads((run_dir / "tokenizer.json").read_text())
    weights = (run_dir / rundir.WEIGHTS_FILE).read_bytes()
    header_len = int.from_bytes(weights[:8], "little")
    header = json.loads(weights[8 : 8 + header_len])
    names = sorted(k for k in header if k != "__metadata__")
    fresh = Copies(run_dir, work, "r").fresh

    def check(target: Path) -> None:
        check_damaged(target, load)

    few = settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))

    @few
    @given(st.sampled_from(paths), values, st.booleans())
    def fuzz_config(path, value, delete) -> None:
        target = fresh()
        data = json.loads(json.dumps(config))
        holder = data[path[0]] if path[0] else data
        if delete:
            del holder[path[1]]
        else:
            holder[path[1]] = value
        (target / rundir.CONFIG_FILE).write_text(json.dumps(data))
        check(target)

    @few
    @given(st.sampled_from(["level", "lowercase", "units", "unit"]), values, st.integers(0, 60))
    def fuzz_tokenizer(key, value, index) -> None:
        target = fresh()
        data = json.loads(json.dumps(tokenizer))
        if key == "unit":
            data["units"][index % len(data["units"])] = value
        else:
            data[key] = value
        (target / "tokenizer.json").write_text(json.dumps(data))
        check(target)

    shapes = st.lists(st.integers(0, 2**62), max_size=3) | values
    dtypes = st.sampled_from(["F32", "F64", "BF16", "I64", "U8", "BOOL", "Q4", ""]) | values

    @few
    @given(
        st.sampled_from(names),
        shapes,
        dtypes,
        st.lists(st.integers(-1, 2**62), max_size=3) | values,
        st.none() | st.integers(0, 2**64 - 1),
        st.integers(0, 4096),
    )
    def fuzz_header(name, shape, dtype, offsets, length, extra) -> None:
        target = fresh()
        data = json.loads(json.dumps(header))
        data[name] = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
        raw = json.dumps(data).encode()
        body = weights[8 + header_len :]
        blob = struct.pack("<Q", len(raw) if length is None else length) + raw + body + b"\0" * extra
        (target / rundir.WEIGHTS_FILE).write_bytes(blob)
        check(target)

    fuzz_config()
    fuzz_tokenizer()
    fuzz_header()
    print("fuzzed", 3 * examples, "run files")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
