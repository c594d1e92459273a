"""The trainer-overhead workload: the same epochs of a small KAN classifier trained by
``kanfast.train.Trainer`` with everything on (mixed-precision off on CPU, EMA, clipping,
metrics files, an epoch-end checkpoint, a callback that does nothing) and by a plain
hand-written loop doing the same useful work (forward, backward, clip, step, EMA of the
weights, buffers copied, the EMA weights validated after every epoch, the mean training loss)."""

from __future__ import annotations

import copy
import tempfile

import torch
import torch.nn.functional as F
from torch import nn

import kanfast
from kanfast.train import Callback, TrainConfig, Trainer

EMA_DECAY, CLIP, LR = 0.99, 1.0, 1e-3


class Workload:
    def __init__(self, samples: int = 2048, val_samples: int = 512, features: int = 32, hidden: int = 64,
                 batch: int = 128, epochs: int = 2, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(samples, features, generator=g)
        self.y = torch.randint(0, 10, (samples,), generator=g)
        self.val_x = torch.randn(val_samples, features, generator=g)
        self.val_y = torch.randint(0, 10, (val_samples,), generator=g)
        self.features, self.hidden, self.batch, self.epochs = features, hidden, batch, epochs

    def model(self) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(kanfast.KANLinear(self.features, self.hidden), kanfast.KANLinear(self.hidden, 10))

    def trainer(self) -> list[dict]:
        with tempfile.TemporaryDirectory() as out:
            config = TrainConfig(epochs=self.epochs, batch_size=self.batch, ema_decay=EMA_DECAY, clip_grad_norm=CLIP,
                                 log_every=50, out_dir=out, progress=False, tensorboard=False)
            return Trainer(self.model(), lambda p: torch.optim.AdamW(p, lr=LR), F.cross_entropy, (self.x, self.y),
                           (self.val_x, self.val_y), config, callbacks=[Callback()]).fit()

    def plain(self) -> list[dict]:
        model = self.model()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
        ema_model = copy.deepcopy(model).requires_grad_(False)
        ema, ema_buffers = list(ema_model.parameters()), list(ema_model.buffers())
        history = []
        for epoch in range(self.epochs):
            model.train()
            loss_sum, steps = torch.zeros(()), 0
            order = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(epoch))
            for idx in order.split(self.batch):
                loss = F.cross_entropy(model(self.x[idx]), self.y[idx])
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), CLIP)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1 - EMA_DECAY)
                    torch._foreach_copy_(ema_buffers, list(model.buffers()))
                loss_sum += loss.detach()
                steps += 1
            history.append({"train_loss": loss_sum.item() / steps, **self._validate(ema_model)})
        return history

    @torch.no_grad()
    def _validate(self, model: nn.Module) -> dict:
        model.eval()
        loss_sum, correct = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64)
        for start in range(0, len(self.val_x), self.batch):
            x, y = self.val_x[start:start + self.batch], self.val_y[start:start + self.batch]
            output = model(x)
            loss_sum += F.cross_entropy(output, y).double() * len(y)
            correct += (output.argmax(1) == y).sum()
        return {"val_loss": loss_sum.item() / len(self.val_x), "val_accuracy": correct.item() / len(self.val_x)}
