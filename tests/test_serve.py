"""`charrnn serve`: the JSON API against a real uvicorn on 127.0.0.1, compared with the library's own answers."""

from __future__ import annotations

import http.client
import json
import math
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed: pip install 'charrnn[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'charrnn[serve]'")

import charrnn  # noqa: E402
from charrnn.lm.activations import collect_activations, find_units  # noqa: E402
from charrnn.serve.app import create_app, run_names  # noqa: E402
from charrnn.serve.params import Limits  # noqa: E402
from tests.serve_support import call, events, serving, train_tiny_runs  # noqa: E402

TEXT = 'He said "to be (or not)" and left.'


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, shakespeare_head: str) -> dict:
    lm_dir, s2s_dir = train_tiny_runs(tmp_path_factory.mktemp("serve"), shakespeare_head)
    return {"lm": charrnn.load(lm_dir), "s2s": charrnn.load(s2s_dir)}


@pytest.fixture(scope="module")
def url(runs: dict):
    with serving(create_app(runs, Limits(max_length=300, max_text=500))) as base:
        yield base


def test_info_describes_the_served_runs(url: str, runs: dict) -> None:
    status, info = call(url + "/api/info")
    assert status == 200 and info["name"] == "lm" and info["kind"] == "lm"
    assert info["runs"] == [
        {"name": "lm", "kind": "lm", "title": "language model"},
        {"name": "s2s", "kind": "seq2seq", "title": "seq2seq (translation)"},
    ]
    assert (info["layers"], info["hidden"], info["cell"]) == (2, 16, "lstm")
    assert info["parameters"] == runs["lm"].info()["parameters"] and info["limits"]["max_length"] == 300
    assert call(url + "/api/info?run=s2s")[1]["kind"] == "seq2seq"
    with urllib.request.urlopen(url + "/") as page:
        html = page.read().decode()
    assert 'src="/static/app.js"' in html and "http" not in html.replace("http-equiv", "")  # nothing fetched


def test_sample_and_its_stream_equal_the_library_sample(url: str, runs: dict) -> None:
    settings = {"prime": "KING", "length": 60, "temperature": 0.7, "top_p": 0.9, "seed": 4}
    expected = runs["lm"].sample("KING", 60, 0.7, top_p=0.9, seed=4)
    assert call(url + "/api/sample", settings) == (200, {"text": expected})
    streamed = events(url + "/api/sample", {**settings, "stream": True})
    assert streamed[-1] == ("done", {})
    assert streamed[0] == (None, {"text": "KING"}) and len(streamed) > 10  # the text arrives piece by piece
    assert "".join(data["text"] for _, data in streamed[:-1]) == expected


def test_score_returns_the_scorers_values_and_top_alternatives(url: str, runs: dict) -> None:
    sentences = ["To be, or not to be.", "KING HENRY"]
    status, body = call(url + "/api/score", {"text": "\n".join(sentences) + "\n\n", "top_k": 3})
    assert status == 200 and [s["sentence"] for s in body["sentences"]] == sentences
    for got, want in zip(body["sentences"], runs["lm"].score(sentences), strict=True):
        assert got["token_logprobs"] == pytest.approx(want.token_logprobs, abs=1e-6)
        assert got["logprob"] == pytest.approx(want.logprob, abs=1e-5) and got["tokens"] == want.tokens
        assert all(len(row) == 3 for row in got["alternatives"])
        assert all(
            row[0]["logprob"] >= lp - 1e-6
            for row, lp in zip(got["alternatives"], got["token_logprobs"], strict=True)
        )
    pair = ["ein hund 3", "a dog 3"]
    status, body = call(url + "/api/score", {"run": "s2s", "pairs": [pair]})
    assert status == 200 and body["sentences"][0]["logprob"] == pytest.approx(
        runs["s2s"].score([tuple(pair)])[0].logprob, abs=1e-5
    )


