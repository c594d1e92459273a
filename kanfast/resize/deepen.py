"""``deepen``: insert a layer that starts as the identity right after a module, in place."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..nn import KANConv1d, KANConv2d, KANConv3d, KANLinear
from .graph import ResizeError
from .report import DeepenReport, parameter_count
from .rules import KAN_CONV, LINEAR

KINDS = ("linear", "conv", "kan")

# Modules whose output has channels at dim 1, by their number of spatial dims.
_CHANNELS_FIRST = {
    nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3, nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3,
    KANConv1d: 1, KANConv2d: 2, KANConv3d: 3,
}
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclasses.dataclass(frozen=True)
class _Output:
    """What deepen needs to know about ``after``'s output."""

    features: int | None  # None: the layout is unknown (an observed output of 3 or more dims)
    spatial: int | None  # channels at dim 1 with this many spatial dims; None: features in the last dim
    shape: torch.Size | None  # observed on example_inputs, for modules whose type does not tell
    factory: dict  # device and dtype for the new layer


def _observe(model: nn.Module, after: str, module: nn.Module, example_inputs) -> tuple[torch.Size, dict]:
    """The shape, device and dtype of module's output when model runs on example_inputs."""
    outputs = []
    handle = module.register_forward_hook(lambda _m, _args, out: outputs.append(out))
    inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    was_training = model.training
    model.eval()  # leaves BatchNorm statistics as they are
    try:
        with torch.no_grad():
            model(*inputs)
    except Exception as e:
        raise ResizeError(f"example_inputs: running the model on them failed: {e}") from e
    finally:
        handle.remove()
        model.train(was_training)
    if not outputs:
        raise ResizeError(f"after: {after!r} is not called when the model runs on example_inputs")
    if not all(torch.is_tensor(o) for o in outputs):
        kinds = sorted({type(o).__name__ for o in outputs})
        raise ResizeError(f"after: {after!r} returns {', '.join(kinds)}, not a tensor: no layer can follow it")
    if outputs[0].dim() == 0:
        raise ResizeError(f"after: {after!r} returns a scalar: no layer can follow it")
    shapes = {tuple(o.shape) for o in outputs}
    if len(shapes) > 1:
        raise ResizeError(f"after: {after!r} is called several times with outputs of shapes {sorted(shapes)}: "
                          "one layer cannot follow all of them")
    return outputs[0].shape, {"device": outputs[0].device, "dtype": outputs[0].dtype}


def _output_of(model: nn.Module, after: str, module: nn.Module, example_inputs) -> _Output:
    if isinstance(module, LINEAR) or type(module) in _CHANNELS_FIRST:
        weight = next(module.parameters())
        factory = {"device": weight.device, "dtype": weight.dtype}
        if isinstance(module, LINEAR):
            return _Output(module.out_features, None, None, factory)
        return _Output(module.out_channels, _CHANNELS_FIRST[type(module)], None, factory)
    if example_inputs is None:
        raise ResizeError(f"example_inputs: the output shape of {after!r} ({type(module).__name__}) is not known "
                          "from its type; pass example_inputs")
    shape, factory = _observe(model, after, module, example_inputs)
    # (features,) or (batch, features): features last, and at dim 1 for the latter too.
    return _Output(shape[-1] if len(shape) <= 2 else None, None, shape, factory)


def _resolve(after: str, module: nn.Module, out: _Output, kind: str | None) -> tuple[str, int, int | None]:
    """kind, feature count and spatial dims (None: features last) of the layer to insert."""
    what = f"{after!r} ({type(module).__name__}" + (f", output {tuple(out.shape)})" if out.shape else ")")
    if out.features is not None:
        if kind is None:
            kind = "linear" if out.spatial is None else "conv"
        if kind == "linear" and out.spatial is not None:
            raise ResizeError(f"kind: 'linear' acts on the last dim, but {what} has its channels at dim 1; "
                              "use kind='conv' or 'kan'")
        if kind == "conv" and out.spatial is None:
            raise ResizeError(f"kind: 'conv' needs channels at dim 1 and spatial dims, but {what} has its features "
                              "in the last dim; use kind='linear' or 'kan'")
        return kind, out.features, out.spatial
    if kind == "linear":
        return kind, out.shape[-1], None
    if kind == "conv":
        if not 3 <= len(out.shape) <= 5:
            raise ResizeError(f"kind: 'conv' needs an output (N, C, *spatial) with 1 to 3 spatial dims, but {what} "
                              "does not have one")
        return kind, out.shape[1], len(out.shape) - 2
    raise ResizeError(f"kind: cannot tell whether the {len(out.shape)}-D output of {what} has its features last or "
                      f"at dim 1; pass kind='linear' or 'conv', or deepen after the layer that makes them")


