"""Checkpoints of resized models: the weights plus each module's size attributes, so that a
freshly constructed (original-size) model can be resized to match before loading."""

from __future__ import annotations

from torch import nn

from .graph import ResizeError
from .slots import size_attributes

FORMAT = 1


def state_dict_with_shapes(model: nn.Module) -> dict:
    """{"format", "state_dict", "sizes": {module: {attribute: int | list}}}: only tensors, dicts,
    lists, strings and ints, so ``torch.load(..., weights_only=True)`` reads it."""
    sizes = {}
    for name, module in model.named_modules():
        attrs = size_attributes(module)
        if attrs:
            sizes[name] = {a: list(getattr(module, a)) if isinstance(getattr(module, a), tuple) else getattr(module, a)
                           for a in attrs}
    return {"format": FORMAT, "state_dict": model.state_dict(), "sizes": sizes}


def load_resized(model: nn.Module, checkpoint: dict, *, strict: bool = True) -> nn.Module:
    """Load a state_dict_with_shapes() checkpoint into model, first giving every module the
    stored sizes (attributes and tensor shapes). Build any optimizer after this call."""
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise ResizeError(f"checkpoint: expected a dict from state_dict_with_shapes() (format {FORMAT}), got "
                          f"{type(checkpoint).__name__}" + (f" with format {checkpoint.get('format')!r}"
                                                              if isinstance(checkpoint, dict) else ""))
    state, modules = checkpoint["state_dict"], dict(model.named_modules())
    for name, attrs in checkpoint["sizes"].items():
        if name not in modules:
            raise ResizeError(f"checkpoint: module {name!r} is not part of {type(model).__name__}")
        module, prefix = modules[name], f"{name}." if name else ""
        for attr, value in attrs.items():
            setattr(module, attr, tuple(value) if isinstance(value, list) else value)
        for table in (module._parameters, module._buffers):
            for attr, t in table.items():
                stored = state.get(prefix + attr)
                if t is None or stored is None or stored.shape == t.shape:
                    continue
                empty = t.new_empty(stored.shape)
                table[attr] = nn.Parameter(empty, requires_grad=t.requires_grad) if table is module._parameters \
                    else empty
    model.load_state_dict(state, strict=strict)
    return model
