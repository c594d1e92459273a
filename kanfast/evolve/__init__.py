"""Evolution strategies: Trainer callbacks that change a network's structure while it trains,
from kanfast.scoring's unit scores and kanfast.resize's consistent resizes. Every strategy logs
its events through ``Trainer.log_event``, so several strategies share one event log."""

from .base import Strategy
from .expand import Expand, replay_deepen
from .preservation import FunctionalPreservation
from .strategies import Apoptosis, GrowthOnly, Hybrid
from .triggers import EntropySaturation, Every, Plateau, Trigger

__all__ = ["Apoptosis", "EntropySaturation", "Every", "Expand", "FunctionalPreservation", "GrowthOnly", "Hybrid",
           "Plateau", "Strategy", "Trigger", "replay_deepen"]
