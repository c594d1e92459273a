"""Structural resize: grow, prune or re-initialise a layer's units and, in the same call, every
tensor coupled to them (next layers' inputs, norms, residual and concat partners, optimizer
state), found by tracing the model with torch.fx; or deepen a model by inserting a layer that starts
as the identity. See DESIGN.md §6."""

from .api import prune, reinit, widen
from .checkpoint import FORMAT as CHECKPOINT_FORMAT, load_resized, state_dict_with_shapes
from .couple import Dependencies, Group, Member, dependencies
from .deepen import deepen
from .graph import ResizeError
from .report import DeepenReport, ResizeReport, TensorChange

__all__ = ["CHECKPOINT_FORMAT", "DeepenReport", "Dependencies", "Group", "Member", "ResizeError", "ResizeReport", "TensorChange",
           "deepen", "dependencies", "load_resized", "prune", "reinit", "state_dict_with_shapes", "widen"]
