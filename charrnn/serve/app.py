"""The ASGI app behind `charrnn serve`: the static page and a JSON API over loaded runs.

Routes (all JSON; POST bodies are JSON objects; every route takes an optional "run" naming one of
the served runs, the first by default):
    GET  /api/info          the run: kind, level, size, training progress, config, labels; the served runs
    POST /api/sample        generated text; with "stream": true, server-sent events as it is drawn;
                            a conditional run's texts of a chosen label (or of labels drawn from the prior)
    POST /api/score         per-token log P(token | before) with the model's top-k alternatives
                            (a conditional run: log P(text | label), without alternatives)
    POST /api/classify      P(label | text) of a classifier or conditional run, and P(label | the text so far)
                            after every token
    POST /api/activations   hidden/cell values of chosen units (or of units found by a pattern)
    POST /api/translate     a seq2seq translation and its attention matrix
    POST /api/memory        ‖∂ log P(x_t)/∂ e(x_j)‖ for the tokens before t, and the run's gradient curve

Model computations run in worker threads (at most `Limits.workers` at once, at most
`Limits.max_pending` waiting) so the event loop keeps answering; the server runs one
generation at a time, with at most `Limits.max_waiting` queued behind it. Refusals are 4xx JSON
{"error": message}. Which Host, Origin and content type are answered: `charrnn.serve.guard`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from charrnn.core.errors import CharRNNError
from charrnn.kinds import KINDS
from charrnn.labelled.run import ClassifierRun, ConditionalRun, LabelledRun
from charrnn.lm.activations import PATTERNS, collect_activations, find_units, pattern_signal
from charrnn.lm.alternatives import score_with_alternatives
from charrnn.lm.run import LanguageModelRun
from charrnn.seq2seq.run import TranslationRun
from charrnn.serve import guard, params
from charrnn.serve.memory import memory_route
from charrnn.serve.params import BadRequest, Limits

STATIC = Path(__file__).parent / "static"
# The keys each POST route reads (besides "run"); any other key is refused with a 400 naming it.
SAMPLE_KEYS = ("prime", "length", "temperature", "top_p", "top_k", "greedy", "seed", "stream", "label", "num")
SCORE_KEYS = ("sentences", "text", "pairs", "top_k", "oov", "oov_logprob", "label")
CLASSIFY_KEYS = ("text", "top_k")
ACTIVATIONS_KEYS = ("text", "state", "layer", "units", "pattern", "top")
TRANSLATE_KEYS = ("text", "beam", "max_length")
LABELLED_ONLY = ("label", "num")  # sample keys for a conditional run only
MAX_SAMPLES = 20  # texts one conditional sample request may ask for ("num")
MAX_TOP_LABELS = 100  # the most labels a classification lists ("top_k")
HIGHLIGHTED = 3  # tokens a classification marks as those that moved the decision most
_END = object()  # what `next` returns when a stream is exhausted

Run = LanguageModelRun | TranslationRun | ClassifierRun | ConditionalRun


def finite(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (JSON has no inf or NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def to_json(data: Any) -> str:
    """`data` as JSON text that UTF-8 can always encode (a lone surrogate, "\\ud800", is written escaped)."""
    text = json.dumps(finite(data), ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # from a request's own text, or a unit of the tokenizer
        text = json.dumps(finite(data), ensure_ascii=True, default=str)
    return text


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON response that never fails on inf/NaN, on a lone surrogate or on a value json cannot encode."""
    return Response(to_json(data), status, media_type="application/json")


def event(data: dict[str, Any], name: str | None = None) -> str:
    """One server-sent event carrying `data` as JSON."""
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {to_json(data)}\n\n"


