"""Ratio table for structural resizing (kanfast.resize) with Adam state:

resize every layer of a ResNet-like CNN (conv/BN blocks with residual adds) and of a 12-layer
transformer FFN stack, once widening (net2net) and once pruning, and time it four ways:

- widen/prune: kanfast.resize.widen / prune, including tracing the model (torch.fx) to find
  each layer's coupling group;
- apply (op): only the tensor work of those calls (kanfast.resize.apply.apply_plan with the
  groups found beforehand), the group's tensors rebuilt by kanfast.ops.coupled_gather;
- apply (reference): the same with the per-tensor torch gather (backend "reference");
- per-tensor loop: a hand-written loop doing index_select (and the scale / zero fill) on each
  coupled tensor and its Adam moments, then swapping the parameters into the optimizer, given
  the same coupling.

    python bench/resize_ratios.py --out bench/results/resize_cpu.md
    python bench/resize_ratios.py --quick        # smoke test (CI)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, setup_measurement, write_report  # noqa: E402
from kanfast import _backend  # noqa: E402
from kanfast.resize import prune, widen  # noqa: E402
from kanfast.resize.apply import Plan, apply_plan  # noqa: E402
from kanfast.resize.couple import group_for  # noqa: E402
from kanfast.resize.slots import slots  # noqa: E402


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class ResNetLike(nn.Module):
    def __init__(self, width: int, blocks: int) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        self.blocks = nn.Sequential(*(Block(width) for _ in range(blocks)))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        x = self.blocks(torch.relu(self.bn(self.stem(x))))
        return self.head(x.mean((2, 3)))


class FFN(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x):
        return x + self.fc2(torch.nn.functional.gelu(self.fc1(self.norm(x))))


class FFNStack(nn.Module):
    def __init__(self, d: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(FFN(d, hidden) for _ in range(layers)))

    def forward(self, x):
        return self.layers(x)


class Case:
    """A model with Adam state after one step, and the layers to resize (by name)."""

    def __init__(self, label: str, model: nn.Module, example: torch.Tensor, layers: list[str], factor: float):
        self.label, self.example, self.layers, self.factor = label, example, layers, factor
        torch.manual_seed(0)
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        model(example).square().mean().backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def fresh(self):
        model = copy.deepcopy(self.model)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        optimizer.load_state_dict(self.optimizer.state_dict())
        return model, optimizer


def cnn_case(width: int, blocks: int, size: int) -> Case:
    layers = ["stem"] + [f"blocks.{i}.conv1" for i in range(blocks)]
    return Case(f"CNN width {width}, {blocks} blocks", ResNetLike(width, blocks), torch.randn(2, 3, size, size),
                layers, 1.25)


def ffn_case(d: int, hidden: int, layers: int) -> Case:
    return Case(f"FFN stack d {d}, hidden {hidden}, {layers} layers", FFNStack(d, hidden, layers),
                torch.randn(2, 8, d), [f"layers.{i}.fc1" for i in range(layers)], 1.25)


def plan_src(n: int, op: str, gen: torch.Generator) -> torch.Tensor:
    if op == "widen":
        return torch.cat([torch.arange(n), torch.randint(n, (n // 4,), generator=gen)])
    return torch.randperm(n, generator=gen)[: n - n // 4].sort().values


def kanfast_run(case: Case, op: str, model, optimizer) -> None:
    gen = torch.Generator().manual_seed(0)
    for name in case.layers:
        n = dict(model.named_modules())[name].weight.shape[0]
        if op == "widen":
            widen(model, name, n + n // 4, generator=gen, example_inputs=case.example, optimizer=optimizer)
        else:
            prune(model, name, plan_src(n, "prune", gen), example_inputs=case.example, optimizer=optimizer)


def make_plan(n: int, op: str, gen: torch.Generator) -> Plan:
    """The plan widen (net2net) / prune build for n units."""
    src = plan_src(n, op, gen)
    none = torch.zeros(src.numel(), dtype=torch.bool)
    if op == "widen":
        return Plan(src, none, torch.arange(src.numel()) >= n, 1 / torch.bincount(src, minlength=n).double()[src])
    return Plan(src, none, none, torch.ones(src.numel(), dtype=torch.float64))


def apply_run(case: Case, groups: list, op: str, model, optimizer) -> None:
    # The groups stay valid across the resizes: they name modules and unit counts, and the
    # layers' groups are disjoint in units.
    gen = torch.Generator().manual_seed(0)
    for group in groups:
        apply_plan(model, group, make_plan(group.units, op, gen), optimizer)


def coupling(case: Case, model) -> list[list[tuple[str, str, int, str]]]:
    """Per layer: (module, attr, dim, kind) of every coupled tensor, found before any resize.
    The bench models resize whole dims (offset 0, one position per unit)."""
    out = []
    for name in case.layers:
        group = group_for(model, name, case.example)
        tensors = []
        for member in group.members:
            assert member.offset == 0 and member.block == 1, member
            module = dict(model.named_modules())[member.module]
            tensors += [(member.module, s.attr, s.dim, s.kind) for s in slots(module, member.role)]
        out.append(tensors)
    return out


def loop_run(plan: list, op: str, model, optimizer) -> None:
    """The straightforward per-tensor version of kanfast_run (same units, same rule)."""
    gen = torch.Generator().manual_seed(0)
    modules = dict(model.named_modules())
    for tensors in plan:
        first_module, first_attr, first_dim, _ = tensors[0]
        n = getattr(modules[first_module], first_attr).shape[first_dim]
        src = plan_src(n, op, gen)
        new = torch.arange(src.numel()) >= n
        scale = 1 / torch.bincount(src, minlength=n).double()[src]
        replaced = {}
        for module_name, attr, dim, kind in tensors:
            module = modules[module_name]
            old = getattr(module, attr)
            shape = [1] * old.dim()
            shape[dim] = -1
            value = old.detach().index_select(dim, src)
            if kind == "outgoing" and op == "widen":
                value = value * scale.to(value.dtype).view(shape)
            if isinstance(old, nn.Parameter):
                new_param = nn.Parameter(value, requires_grad=old.requires_grad)
                state = optimizer.state.pop(old, {})
                for key in ("exp_avg", "exp_avg_sq"):
                    if key in state:
                        state[key] = state[key].index_select(dim, src).masked_fill(new.view(shape), 0)
                optimizer.state[new_param] = state
                replaced[old] = new_param
                setattr(module, attr, new_param)
            else:
                setattr(module, attr, value)
        for group in optimizer.param_groups:
            group["params"] = [replaced.get(p, p) for p in group["params"]]


def timed(setup, run, repeats: int) -> dict[str, float]:
    """Median seconds of run(*setup()) per provider, providers interleaved, setup untimed."""
    times = {name: [] for name in run}
    for r in range(repeats + 1):  # the first round warms up
        for name, fn in run.items():
            state = setup()
            start = time.perf_counter()
            fn(*state)
            if r:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def rows_for(case: Case, repeats: int) -> list[list[str]]:
    plan = coupling(case, case.model)
    groups = [group_for(case.model, name, case.example) for name in case.layers]
    tensors = sum(len(t) for t in plan)
    rows = []
    for op in ("widen", "prune"):
        def reference_run(model, optimizer, op=op):
            with _backend.use_backend("reference"):
                apply_run(case, groups, op, model, optimizer)

        t = timed(case.fresh, {"full": lambda m, o, op=op: kanfast_run(case, op, m, o),
                               "op": lambda m, o, op=op: apply_run(case, groups, op, m, o),
                               "reference": reference_run,
                               "loop": lambda m, o, op=op: loop_run(plan, op, m, o)}, repeats)
        row = [case.label, op, str(len(case.layers)), str(tensors)] + [
            f"{t[k] * 1e3:.1f}" for k in ("full", "op", "reference", "loop")] + [
            f"{t['reference'] / t['op']:.2f}", f"{t['loop'] / t['op']:.2f}"]
        rows.append(row)
        print("  ".join(row), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny models, 1 repeat: a smoke test")
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args(argv)

    setup_measurement(args.threads)
    if args.quick:
        cases, repeats = [cnn_case(8, 2, 8), ffn_case(16, 32, 12)], 1
    else:
        cases, repeats = [cnn_case(64, 4, 16), ffn_case(256, 1024, 12)], args.repeats
    rows = [row for case in cases for row in rows_for(case, repeats)]
    backend = _backend.choose("coupled_gather", torch.device("cpu"))
    table = markdown_table(["model", "resize", "layers", "coupled tensors", "widen/prune ms",
                            f"apply (op, {backend}) ms", "apply (reference) ms", "per-tensor loop ms",
                            "apply: reference ÷ op", "loop ÷ apply (op)"], rows)
    print()
    print(table)
    if args.out:
        note = ("Each run starts from the same model with one Adam step of state; setup is untimed. "
                "'widen/prune' includes tracing the model (torch.fx) once per layer; the other columns are given "
                "the coupling groups. Adam moments are gathered with their parameters (not counted in "
                "'coupled tensors'). Ratios above 1 mean the op is faster.")
        write_report(args.out, "resize: kanfast.resize with coupled_gather vs a per-tensor loop", __file__, argv,
                     table + "\n\n" + note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
