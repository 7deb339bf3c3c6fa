"""Two gloo processes with B/2 rows each give exactly the loss and gradients of one process with B.

For every registered objective (plus clip and siglip in tiles of 4 rows, and GradCache micro-batches),
in fp64: a shared linear "encoder" maps fixed inputs to unit embeddings; each rank embeds its half of
the batch, the objective runs on the gathered global batch (``GatheredObjective``) and the gradients
are averaged over the ranks. Every parameter gradient (encoder and loss-side) and the loss must equal
the single-process run on the whole batch to 1e-10. The same run without the gather (each rank's
loss on its own rows, DDP-averaged) must differ, so the comparison can fail.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from objective_specs import PAIR, SAME_DIM_TEACHER, SPECS, D

from modalign.objectives import CombinedObjective
from modalign.registry import lookup, names
from modalign.training.distributed import (
    GatheredObjective,
    RankStreamModel,
    World,
    gather_rows,
    joined_from_env,
)
from modalign.training.grad_cache import cached_backward
from modalign.types import Batch, EmbeddingBatch
from modalign.workflows import build  # noqa: F401  (registers every objective)

B, D_IN = 12, 5
EXTRA_CASES = {"clip/tiled": ("clip", {"chunk_size": 4}), "siglip/tiled": ("siglip", {"chunk_size": 4})}


def cases() -> dict[str, tuple[str, list[str], dict, list[str]]]:
    out = {}
    for name in names("objective"):
        mods, params, extra = SPECS.get(name, (PAIR, {}, []))
        out[name] = (name, mods, params, extra)
    for case, (name, params) in EXTRA_CASES.items():
        out[case] = (name, PAIR, params, [])
    return out


class Encoder(torch.nn.Module):
    """One linear map per embedding key: inputs (B, D_IN) -> unit rows (B, D or teacher_dim)."""

    def __init__(self, keys: list[str], teacher_dim: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.maps = torch.nn.ParameterDict(
            {
                k.replace(".", "_"): torch.nn.Parameter(
                    torch.randn(
                        D_IN, teacher_dim if k.endswith(".teacher") else D, generator=g, dtype=torch.float64
                    )
                )
                for k in keys
            }
        )

    def forward(self, x: dict[str, torch.Tensor], present: dict[str, torch.Tensor]) -> EmbeddingBatch:
        emb = {k: F.normalize(v @ self.maps[k.replace(".", "_")], dim=1) for k, v in x.items()}
        return EmbeddingBatch(emb, present)


def global_batch(mods: list[str], extra: list[str]):
    g = torch.Generator().manual_seed(0)
    keys = mods + extra
    x = {k: torch.randn(B, D_IN, generator=g, dtype=torch.float64) for k in keys}
    absent = torch.zeros(B, dtype=torch.bool)
    absent[[2, 9]] = True  # one absent row on each rank
    present = {m: ~absent if m == mods[-1] else torch.ones(B, dtype=torch.bool) for m in mods}
    return keys, x, present


def run_case(case, world: World, mode: str) -> dict[str, torch.Tensor]:
    """Loss and averaged gradients; ``mode`` is "gather", "cached" (GradCache) or "local" (no gather)."""
    name, mods, params, extra = case
    keys, x, present = global_batch(mods, extra)
    rows = world.my_rows(list(range(B)))
    x = {k: v[rows] for k, v in x.items()}
    present = {k: v[rows] for k, v in present.items()}
    enc = Encoder(keys, D if name in SAME_DIM_TEACHER else 4)
    obj = CombinedObjective({name: lookup("objective", name)(list(mods), **params)}, {name: 1.0}).double()
    loss_fn = obj if mode == "local" else GatheredObjective(obj, world)
    torch.manual_seed(0)  # mixup objectives draw from the global RNG: same draws on every rank
    if mode == "cached":
        halves = [(({k: v[:3] for k, v in x.items()}), {k: v[:3] for k, v in present.items()})]
        halves.append(({k: v[3:] for k, v in x.items()}, {k: v[3:] for k, v in present.items()}))
        out = cached_backward(lambda mb: enc(*mb), halves, loss_fn)
        loss = out.loss
    else:
        loss = loss_fn(enc(x, present)).loss
        loss.backward()
    params_ = [*enc.parameters(), *(p for p in obj.parameters() if p.requires_grad)]
    world.average_gradients(params_)
    named = [
        *(f"enc.{k}" for k, _ in enc.named_parameters()),
        *(f"obj.{k}" for k, p in obj.named_parameters() if p.requires_grad),
    ]
    result = {"loss": torch.tensor([world.all_mean(float(loss.detach()))], dtype=torch.float64)}
    for n, p in zip(named, params_, strict=True):
        result[n] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
    return result


def dropout_streams(world: World) -> dict[str, torch.Tensor]:
    """Dropout masks of a ``RankStreamModel`` on each rank's rows (gathered), replayed once."""
    drop = torch.nn.Dropout(0.5)
    model = RankStreamModel(lambda b: EmbeddingBatch({"x": drop(torch.ones(len(b), 16))}, {}), world)
    torch.manual_seed(3)  # the shared stream: same state on every rank
    before = torch.get_rng_state()
    batch = Batch({}, {}, [f"row{world.rank * 4 + i}" for i in range(4)])
    first, replay = model(batch).emb["x"], model(batch).emb["x"]
    return {
        "dropout|masks": gather_rows(first, world),
        "dropout|replay_equal": torch.tensor(float(torch.equal(first, replay))),
        "dropout|shared_stream_untouched": torch.tensor(float(torch.equal(before, torch.get_rng_state()))),
    }


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    world = World.current()
    results = {}
    for case_name, case in cases().items():
        for mode in ("gather", "cached", "local"):
            for k, v in run_case(case, world, mode).items():
                results[f"{case_name}|{mode}|{k}"] = v
    results.update(dropout_streams(world))
    if rank == 0:
        torch.save(results, Path(out_dir) / "two_ranks.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=2, join=True)
    return torch.load(out / "two_ranks.pt", weights_only=True)


@pytest.mark.parametrize("case_name", list(cases()))
def test_two_ranks_equal_one_process(two_ranks, case_name):
    single = run_case(cases()[case_name], World(), "gather")
    for mode in ("gather", "cached"):
        for k, v in single.items():
            got = two_ranks[f"{case_name}|{mode}|{k}"]
            assert torch.allclose(got, v, rtol=0, atol=1e-10), (mode, k, (got - v).abs().max())
        assert any(v.abs().max() > 0 for k, v in single.items() if k.startswith("enc."))


def test_local_loss_without_gather_is_a_different_gradient(two_ranks):
    """Each rank's own-rows loss, averaged: fewer negatives, so the clip gradient differs."""
    single = run_case(cases()["clip"], World(), "gather")
    diff = max(float((two_ranks[f"clip|local|{k}"] - v).abs().max()) for k, v in single.items())
    assert diff > 1e-3


def test_global_batch_must_split_evenly():
    from modalign.errors import ConfigError

    with pytest.raises(ConfigError, match="not divisible by the 2 processes"):
        World(rank=0, size=2).my_rows(list(range(7)))
    assert World(rank=1, size=2).my_rows(list(range(8))) == [4, 5, 6, 7]


def test_dropout_streams_differ_by_rank_and_replay_exactly(two_ranks):
    masks = two_ranks["dropout|masks"]
    assert masks.shape == (8, 16) and not torch.equal(masks[:4], masks[4:])  # ranks' rows differ
    assert float(two_ranks["dropout|replay_equal"]) == 1.0  # a GradCache replay draws the same masks
    assert float(two_ranks["dropout|shared_stream_untouched"]) == 1.0  # objectives' draws stay aligned


def _join_and_leave(rank: int, port: int, port2: int, out_dir: str) -> None:
    """Join through the torchrun variables, leave; then a group the caller made outlives the block."""
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "WORLD_SIZE": "2"}
    os.environ.update({**env, "LOCAL_RANK": str(rank)})
    with joined_from_env("cpu") as world:
        inside = dist.is_initialized() and world.all_mean(float(rank)) == 0.5
    left = dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port2}", rank=rank, world_size=2)
    with joined_from_env("cpu"):
        pass
    kept = dist.is_initialized()
    dist.destroy_process_group()
    torch.save(torch.tensor([inside, left, kept]), Path(out_dir) / f"rank{rank}.pt")


def test_a_group_joined_from_the_environment_is_destroyed_on_leaving(tmp_path):
    """A process that exits with a live gloo group can abort in interpreter shutdown (SIGABRT)."""
    mp.spawn(_join_and_leave, args=(_free_port(), _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        inside, left, kept = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True).tolist()
        assert (inside, left, kept) == (True, False, True)
