"""The computational graph circuits are found in: writers (`embed`, every head `L5H1`, every
MLP `L5.mlp`) and readers (every head's query input `L5H1.q`, key and value inputs per KV
group `L5.kv0.k` with `kv="group"`, or per query head `L5H1.k` with `kv="per-head"`, every
MLP's input `L5.mlp`, and `logits`). Every earlier writer feeds every later reader, and the
heads of a layer feed that layer's MLP. Held as writer and reader lists and a dense
`[writer, reader]` mask of real edges (EAP-IG's layout), never as an object per edge."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from interp.errors import InvalidSettingError
from interp.models import site as site_values
from interp.models.site import Site

KV = Literal["group", "per-head"]
KVS: tuple[KV, ...] = ("group", "per-head")


@dataclass(frozen=True)
class Edge:
    """One edge: what `sender` writes, as `receiver` reads it; `str()` is "L3H2->L5.kv0.k"."""

    sender: Site
    receiver: Site

    def __str__(self) -> str:
        return f"{self.sender}->{self.receiver}"

    def __repr__(self) -> str:
        return f"Edge({str(self)!r})"


@dataclass(frozen=True)
class Graph:
    """A model's graph of `n_layers` blocks of `n_heads` query heads and `n_kv` KV heads."""

    n_layers: int
    n_heads: int
    n_kv: int
    kv: KV = "group"
    writers: list[Site] = field(init=False, repr=False)
    readers: list[Site] = field(init=False, repr=False)
    mask: Tensor = field(init=False, repr=False)  # bool [writer, reader]: the real edges
    inputs: Tensor = field(init=False, repr=False)  # bool [writer, reader]: a node's own inputs

    def __post_init__(self) -> None:
        if self.kv not in KVS:
            raise InvalidSettingError(f"kv must be one of {', '.join(KVS)}, got {self.kv!r}")
        if self.n_kv < 1 or self.n_heads % self.n_kv:
            raise InvalidSettingError(f"{self.n_heads} query heads do not group into {self.n_kv}")
        writers = [site_values.embed()]
        readers: list[Site] = []
        for layer in range(self.n_layers):
            readers += self.attention_readers(layer)
            readers.append(site_values.of_layer("mlp", layer))
            writers += [site_values.head(layer, h) for h in range(self.n_heads)]
            writers.append(site_values.of_layer("mlp", layer))
        readers.append(site_values.logits())
        mask = _feeds(writers, readers)
        object.__setattr__(self, "writers", writers)
        object.__setattr__(self, "readers", readers)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "inputs", self._inputs())

    def _inputs(self) -> Tensor:
        """Which readers are each writer node's inputs: a head's query, its KV group's (or
        its own) key and value; an MLP's input; none for the embedding."""
        per_group = self.n_heads // self.n_kv
        out = torch.zeros_like(self.mask)
        at = {site: r for r, site in enumerate(self.readers)}
        for w, writer in enumerate(self.writers):
            if writer.kind == "mlp":
                out[w, at[writer]] = True
            elif writer.kind == "head":
                out[w, at[Site("head_input", writer.layer, writer.index, "q")]] = True
                for kind in ("k", "v"):
                    if self.kv == "group":
                        own = Site("kv_input", writer.layer, writer.index // per_group, kind)
                    else:
                        own = Site("head_input", writer.layer, writer.index, kind)
                    out[w, at[own]] = True
        return out

    def attention_readers(self, layer: int) -> list[Site]:
        """A layer's attention inputs in order: the query heads', then the keys', the values'."""
        out = [Site("head_input", layer, h, "q") for h in range(self.n_heads)]
        for kind in ("k", "v"):
            if self.kv == "group":
                out += [Site("kv_input", layer, g, kind) for g in range(self.n_kv)]
            else:
                out += [Site("head_input", layer, h, kind) for h in range(self.n_heads)]
        return out

    @property
    def n_edges(self) -> int:
        return int(self.mask.sum())

    def edge(self, writer: int, reader: int) -> Edge:
        return Edge(self.writers[writer], self.readers[reader])

    def included(
        self, keep: Sequence[Edge | str] | Tensor | None, drop: Sequence[Edge | str] = ()
    ) -> Tensor:
        """A circuit as a bool `[writer, reader]` mask: `keep` (None: every edge; a mask, or
        edges), less `drop`."""
        if keep is None:
            out = self.mask.clone()
        elif isinstance(keep, Tensor):
            if keep.shape != self.mask.shape or keep.dtype != torch.bool:
                raise InvalidSettingError(
                    f"a circuit's mask is bool {list(self.mask.shape)}, got {keep.dtype} "
                    f"{list(keep.shape)}"
                )
            out = keep & self.mask
        else:
            out = torch.zeros_like(self.mask)
            for edge in keep:
                out[self.index(edge)] = True
        for edge in drop:
            out[self.index(edge)] = False
        return out

    def index(self, edge: Edge | str) -> tuple[int, int]:
        """The `[writer, reader]` index of a real edge, given as an `Edge` or "L3H2->L5H1.q"."""
        if isinstance(edge, str):
            sender, arrow, receiver = edge.partition("->")
            if not arrow:
                raise InvalidSettingError(f"an edge is written SENDER->RECEIVER, not {edge!r:.60}")
            edge = Edge(site_values.parse(sender), site_values.parse(receiver))
        try:
            w, r = self.writers.index(edge.sender), self.readers.index(edge.receiver)
        except ValueError:
            raise InvalidSettingError(f"{edge} is not an edge of this graph ({self.kv})") from None
        if not bool(self.mask[w, r]):
            raise InvalidSettingError(f"{edge.sender} does not feed {edge.receiver}")
        return w, r


def _feeds(writers: list[Site], readers: list[Site]) -> Tensor:
    """`[writer, reader]`: whether a writer's output reaches a reader directly through the
    residual stream (the embedding reaches every reader, every writer the logits; a layer's
    heads reach its MLP)."""
    big = 1 << 30
    w_layer = torch.tensor([-1 if w.kind == "embed" else w.layer for w in writers])
    r_layer = torch.tensor([big if r.kind == "logits" else r.layer for r in readers])
    head = torch.tensor([w.kind == "head" for w in writers])
    mlp = torch.tensor([r.kind == "mlp" for r in readers])
    before = w_layer[:, None] < r_layer[None, :]
    same_layer_mlp = head[:, None] & mlp[None, :] & (w_layer[:, None] == r_layer[None, :])
    return before | same_layer_mlp
