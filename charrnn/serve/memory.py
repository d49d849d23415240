"""POST /api/memory: which earlier tokens moved the prediction of one token, and the run's gradient-versus-distance curve.

Body: {"run": name, "text": str, "position": t}. Answer: the text's tokens, log P(x_t | x_<t), and for
every earlier token j the norm ‖∂ log P(x_t)/∂ e(x_j)‖ over its embedding (`charrnn.lessons.gradients.
token_influence`); beside it the run's mean ‖∂L_t/∂h_{t−k}‖ for k = 0 … 100 on its validation text
(`loaded_run_flow`), computed on the first request for a run and kept, or a note saying why it is missing.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from charrnn.core.errors import CharRNNError
from charrnn.lessons.gradients import loaded_run_flow, token_influence
from charrnn.serve import params
from charrnn.serve.params import BadRequest

CURVE_HORIZON, CURVE_POSITIONS = 100, 16


def memory_route(server: Any, respond: Any) -> Route:
    """The /api/memory route of `server` (`charrnn.serve.app.Server`); `respond` makes its JSON response."""
    curves: dict[str, dict[str, Any]] = {}  # run name -> the curve (or a note), computed once

    def curve(name: str, run: Any) -> dict[str, Any]:
        if name not in curves:
            try:
                flow = loaded_run_flow(run, horizon=CURVE_HORIZON, positions=CURVE_POSITIONS)
                curves[name] = {"hidden": flow.hidden, "memory_horizons": flow.memory_horizons,
                                "positions": flow.positions, "horizon": flow.horizon}  # fmt: skip
            except CharRNNError as exc:
                curves[name] = {"note": str(exc)}
        return curves[name]

    async def memory(request: Request) -> Response:
        body = await server.body(request)
        run = server.lm(body)
        name, _ = server.run(body.get("run"))
        text = params.text(body, "text", server.limits)
        position = params.integer(body, "position", None, 0, server.limits.max_text)
        if position is None:
            raise BadRequest("position is required: the index of the token whose prediction to explain.")
        found = await server.compute(token_influence, run.model, run.tokenizer, text, position)
        return respond({**found.to_dict(), "curve": await server.compute(curve, name, run)})

    return Route("/api/memory", memory, methods=["POST"])
