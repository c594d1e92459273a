"""Training: ``Trainer`` (mixed precision, gradient accumulation, clipping, EMA, torch.compile,
metrics files, atomic checkpoints with exact resume, early stopping, callbacks for structural
change), ``recalibrate_bn`` and ``find_batch_size``."""

from .batch_size import clear_batch_size_cache, find_batch_size
from .bn import recalibrate_bn
from .callbacks import Callback
from .config import EarlyStopping, TrainConfig
from .ema import ModelEMA
from .trainer import Trainer

__all__ = ["Callback", "EarlyStopping", "ModelEMA", "TrainConfig", "Trainer", "clear_batch_size_cache",
           "find_batch_size", "recalibrate_bn"]
