"""An exponential moving average of a map's parameters (Polyak averaging), the map to evaluate.

Adversarial training leaves T oscillating around the solution: with the authors' toy
settings (lr 1e-4, 10k f-steps), the last iterate's W2 to the target is about 1.9 times
the noise floor, and the average over the last ~1000 f-steps' iterates about 1.2-1.4
(README, "Ours against the authors' loop"). The average does not feed back into training.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class ParamAverage:
    """``update(n)`` after f-step ``n``: ``avg <- d avg + (1 - d) params`` with
    ``d = min(decay, (1 + n) / (10 + n))``; the window grows with the step (TensorFlow's
    ``num_updates`` rule), so a short run is not pulled back towards its initial weights.

    Under :class:`~notpipe.core.optim.FlatAdam` (one buffer holds every parameter) an
    update is one ``lerp_`` on that buffer.
    """

    def __init__(self, model: nn.Module, opt, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) to average (0: none), got {decay}")
        self.model, self.decay = model, float(decay)
        flat = getattr(opt, "flat", None)
        self._flat = flat is not None
        if self._flat:
            self._src = [flat]
            self._order = list(opt.params)
        else:
            self._order = [p for p in model.parameters()]
            self._src = [p.detach() for p in self._order]
        self.avg = [t.clone() for t in self._src]

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.avg, self._src, 1.0 - d)

    def model_state(self) -> dict:
        """The model's state dict with the averaged parameters (buffers: the model's own)."""
        state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        values = self.avg[0].split([p.numel() for p in self._order]) if self._flat else self.avg
        by_id = dict(zip(map(id, self._order), values))
        for name, p in self.model.named_parameters():
            if id(p) in by_id:
                state[name] = by_id[id(p)].view_as(p).clone()
        return state

    def state_dict(self) -> list[torch.Tensor]:
        return [t.clone() for t in self.avg]

    def load_state_dict(self, saved: list[torch.Tensor] | None) -> None:
        """``None`` (a checkpoint written without the average): start it from the current weights."""
        for mine, theirs in zip(self.avg, saved or self._src):
            mine.copy_(theirs)
