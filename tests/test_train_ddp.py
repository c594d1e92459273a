"""Trainer under DistributedDataParallel: 2 CPU processes with gloo on 127.0.0.1."""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from kanfast import evolve
from kanfast.train import Callback, TrainConfig, Trainer

WORLD = 2
BATCH = 4  # per rank; the single-process reference takes WORLD * BATCH
JOIN_TIMEOUT_S = 150

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with gloo")


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 4, generator=g)
    y = torch.randint(0, 3, (32,), generator=g)
    return (x, y), (x[:11], y[:11])  # 11 validation samples: shards of 6 and 5


def _model(hidden_layers=1):
    torch.manual_seed(0)
    hidden = [m for i in range(hidden_layers) for m in (nn.Linear(4 if i == 0 else 8, 8), nn.ReLU())]
    return nn.Sequential(*hidden, nn.Linear(8, 3))


def _fit(batch_size, train, val, *, epochs=2, out_dir=None, resume=None, callbacks=(), hidden_layers=1):
    config = TrainConfig(epochs=epochs, batch_size=batch_size, log_every=1, out_dir=out_dir, device="cpu",
                         progress=False, tensorboard=False)
    trainer = Trainer(_model(hidden_layers), lambda p: torch.optim.SGD(p, lr=0.1), F.cross_entropy, train, val, config,
                      callbacks=callbacks, resume=resume)
    trainer.fit()
    return trainer


def _params(trainer):
    return {name: p.detach().clone() for name, p in trainer.model.named_parameters()}


class _Desync(Callback):
    """Draws from rank 1's RNG only, so that random initial values of new units differ by rank
    unless the trainer hands every rank rank 0's weights."""

    def on_step_end(self, trainer, step):
        if trainer.rank == 1:
            torch.rand(7)


def _forbid_writes():
    from kanfast.train import checkpoint, trainer as trainer_module

    def fail(*args, **kwargs):
        raise AssertionError("a rank other than 0 wrote to out_dir")

    checkpoint.save = fail
    trainer_module.MetricsLog = fail


def _worker(rank, port, out):
    # a hang is reported with every rank's Python stacks: the fixture sends SIGUSR1 at its deadline
    stacks = open(f"{out}/rank{rank}.stacks", "w")  # noqa: SIM115 (open until the process ends)
    faulthandler.register(signal.SIGUSR1, file=stacks, all_threads=True)
    # the trainer initialises the process group from the torchrun environment, where the
    # launcher hosts the store and every rank connects to it
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank),
                      LOCAL_RANK=str(rank), TORCHELASTIC_USE_AGENT_STORE="True")
    torch.set_num_threads(1)
    if rank != 0:
        _forbid_writes()
    train, val = _data()
    result = {}
    try:
        plain = _fit(BATCH, train, val)
        assert dist.is_initialized() and plain.distributed and plain.world_size == WORLD
        result["tensors"] = (_params(plain), plain.history)
        result["dataset"] = (_params(_fit(BATCH, TensorDataset(*train), TensorDataset(*val))), None)

        # resume: one epoch into out_dir/first, then a second from rank 0's checkpoint
        _fit(BATCH, train, val, epochs=1, out_dir=f"{out}/first")
        resumed = _fit(BATCH, train, val, out_dir=f"{out}/resumed", resume=f"{out}/first")
        result["resumed"] = (_params(resumed), resumed.history)

        callbacks = [_Desync(),
                     evolve.GrowthOnly(0.5, max_width=12, interval=3, noise=0.1, layers=["0"],
                                       example_inputs=train[0][:2]),
                     evolve.Apoptosis(0.25, interval=5, layers=["2"], example_inputs=train[0][:2])]
        grown = _fit(BATCH, train, val, epochs=3, out_dir=f"{out}/evolve", callbacks=callbacks, hidden_layers=2)
        in_optimizer = [p for group in grown.optimizer.param_groups for p in group["params"]]
        result["evolve"] = {
            "params": _params(grown),
            "events": [{k: v for k, v in e.items() if k != "time"} for e in grown.events],
            "optimizer_holds_model": len(in_optimizer) == len(list(grown.model.parameters()))
            and all(a is b for a, b in zip(in_optimizer, grown.model.parameters())),
            "ddp_holds_model": grown._ddp.module is grown.model,
        }
    finally:
        torch.save(result, f"{out}/rank{rank}.pt")
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    # the store listens (on a port of the system's choosing) before any rank starts: no rank
    # binds a port that was probed free earlier, nor retries connecting to one nobody holds yet
    store = dist.TCPStore("127.0.0.1", 0, WORLD, is_master=True, wait_for_workers=False)
    context = mp.spawn(_worker, args=(store.port, str(out)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    try:
        while not context.join(timeout=max(1.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD} training processes did not finish in {JOIN_TIMEOUT_S} s; "
                            f"where they were:\n{_stacks_of(context.processes, out)}")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _stacks_of(processes, out):
    for process in processes:
        if process.is_alive():
            os.kill(process.pid, signal.SIGUSR1)
    time.sleep(2)  # faulthandler writes from a signal handler: give it a moment
    stacks = [out / f"rank{rank}.stacks" for rank in range(WORLD)]
    return "\n".join(f"--- rank {rank} ---\n" + (path.read_text() if path.exists() else "not started (importing)\n")
                     for rank, path in enumerate(stacks))


def _assert_close(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].shape == b[name].shape, name
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


@pytest.mark.parametrize("source", ["tensors", "dataset"])
def test_ddp_matches_one_process_on_the_full_batch(ranks, source):
    _, results = ranks
    (params0, history0), (params1, _) = results[0][source], results[1][source]
    _assert_close(params0, params1, atol=0)
    train, val = _data()
    data = (train, val) if source == "tensors" else (TensorDataset(*train), TensorDataset(*val))
    single = _fit(WORLD * BATCH, *data)
    _assert_close(params0, _params(single))
    if history0 is not None:  # losses averaged over the ranks, validation over both shards
        for ddp_row, row in zip(history0, single.history, strict=True):
            for key in ("train_loss", "val_loss", "val_accuracy"):
                assert ddp_row[key] == pytest.approx(row[key], abs=1e-6), key


def test_ddp_resume_from_rank0_checkpoint(ranks):
    out, results = ranks
    (params0, history0), (params1, _) = results[0]["resumed"], results[1]["resumed"]
    _assert_close(params0, params1, atol=0)
    params, history = results[0]["tensors"]
    _assert_close(params0, params, atol=1e-6)
    assert [r["train_loss"] for r in history0] == pytest.approx([r["train_loss"] for r in history], abs=1e-6)
    # one row per step: a single rank wrote them (the resumed run writes its own directory)
    for run, steps in (("first", range(1, 5)), ("resumed", range(5, 9))):
        rows = [json.loads(line) for line in (out / run / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows if r["kind"] == "step"] == list(steps)


def test_ddp_evolution_same_structure_and_weights_on_every_rank(ranks):
    out, results = ranks
    first, second = results[0]["evolve"], results[1]["evolve"]
    assert first["params"]["0.weight"].shape == (12, 4) and first["params"]["2.weight"].shape == (8, 12)
    _assert_close(first["params"], second["params"], atol=0)
    kinds = [e["kind"] for e in first["events"]]
    assert kinds.count("grow") == 1 and kinds.count("apoptosis") == 2
    assert first["events"] == second["events"]  # the same decisions, from all-reduced scores
    for rank in results:
        assert rank["evolve"]["optimizer_holds_model"] and rank["evolve"]["ddp_holds_model"]
    written = (out / "evolve" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["kind"] for line in written] == kinds