def test_activations_are_the_libraries_values(url: str, runs: dict) -> None:
    run = runs["lm"]
    acts = collect_activations(run.model, run.tokenizer, TEXT)
    status, body = call(
        url + "/api/activations", {"text": TEXT, "state": "hidden", "layer": 1, "units": [0, 5, 15]}
    )
    assert status == 200 and body["tokens"] == list(TEXT) and (body["layers"], body["hidden"]) == (2, 16)
    assert [(r["state"], r["layer"], r["unit"]) for r in body["rows"]] == [("hidden", 1, u) for u in (0, 5, 15)]
    for row in body["rows"]:
        assert row["values"] == pytest.approx(acts.hidden[1, :, row["unit"]].tolist(), abs=1e-6)
    default = call(url + "/api/activations", {"text": TEXT})[1]  # an LSTM shows its cell state by default
    assert default["rows"][0]["state"] == "cell" and len(default["rows"]) == 8
    assert default["rows"][2]["values"] == pytest.approx(acts.cell[0, :, 2].tolist(), abs=1e-6)
    status, found = call(url + "/api/activations", {"text": TEXT, "pattern": "brackets", "top": 4})
    want = find_units(acts, "brackets", 4)
    assert status == 200 and found["signal"][TEXT.index("(")] == 1.0 and found["signal"][0] == 0.0
    assert [(r["state"], r["layer"], r["unit"]) for r in found["rows"]] == [
        (m.state, m.layer, m.unit) for m in want
    ]
    assert [r["correlation"] for r in found["rows"]] == pytest.approx([m.correlation for m in want], abs=1e-9)


def test_translate_returns_the_translation_and_attention(url: str, runs: dict) -> None:
    status, body = call(url + "/api/translate", {"run": "s2s", "text": "ein hund 7", "beam": 2})
    [want] = runs["s2s"].translate("ein hund 7", 2, with_attention=True)
    assert status == 200 and body["text"] == want.text and body["source_tokens"] == ["ein", "hund", "7", "<eos>"]
    assert len(body["attention"]) == len(want.tokens)
    assert all(len(row) == 4 and math.isclose(sum(row), 1.0, abs_tol=1e-4) for row in body["attention"])
    flat = [w for row in body["attention"] for w in row]
    assert flat == pytest.approx([w for row in want.attention for w in row], abs=1e-6)


BAD_REQUESTS = [
    ("/api/sample", {"temperature": 0}, 400, "temperature must be greater than 0"),
    ("/api/sample", {"temperature": -1}, 400, "temperature must be between"),
    ("/api/sample", {"temperature": "hot"}, 400, "temperature must be a number"),
    ("/api/sample", {"length": 301}, 400, "length must be between 0 and 300"),
    ("/api/sample", {"length": 2.5}, 400, "length must be an integer"),
    ("/api/sample", {"top_p": 0}, 400, "top_p must be greater than 0"),
    ("/api/sample", {"seed": True}, 400, "seed must be an integer"),
    ("/api/sample", {"prime": "x" * 501}, 413, "the limit is 500"),
    ("/api/sample", {"prime": "€€"}, 400, "never saw"),
    ("/api/sample", {"run": "nope"}, 404, "Unknown run"),
    ("/api/sample", {"run": "s2s"}, 400, "seq2seq run"),
    ("/api/sample", [1, 2], 400, "must be a JSON object"),
    ("/api/score", {}, 400, "text is required"),
    ("/api/score", {"sentences": ["fine", ""]}, 400, "no empty ones"),
    ("/api/score", {"sentences": "To be"}, 400, "list of strings"),
    ("/api/score", {"run": "s2s", "text": "ein hund"}, 400, "give pairs"),
    ("/api/activations", {"text": TEXT, "units": [16]}, 400, "out of range"),
    ("/api/activations", {"text": TEXT, "layer": 2}, 400, "layer must be between 0 and 1"),
    ("/api/activations", {"text": TEXT, "pattern": "vowels"}, 400, "pattern must be one of"),
    ("/api/activations", {"text": "abc", "pattern": "quotes"}, 400, "never changes"),
    ("/api/activations", {"text": ""}, 400, "text is empty"),
    ("/api/translate", {"text": "ein hund"}, 400, "cannot translate"),
    ("/api/translate", {"run": "s2s", "text": "  "}, 400, "text is empty"),
]


