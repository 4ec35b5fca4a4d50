"""An endless, seeded, resumable stream of batches, sharded over processes.

Epoch ``e`` visits the records in the order ``randperm(n)`` drawn from a generator seeded by
(``seed``, ``e``), cut into batches of ``batch_size`` (the last one of an epoch may be smaller).
Batch ``k`` of the stream is therefore a pure function of ``k``: the whole state is the number of
batches drawn so far (:attr:`position`), so a checkpoint records one integer and a resumed run
continues bit-identically.

Several processes: every process computes the same *global* batch and keeps its contiguous slice
(``torch.tensor_split`` into ``world`` parts), so N processes together see exactly the batch one
process would. Slices of unequal size carry a ``weight`` (rows · world / global rows) by which the
loop scales the per-process loss: after the data-parallel gradient average (DDP divides the sum by
``world``) the update is that of the mean over the global batch, for losses that are means over
sequences (every objective here except RMU, whose loss is a mean over tokens). Every batch, the
last of an epoch included, must give each process at least one row.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import UnlearnError


class Batch(dict):
    """A model batch (``input_ids``, ``attention_mask``, ``labels``) with the loss ``weight`` of its
    process's share (1.0 unless the global batch splits unevenly)."""

    weight: float = 1.0


class BatchStream:
    def __init__(self, records: list[dict], batch_size: int, collate: Callable[[list[dict]], dict],
                 seed: int, rank: int = 0, world: int = 1, device: torch.device | str | None = None,
                 name: str = "forget"):
        if not records:
            raise UnlearnError(f"the {name} set is empty")
        if batch_size < 1:
            raise UnlearnError(f"the {name} batch size must be at least 1, got {batch_size}")
        self.records, self.collate, self.seed = records, collate, seed
        self.rank, self.world, self.device = rank, world, device
        self.n = len(records)
        self.batch_size = min(batch_size, self.n)
        self.per_epoch = math.ceil(self.n / self.batch_size)
        smallest = self.n % self.batch_size or self.batch_size
        if smallest < world:
            raise UnlearnError(
                f"{world} processes need at least {world} {name} records in every batch, but a batch of "
                f"{smallest} occurs ({self.n} records, batch size {self.batch_size}); change the batch "
                "size or the number of processes")
        self.position = 0
        self._epoch, self._order = -1, None

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.per_epoch

    def order(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.n, generator=g)
        return self._order

    def indices(self, k: int) -> torch.Tensor:
        """Record indices of global batch ``k``."""
        epoch, j = divmod(k, self.per_epoch)
        return self.order(epoch)[j * self.batch_size:(j + 1) * self.batch_size]

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        idx = self.indices(self.position)
        self.position += 1
        mine = torch.tensor_split(idx, self.world)[self.rank]
        out = Batch(self.collate([self.records[i] for i in mine.tolist()]))
        if self.device is not None:
            for key, value in out.items():
                out[key] = value.to(self.device)
        out.weight = len(mine) * self.world / len(idx)
        return out

    def samples_drawn(self) -> int:
        """Records in the global batches drawn so far (budget accounting: every pass over a record
        counts, StableUN's feedback batches included)."""
        epochs, j = divmod(self.position, self.per_epoch)
        return epochs * self.n + min(j * self.batch_size, self.n)

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
