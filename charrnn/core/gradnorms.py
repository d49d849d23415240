"""What the clipping did: the gradient norm before clipping, tallied on the device without a sync per step.

Every optimisation step computes ‖g‖, the 2-norm of the gradient over all parameters together, and
clips: g ← g · c/‖g‖ when ‖g‖ > c (c = --clip). `GradNormTally` keeps, as 0-d tensors on the model's
device,

    for the logging window   Σ‖g‖, max ‖g‖, the steps clipped (‖g‖ > c), the steps counted
    for the whole run        the steps clipped, the steps counted

where a step counts when its ‖g‖ is finite. Adding a step queues a few device operations and reads
nothing back, so a GPU step is never held up; the values reach the host only when a window is
logged (mean = Σ‖g‖ / counted, max, clipped share) or the run is saved.

On a save the tally is written into `TrainState` (Python floats and ints, saved as JSON). The sum
is kept in float64 (float32 on MPS, which has no float64); a value of either dtype goes to a Python
float and back unchanged, so a resumed run continues from exactly the sum the uninterrupted run
had at that step and logs the same figures, bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from charrnn.core.state import TrainState

WINDOW_FIELDS = ("window_grad_sum", "window_grad_max", "window_clipped", "window_grad_steps")
RUN_FIELDS = ("clipped_steps", "grad_steps")


class GradNormTally:
    """Running gradient-norm figures of the logging window and of the run (see the module docstring)."""

    def __init__(self, state: TrainState, device: torch.device) -> None:
        real = torch.float32 if device.type == "mps" else torch.float64
        kinds = {"window_grad_sum": real, "window_grad_max": real}
        self.values = {
            name: torch.tensor(_saved(getattr(state, name)), dtype=kinds.get(name, torch.int64), device=device)
            for name in WINDOW_FIELDS + RUN_FIELDS
        }

    def add(self, grad_norm: torch.Tensor | None, clip: float) -> None:
        """Count one step's ‖g‖ (before clipping; None when the step had no backward pass) against the threshold `clip`."""
        if grad_norm is None:
            return
        v = self.values
        norm = grad_norm.detach().to(v["window_grad_sum"].dtype)
        finite = torch.isfinite(norm)
        norm = torch.where(finite, norm, torch.zeros_like(norm))
        clipped = finite & (norm > clip)
        v["window_grad_sum"] += norm
        torch.maximum(v["window_grad_max"], norm, out=v["window_grad_max"])
        for name, counted in (("window_clipped", clipped), ("window_grad_steps", finite)):
            v[name] += counted
        v["clipped_steps"] += clipped
        v["grad_steps"] += finite

    def store(self, state: TrainState) -> None:
        """Write the tally into `state` (before a save)."""
        for name, value in self.values.items():
            setattr(state, name, value.item())

    def close_window(self, state: TrainState) -> dict[str, Any]:
        """The window's figures for its metrics record (none when no step counted); start a new window."""
        sum_, largest, clipped, counted = (self.values[name].item() for name in WINDOW_FIELDS)
        for name in WINDOW_FIELDS:
            self.values[name].zero_()
            setattr(state, name, 0.0 if name in ("window_grad_sum", "window_grad_max") else 0)
        if not counted:
            return {}
        return {"grad_norm_mean": sum_ / counted, "grad_norm_max": largest, "clipped": clipped / counted}

    def clipped_share(self) -> float | None:
        """The share of the run's counted steps that were clipped (None before any)."""
        counted = self.values["grad_steps"].item()
        return self.values["clipped_steps"].item() / counted if counted else None


def _saved(value: Any) -> float | int:
    """A tally value read back from a resume file; anything but a finite number (a damaged file) counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return value


def clipped_share(state: dict[str, Any]) -> float | None:
    """The share of clipped steps from a saved `TrainState` (resume metadata); None when it has no tally."""
    clipped, counted = state.get("clipped_steps", 0), state.get("grad_steps", 0)
    if type(clipped) is not int or type(counted) is not int or counted <= 0 or not 0 <= clipped <= counted:
        return None
    return clipped / counted