def _kernel(kernel_size, spatial: int) -> tuple[int, ...]:
    if kernel_size is None:
        kernel_size = 3
    k = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * spatial
    if len(k) != spatial or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in k):
        raise ResizeError(f"kernel_size: expected a positive int or {spatial} of them, got {kernel_size!r}")
    if any(v % 2 == 0 for v in k):
        raise ResizeError(f"kernel_size: must be odd so that a centre tap exists (padding k//2 keeps the size), "
                          f"got {kernel_size!r}")
    return k


def _identity_conv(c: int, k: tuple[int, ...], factory: dict) -> nn.Module:
    conv = _CONV[len(k) - 1](c, c, k, padding=tuple(v // 2 for v in k), **factory)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[(torch.arange(c), torch.arange(c), *(v // 2 for v in k))] = 1
        conv.bias.zero_()
    return conv


def _identity_batch_norm(c: int, spatial: int, factory: dict) -> nn.Module:
    bn = _BATCH_NORM[spatial - 1](c, **factory)
    with torch.no_grad():
        # eval: (x - 0) / sqrt(running_var + eps) * 1 + 0, and (1 - eps) + eps rounds to 1
        bn.running_var.fill_(1 - bn.eps)
    return bn


def _greville(grid: torch.Tensor, order: int) -> torch.Tensor:
    """ξ_j = (t_{j+1} + … + t_{j+K}) / K for the G+K bases of each row of grid (in, G+2K+1)."""
    return grid.double()[:, 1:-1].unfold(1, order, 1).mean(-1)


def _identity_kan(n: int, spatial: int | None, options: dict, factory: dict) -> nn.Module:
    try:
        layer = KANLinear(n, n, **options, **factory) if spatial is None else \
            KAN_CONV[spatial - 1](n, n, 1, **options, **factory)
    except (TypeError, ValueError) as e:
        raise ResizeError(f"kan_options: {e}") from e
    with torch.no_grad():
        # Σ_j ξ_j B_j(x) = x on [t_K, t_{G+K}] = grid_range: B-splines of order >= 1 reproduce linear functions.
        coeff = _greville(layer.grid, layer.spline_order).to(layer.spline_weight.dtype)  # (n, G+K)
        layer.base_weight.zero_()
        layer.spline_weight.zero_()
        eye = torch.arange(n)
        if spatial is None:
            layer.spline_weight[eye, eye] = coeff
            if layer.spline_scaler is not None:
                layer.spline_scaler.fill_(1)
        else:
            layer.spline_weight[(eye, eye, slice(None), *(0,) * spatial)] = coeff
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def _place(model: nn.Module, after: str, new: list[nn.Module]) -> tuple[list[str], dict[str, str]]:
    """Put new right after module ``after``; returns the new modules' names and the renames."""
    parent_name, _, attr = after.rpartition(".")
    parent = model.get_submodule(parent_name)
    prefix = f"{parent_name}." if parent_name else ""
    # Only a plain Sequential is known to run its children in order; a subclass may not.
    if type(parent) is nn.Sequential:
        items = list(parent._modules.items())
        keys = [k for k, _ in items]
        at = keys.index(attr) + 1
        if keys == [str(i) for i in range(len(keys))]:  # indexed: later children shift, as Sequential.insert
            modules = [m for _, m in items[:at]] + new + [m for _, m in items[at:]]
            parent._modules.clear()
            parent._modules.update((str(i), m) for i, m in enumerate(modules))
            renamed = {prefix + k: f"{prefix}{int(k) + len(new)}" for k in keys[at:]}
            return [f"{prefix}{at + i}" for i in range(len(new))], renamed
        names = []
        for _ in new:
            j = 0
            while f"{attr}_deepen_{j}" in keys or f"{attr}_deepen_{j}" in names:
                j += 1
            names.append(f"{attr}_deepen_{j}")
        parent._modules.clear()
        parent._modules.update(items[:at] + list(zip(names, new)) + items[at:])
        return [prefix + n for n in names], {}
    setattr(parent, attr, nn.Sequential(getattr(parent, attr), *new))
    return [f"{after}.{i + 1}" for i in range(len(new))], {after: f"{after}.0"}


def _group_for(optimizer: torch.optim.Optimizer, module: nn.Module, after: str) -> dict:
    owned = {id(p) for p in module.parameters()}
    for group in optimizer.param_groups:
        if any(id(p) in owned for p in group["params"]):
            return group
    if len(optimizer.param_groups) == 1:
        return optimizer.param_groups[0]
    raise ResizeError(f"optimizer: none of its {len(optimizer.param_groups)} param groups holds parameters of "
                      f"{after!r}, so which one should train the new layer is ambiguous")


def deepen(model: nn.Module, after: str, *, kind: str | None = None, kernel_size=None, batch_norm: bool = False,
           kan_options: dict | None = None, example_inputs=None,
           optimizer: torch.optim.Optimizer | None = None) -> DeepenReport:
    """Insert a layer that starts as the identity right after module ``after`` (as in
    model.named_modules()), in place, so the model computes the same function with more depth.

    kind (default from the type of ``after``):
      "linear": nn.Linear(n, n) with weight I and bias 0, on the last dim — the default after
        nn.Linear and KANLinear;
      "conv": nn.ConvNd(C, C, kernel_size (odd, default 3), padding=kernel_size // 2) whose only
        non-zero tap is the centre one, the identity (exact with zero padding) — the default after
        nn.ConvNd, nn.ConvTransposeNd and KANConvNd. ``batch_norm=True`` adds a BatchNormNd
        after it with running_var = 1 - eps, so that it is the identity in eval mode (in training
        mode it normalises with batch statistics, which changes the function);
      "kan": KANLinear(n, n), or KANConvNd(C, C, 1) for channels at dim 1, built with
        ``kan_options`` (e.g. grid_range, grid_size, spline_order >= 1) and set to f(x) = x:
        base and bias 0, spline scaler 1, the spline coefficients of input i for output i the
        Greville abscissae of its knots. It is exact up to float rounding on grid_range (the
        knots t_K..t_{G+K}); within K knot intervals outside it the curve bends to 0, and
        further out the output is 0. Choose grid_range to cover the values, or update_grid later.
    Modules of other types need ``example_inputs`` (their output shape is observed in eval mode)
    and, unless that output is 2-D, an explicit kind "linear" or "conv".

    Where: if ``after``'s parent is an nn.Sequential the new modules become its next children;
    in an indexed Sequential the later children shift by their number (``report.renamed``), in a
    named one they are called "<after>_deepen_<j>". Forward code that indexes into that
    Sequential itself would see the shift. Otherwise ``after`` is replaced by
    nn.Sequential(after, *new): it is renamed "<after>.0" and the new modules are "<after>.1", ….
    Renamed modules keep their parameter objects, so optimizers are unaffected; state_dict keys
    follow the new names (deepen a fresh model the same way to load a checkpoint).

    optimizer: the new parameters join the param group that holds ``after``'s parameters (or
    the only group), so schedulers keep working; their state starts at the first step.
    Nothing is changed when a ResizeError is raised.
    """
    if not isinstance(after, str) or not after:
        raise ResizeError(f"after: expected the name of a submodule (as in model.named_modules()), got {after!r}")
    modules = dict(model.named_modules(remove_duplicate=False))
    if after not in modules:
        raise ResizeError(f"after: {after!r} is not a module of {type(model).__name__}")
    if kind is not None and kind not in KINDS:
        raise ResizeError(f"kind: must be one of {', '.join(KINDS)} or None, got {kind!r}")
    if not isinstance(batch_norm, bool):
        raise ResizeError(f"batch_norm: expected a bool, got {batch_norm!r}")
    if kan_options is not None and not isinstance(kan_options, dict):
        raise ResizeError(f"kan_options: expected a dict of KANLinear / KANConvNd keyword arguments, got "
                          f"{type(kan_options).__name__}")
    module = modules[after]
    out = _output_of(model, after, module, example_inputs)
    kind, n, spatial = _resolve(after, module, out, kind)
    for arg, given, needs in (("kernel_size", kernel_size is not None, "conv"), ("batch_norm", batch_norm, "conv"),
                              ("kan_options", kan_options is not None, "kan")):
        if given and kind != needs:
            raise ResizeError(f"{arg}: only applies to kind={needs!r}, but the layer after {after!r} is {kind!r}")

    notes = []
    if kind == "linear":
        new = [nn.Linear(n, n, **out.factory)]
        with torch.no_grad():
            new[0].weight.copy_(torch.eye(n))
            new[0].bias.zero_()
    elif kind == "conv":
        new = [_identity_conv(n, _kernel(kernel_size, spatial), out.factory)]
        if batch_norm:
            new.append(_identity_batch_norm(n, spatial, out.factory))
            notes.append(f"{type(new[1]).__name__} is the identity in eval mode only: training mode normalises "
                         "with batch statistics")
    else:
        new = [_identity_kan(n, spatial, dict(kan_options or {}), out.factory)]
        notes.append(f"{type(new[0]).__name__} is the identity only on grid_range {new[0].grid_range}: it bends to 0 "
                     f"within {new[0].spline_order} knot intervals outside and is 0 beyond")
    group = _group_for(optimizer, module, after) if optimizer is not None else None

    for m in new:
        m.train(module.training)  # a fresh BatchNorm in training mode would normalise an eval-mode model
    before = parameter_count(model)
    names, renamed = _place(model, after, new)
    params = [p for m in new for p in m.parameters()]
    if group is not None:
        group["params"].extend(params)
    return DeepenReport("deepen", after, {name: f"{type(m).__name__}({m.extra_repr()})" for name, m in zip(names, new)},
                        sum(p.numel() for p in params), renamed, before, parameter_count(model), notes)