@pytest.mark.parametrize(("path", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_json_message(url: str, path: str, body: object, status: int, message: str) -> None:
    got, answer = call(url + path, body)
    assert (got, set(answer)) == (status, {"error"}) and message in answer["error"]
    assert "Traceback" not in answer["error"]


def test_malformed_or_oversized_bodies_and_unknown_routes_get_json_errors(url: str) -> None:
    assert call(url + "/api/score", raw=b"{not json")[0] == 400
    assert call(url + "/api/score", raw=b'{"text": "' + b"a" * 300_000 + b'"}') == (
        413,
        {"error": "The request body is over 262144 bytes."},
    )
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    chunks = [b'{"text": "'] + [b"a" * 65536] * 5 + [b'"}']  # no Content-Length: read only up to the cap
    connection.request(
        "POST", "/api/score", body=iter(chunks), encode_chunked=True, headers={"Content-Type": "application/json"}
    )
    answer = connection.getresponse()
    assert answer.status == 413 and "over 262144 bytes" in json.loads(answer.read())["error"]
    connection.close()
    assert call(url + "/api/nothing")[0] == 404 and call(url + "/api/sample")[0] == 405  # GET on a POST route
    assert call(url + "/api/info?run=missing")[0] == 404


def test_one_generation_at_a_time_per_server_with_a_queue(runs: dict) -> None:
    """One generation runs at a time for the whole server (every tab of every client); `max_waiting` wait
    for it, and one more is refused with 429 (issue 21, item 17)."""
    app = create_app({"lm": runs["lm"]}, Limits(max_length=10**6, max_waiting=1))
    with serving(app) as base:
        request = urllib.request.Request(
            base + "/api/sample",
            data=json.dumps({"length": 10**6, "stream": True, "seed": 1}).encode(),  # minutes of generating
            headers={"Content-Type": "application/json"},
        )
        with ThreadPoolExecutor(1) as pool:
            with urllib.request.urlopen(request, timeout=60) as first:
                assert first.readline().startswith(b"data: ")  # the first generation is under way
                queued = pool.submit(call, base + "/api/sample", {"length": 5, "seed": 1})
                for _ in range(500):  # until the queued request waits for the slot
                    if app.state.server.waiting == 1:
                        break
                    time.sleep(0.02)
                status, body = call(base + "/api/sample", {"length": 5})
                assert status == 429 and "one generation at a time" in body["error"].lower()
                assert not queued.done()
            # the first client hung up: its generation stops and the queued one runs
            assert queued.result(timeout=60)[0] == 200
        assert call(base + "/api/sample", {"length": 5, "seed": 1})[0] == 200


def test_a_client_that_hangs_up_frees_its_generation_slot(runs: dict) -> None:
    with serving(create_app({"lm": runs["lm"]}, Limits(max_length=10**6, max_waiting=0))) as base:
        request = urllib.request.Request(
            base + "/api/sample",
            data=json.dumps({"length": 10**6, "stream": True}).encode(),  # minutes of generating
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as abandoned:
            assert abandoned.readline().startswith(b"data: ")
            assert call(base + "/api/sample", {"length": 5})[0] == 429
        # the client hung up mid-generation: the server stops generating and frees the client's slot
        for _ in range(200):
            status, _ = call(base + "/api/sample", {"length": 5})
            if status == 200:
                break
            time.sleep(0.05)
        assert status == 200


def test_fifty_concurrent_requests_are_all_answered(url: str, runs: dict) -> None:
    reference = runs["lm"].score("To be, or not to be.")[0].logprob
    jobs = []
    for i in range(50):
        kind = ("info", "score", "activations", "sample", "translate")[i % 5]
        jobs.append(kind)

    def one(kind: str) -> tuple[str, int, dict]:
        if kind == "info":
            return (kind, *call(url + "/api/info"))
        if kind == "score":
            return (kind, *call(url + "/api/score", {"text": "To be, or not to be."}))
        if kind == "activations":
            return (kind, *call(url + "/api/activations", {"text": TEXT}))
        if kind == "translate":
            return (kind, *call(url + "/api/translate", {"run": "s2s", "text": "ein hund 2"}))
        return (kind, *call(url + "/api/sample", {"length": 100}))

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, jobs))
    assert len(results) == 50
    for kind, status, body in results:
        if kind == "sample":  # one generation per client (all of these come from 127.0.0.1)
            assert status in (200, 429) and ("text" in body or "one generation" in body["error"].lower())
        else:
            assert status == 200, body
        if kind == "score":
            assert body["sentences"][0]["logprob"] == pytest.approx(reference, abs=1e-5)
    assert any(kind == "sample" and status == 200 for kind, status, _ in results)
    assert call(url + "/api/info")[0] == 200  # and it still answers afterwards


def test_a_full_queue_is_refused_with_429(runs: dict) -> None:
    long_text = ("To be, or not to be: that is the question. " * 12)[:500]
    with serving(create_app({"lm": runs["lm"]}, Limits(max_text=500, max_pending=2, workers=1))) as base:
        with ThreadPoolExecutor(max_workers=12) as pool:
            results = list(pool.map(lambda _: call(base + "/api/activations", {"text": long_text}), range(12)))
        assert call(base + "/api/info")[0] == 200
    statuses = sorted(status for status, _ in results)
    assert set(statuses) == {200, 429} and statuses.count(200) >= 2
    assert all("busy" in body["error"] for status, body in results if status == 429)


def test_run_names_are_unique(tmp_path: Path) -> None:
    assert run_names([tmp_path / "a", tmp_path / "x" / "a", tmp_path / "b"]) == ["a", "a-2", "b"]


def test_cli_serve_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from charrnn.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert exit_info.value.code != 0 and err.startswith("charrnn: error:") and "missing" in err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the serve extra were not installed
    with pytest.raises(SystemExit):
        main(["serve", str(tmp_path)])
    assert "pip install 'charrnn[serve]'" in capsys.readouterr().err


@pytest.mark.parametrize(("stop", "codes"), [(signal.SIGTERM, (143, -signal.SIGTERM)), (signal.SIGINT, (130,))])
def test_charrnn_serve_listens_on_localhost_and_stops_on_a_signal(
    runs: dict, tmp_path: Path, stop: signal.Signals, codes: tuple[int, ...]
) -> None:
    from tests.support import start_cli

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = start_cli(["serve", str(runs["lm"].run_dir), "--port", str(port)], cwd=tmp_path)
    try:
        for _ in range(600):
            try:
                status, info = call(f"http://127.0.0.1:{port}/api/info")
                break
            except urllib.error.URLError:
                assert process.poll() is None, process.communicate()
                time.sleep(0.05)
        assert status == 200 and info["name"] == runs["lm"].run_dir.name
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/style.css") as css:
            assert b"#tooltip" in css.read()  # the page's files ship with the package
    finally:
        process.send_signal(stop)
        _, err = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in err and "Traceback" not in err
    assert process.returncode in codes  # as any interrupted command: 130 for Ctrl-C, 143 for SIGTERM


def test_score_follows_the_oov_policy(url: str, runs: dict) -> None:
    sentences = ["To be, ж or 漢 not."]  # characters the tiny model never saw become <unk>
    assert runs["lm"].score(sentences, oov="include")[0].n_unk == 2
    assert (
        runs["lm"].score(sentences, oov="penalty")[0].logprob
        < runs["lm"].score(sentences, oov="include")[0].logprob
    )
    for oov in ("penalty", "skip", "include"):
        status, body = call(url + "/api/score", {"sentences": sentences, "oov": oov})
        want = runs["lm"].score(sentences, oov=oov)[0]
        assert status == 200 and body["sentences"][0]["logprob"] == pytest.approx(want.logprob, abs=1e-5)
    status, body = call(url + "/api/score", {"sentences": sentences, "oov": "drop"})
    assert status == 400 and "oov" in body["error"]