class EventStream(StreamingResponse):
    """A server-sent-event response that calls `release` however it ends (done, error or client gone)."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None]) -> None:
        super().__init__(content, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


class Server:
    """The served runs, the request limits and the work queue's state (one per app)."""

    def __init__(self, runs: dict[str, Run], limits: Limits) -> None:
        if not runs:
            raise CharRNNError("Give at least one run directory to serve.")
        self.runs, self.limits = runs, limits
        self.pending = 0
        self._limiter: anyio.CapacityLimiter | None = None
        self._generation: anyio.Semaphore | None = None  # the server's one generation slot
        self.waiting = 0  # generations queued for it

    async def compute(self, fn: Callable[..., Any], *args: Any, queue_check: bool = True, **kwargs: Any) -> Any:
        """Run `fn` in a worker thread; 429 when too many computations are already waiting."""
        if queue_check and self.pending >= self.limits.max_pending:
            raise BadRequest("The server is busy; try again in a moment.", 429)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.limits.workers)
        self.pending += 1
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter)
        finally:
            self.pending -= 1

    # --- one generation at a time, per server (issue 21) ---------------------------------------------

    async def take_generation_slot(self) -> None:
        """Wait for the server's generation slot; 429 when `Limits.max_waiting` generations already wait."""
        if self._generation is None:
            self._generation = anyio.Semaphore(1)
        if self._generation.value == 0 and self.waiting >= self.limits.max_waiting:
            raise BadRequest(
                f"One generation at a time: one is under way and {self.waiting} more are waiting; "
                "try again in a moment.",
                429,
            )
        self.waiting += 1
        try:
            await self._generation.acquire()
        finally:
            self.waiting -= 1

    def release_generation_slot(self) -> None:
        assert self._generation is not None
        self._generation.release()

    # -------------------------------------------------------------------------------------------------

    async def body(self, request: Request) -> dict[str, Any]:
        """The request's JSON object, read no further than `Limits.max_body` bytes."""
        declared = request.headers.get("content-length", "")
        too_big = BadRequest(f"The request body is over {self.limits.max_body} bytes.", 413)
        if declared.isdigit() and int(declared) > self.limits.max_body:
            raise too_big
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > self.limits.max_body:
                raise too_big
        return params.parse_body(bytes(raw), self.limits)

    def run(self, name: Any) -> tuple[str, Run]:
        """The served run called `name` (the first when None); 404 for an unknown name."""
        if name is None:
            name = next(iter(self.runs))
        if not isinstance(name, str) or name not in self.runs:
            raise BadRequest(f"Unknown run {json.dumps(name)[:60]}; this server has: {', '.join(self.runs)}.", 404)
        return name, self.runs[name]

    def lm(self, body: dict[str, Any]) -> LanguageModelRun:
        name, run = self.run(body.get("run"))
        if isinstance(run, TranslationRun):
            raise BadRequest(f"{name} is a seq2seq run; use /api/translate (or /api/score with pairs).")
        if not isinstance(run, LanguageModelRun):
            raise BadRequest(f"{name} is a {KINDS[run.kind].run_title} run; this route is for language models.")
        return run

    # --- routes -------------------------------------------------------------------------------------

    async def info(self, request: Request) -> Response:
        name, run = self.run(request.query_params.get("run"))
        info = await self.compute(run.info)
        model = run.config.model
        labelled: dict[str, Any] = {}
        if isinstance(run, LabelledRun):  # in the model's order (a JSON object's keys may be reordered)
            labelled["label_counts"] = [{"label": x, "count": n} for x, n in run.label_counts().items()]
        return json_response(
            {
                **info,
                "name": name,
                "runs": [{"name": n, "kind": r.kind, "title": KINDS[r.kind].title} for n, r in self.runs.items()],
                "layers": model.layers,
                "hidden": model.hidden,
                "cell": model.cell,
                "limits": asdict(self.limits),
                **labelled,
            }
        )

    def sample_settings(self, body: dict[str, Any], run: Any) -> tuple[str, int, float, dict[str, Any]]:
        """(prime, length, temperature, the other sampling options) of a sample request."""
        limits = self.limits
        prime = params.text(body, "prime", limits, "")
        length = params.integer(body, "length", 200, 0, limits.max_length)
        temperature = params.number(body, "temperature", 1.0, 0.0, 100.0)
        if temperature <= 0:
            raise BadRequest("temperature must be greater than 0 (use greedy: true for the most probable token).")
        top_p = params.number(body, "top_p", None, 0.0, 1.0)
        if top_p is not None and top_p <= 0:
            raise BadRequest("top_p must be greater than 0 and at most 1.")
        options = {
            "greedy": params.flag(body, "greedy"),
            "top_k": params.integer(body, "top_k", None, 1, run.tokenizer.vocab_size),
            "top_p": top_p,
            "seed": params.integer(body, "seed", None, 0, 2**63 - 1),
        }
        return prime, length, temperature, options

    async def sample(self, request: Request) -> Response:
        body = await self.body(request)
        params.known_keys(body, SAMPLE_KEYS, "/api/sample")
        name, run = self.run(body.get("run"))
        if isinstance(run, ConditionalRun):
            return await self.sample_labelled(run, body)
        run = self.lm(body)
        given = [key for key in LABELLED_ONLY if body.get(key) is not None]
        if given:
            raise BadRequest(f"{given[0]} is for conditional language models; {name} is a language model.")
        prime, length, temperature, options = self.sample_settings(body, run)
        stream = params.flag(body, "stream")
        await self.take_generation_slot()
        if not stream:
            try:
                text = await self.compute(run.sample, prime, length, temperature, **options)
            finally:
                self.release_generation_slot()
            return json_response({"text": text})
        try:
            pieces = run.stream(prime, length, temperature, **options)
            first = await self.compute(next, pieces)  # checks the settings and the prime before streaming
        except BaseException:
            self.release_generation_slot()
            raise
        return EventStream(self._events(first, pieces), release=self.release_generation_slot)

    async def sample_labelled(self, run: ConditionalRun, body: dict[str, Any]) -> Response:
        """Texts of the chosen label (each of a label drawn from the prior when none is given), with their labels.

        The texts end at the model's `<eos>`; with "stream": true each arrives as one event once all are drawn.
        """
        label = params.label(body, run.labels)
        num = params.integer(body, "num", 1, 1, MAX_SAMPLES)
        prime, length, temperature, options = self.sample_settings(body, run)
        stream = params.flag(body, "stream")
        await self.take_generation_slot()
        try:
            pairs = await self.compute(
                run.sample_with_labels,
                label,
                num=num,
                prime=prime,
                length=length,
                temperature=temperature,
                **options,
            )
        finally:
            self.release_generation_slot()
        samples = [{"label": drawn, "text": text} for drawn, text in pairs]
        if stream:
            return EventStream(self._labelled_events(samples), release=lambda: None)
        return json_response({**samples[0], "samples": samples})

    async def _labelled_events(self, samples: list[dict[str, str]]) -> AsyncIterator[str]:
        for sample in samples:
            yield event(sample)
        yield event({}, "done")

    async def _events(self, first: str, pieces: Any) -> AsyncIterator[str]:
        yield event({"text": first})
        try:
            while True:
                piece = await self.compute(next, pieces, _END, queue_check=False)
                if piece is _END:
                    break
                yield event({"text": piece})
        except CharRNNError as exc:
            yield event({"error": str(exc.in_words_of(params.json_key))}, "error")
            return
        yield event({}, "done")

    async def score(self, request: Request) -> Response:
        body = await self.body(request)
        params.known_keys(body, SCORE_KEYS, "/api/score")
        name, run = self.run(body.get("run"))
        if isinstance(run, TranslationRun):
            pairs = body.get("pairs")
            if not (
                isinstance(pairs, list)
                and pairs
                and all(isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs)
            ):
                raise BadRequest(f"{name} is a seq2seq run: give pairs, a list of [source, target] strings.")
            if (
                len(pairs) > self.limits.max_sentences
                or sum(len(s) + len(t) for s, t in pairs) > self.limits.max_text
            ):
                raise BadRequest("Too many pairs or too much text for one request.", 413)
            scores = await self.compute(run.score, [(s, t) for s, t in pairs])
            return json_response({"sentences": [s.to_dict() for s in scores]})
        if isinstance(run, ClassifierRun):
            raise BadRequest(
                f"{name} is a classifier run: it gives P(label | text), not P(text); use /api/classify."
            )
        sentences = params.sentences(body, self.limits)
        top_k = params.integer(body, "top_k", 5, 1, 20)
        oov = params.choice(body, "oov", ("penalty", "skip", "include"), "penalty")
        oov_logprob = params.number(body, "oov_logprob", None, -1e6, 0.0)
        if isinstance(run, ConditionalRun):  # log P(text | label), without the top-k alternatives
            label = params.label(body, run.labels, required=True)
            scores = await self.compute(run.score, sentences, label, oov=oov, oov_logprob=oov_logprob)
            return json_response({"label": label, "sentences": [s.to_dict() for s in scores]})
        if body.get("label") is not None:
            raise BadRequest(f"label is for conditional language models; {name} is a language model.")
        scored = await self.compute(
            score_with_alternatives, run.model, run.tokenizer, sentences, top_k, oov, oov_logprob
        )
        return json_response({"sentences": [s.to_dict() for s in scored]})

    async def activations(self, request: Request) -> Response:
        body = await self.body(request)
        params.known_keys(body, ACTIVATIONS_KEYS, "/api/activations")
        run = self.lm(body)
        model = run.config.model
        text = params.text(body, "text", self.limits)
        if not text:
            raise BadRequest("text is empty; give some text to look inside the model with.")
        states = ("hidden", "cell") if model.cell == "lstm" else ("hidden",)
        state = params.choice(body, "state", states, states[-1])
        layer = params.integer(body, "layer", 0, 0, model.layers - 1)
        units = params.integer_list(body, "units", 0, model.hidden - 1, self.limits.max_units)
        pattern = params.choice(body, "pattern", PATTERNS, None)
        top = params.integer(body, "top", 8, 1, self.limits.max_units)
        acts = await self.compute(collect_activations, run.model, run.tokenizer, text)
        response: dict[str, Any] = {"tokens": acts.tokens, "layers": model.layers, "hidden": model.hidden}
        if pattern is not None:
            found = find_units(acts, pattern, top)
            chosen = [(m.state, m.layer, m.unit, m.correlation) for m in found]
            response["pattern"] = pattern
            response["signal"] = pattern_signal(acts.tokens, pattern)
        else:
            chosen = [(state, layer, unit, None) for unit in (units or list(range(min(8, model.hidden))))]
        response["rows"] = [
            {
                "state": s,
                "layer": lay,
                "unit": u,
                "correlation": r,
                "values": acts.states(s)[lay, :, u].tolist(),
            }
            for s, lay, u, r in chosen
        ]
        return json_response(response)

    async def translate(self, request: Request) -> Response:
        body = await self.body(request)
        params.known_keys(body, TRANSLATE_KEYS, "/api/translate")
        name, run = self.run(body.get("run"))
        if not isinstance(run, TranslationRun):
            raise BadRequest(f"{name} is {KINDS[run.kind].article}, not a seq2seq run; it cannot translate.")
        text = params.text(body, "text", self.limits)
        if not text.strip():
            raise BadRequest("text is empty; give a sentence to translate.")
        beam = params.integer(body, "beam", 1, 1, 16)
        max_length = params.integer(body, "max_length", None, 1, self.limits.max_length)
        [result] = await self.compute(run.translate, text, beam, max_length=max_length, with_attention=True)
        return json_response(result.to_dict())

    async def classify(self, request: Request) -> Response:
        """P(label | text), and P(label | the text so far) after every token (`LabelledRun.classify_prefixes`)."""
        body = await self.body(request)
        params.known_keys(body, CLASSIFY_KEYS, "/api/classify")
        name, run = self.run(body.get("run"))
        if not isinstance(run, LabelledRun):
            raise BadRequest(
                f"{name} is {KINDS[run.kind].article}; /api/classify is for classifier and conditional "
                "language-model runs."
            )
        text = params.text(body, "text", self.limits)
        if not text.strip():
            raise BadRequest("text is empty; give a text to classify.")
        top_k = min(params.integer(body, "top_k", 5, 1, MAX_TOP_LABELS), len(run.labels))
        found = await self.compute(run.classify_prefixes, text)
        return json_response(found.to_dict(top_k, HIGHLIGHTED))


