"""Structural resize: grow, prune or re-initialise a layer's units and, in the same call, every
tensor coupled to them (next layers' inputs, norms, residual and concat partners, optimizer
state), found by tracing the model with torch.fx. See DESIGN.md §6."""

from .api import prune, reinit, widen
from .checkpoint import load_resized, state_dict_with_shapes
from .couple import Dependencies, Group, Member, dependencies
from .graph import ResizeError
from .report import ResizeReport, TensorChange

__all__ = ["Dependencies", "Group", "Member", "ResizeError", "ResizeReport", "TensorChange", "dependencies",
           "load_resized", "prune", "reinit", "state_dict_with_shapes", "widen"]