async def _bad_request(request: Request, exc: Exception) -> Response:
    if isinstance(exc, CharRNNError):  # the library's words name command-line flags: name JSON keys instead
        exc = exc.in_words_of(params.json_key)
    return json_response({"error": str(exc)}, getattr(exc, "status", 400))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> Response:
    return json_response({"error": f"internal error ({type(exc).__name__}); please report it"}, 500)


def create_app(
    runs: dict[str, Run], limits: Limits | None = None, hosts: frozenset[str] | None = None
) -> Starlette:
    """The Starlette app serving the page and the JSON API for `runs` (by name).

    `hosts`: the Host names it answers to (`charrnn.serve.guard.allowed_hosts`; default: this machine's
    loopback names); IP addresses are always answered.
    """
    server = Server(runs, limits or Limits())

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def favicon(request: Request) -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    routes = [
        Route("/", page),
        Route("/favicon.ico", favicon),
        Route("/api/info", server.info, methods=["GET"]),
        Route("/api/sample", server.sample, methods=["POST"]),
        Route("/api/score", server.score, methods=["POST"]),
        Route("/api/activations", server.activations, methods=["POST"]),
        Route("/api/translate", server.translate, methods=["POST"]),
        Route("/api/classify", server.classify, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    routes.insert(-1, memory_route(server, json_response))  # the Memory panel (charrnn/serve/memory.py)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(guard.HostAndOriginGuard, hosts=hosts or guard.allowed_hosts())],
        exception_handlers={
            BadRequest: _bad_request,
            CharRNNError: _bad_request,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.server = server
    return app


def run_names(run_dirs: list[Path]) -> list[str]:
    """A short unique name for each run directory: its folder name, numbered when two are the same."""
    names: list[str] = []
    for path in run_dirs:
        base = Path(path).resolve().name or "run"
        name, n = base, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names
