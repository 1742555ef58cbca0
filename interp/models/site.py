"""Where, as one value: a `Site` names a place in the model with one spelling that parses and
prints round trip, in the API, the command line, results, reports and errors:

- `embed`; `logits`;
- `L23H3`: a head's output (its slice of `hook_z`); `L23H3.q` (`.k`, `.v`): a head's query
  (key, value) input; `L23.kv1.k` (`.v`): a KV group's key (value) input, under grouped-query
  attention;
- `L5.attn`, `L5.mlp`: a layer's attention and MLP outputs; `L5.mlp_in`: the MLP's input;
  `L5.z`: every head's output; `L5.resid_pre` (`_mid`, `_post`): the residual stream;
- any other TransformerLens hook point by its hook name (`blocks.5.mlp.hook_post`).

A hook name with a shorter spelling parses to it (`blocks.5.hook_attn_out` is `L5.attn`);
`hook` is the hook point that carries a site, and `heads` the head (or KV group) it takes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering
from typing import Literal, get_args

from interp.errors import HookError, InvalidSettingError
from interp.models import hooks as H
from interp.models.heads import Head

Kind = Literal[
    "embed",
    "logits",
    "head",
    "head_input",
    "kv_input",
    "z",
    "attn",
    "mlp",
    "mlp_in",
    "resid_pre",
    "resid_mid",
    "resid_post",
    "hook",
]
_LAYER_KINDS = ("z", "attn", "mlp", "mlp_in", "resid_pre", "resid_mid", "resid_post")
_N = "([0-9]{1,6})"  # ASCII digits, few of them
_HEAD = re.compile(rf"^L{_N}H{_N}(?:\.([qkv]))?$", re.IGNORECASE)
_GROUP = re.compile(rf"^L{_N}\.kv{_N}\.([kv])$", re.IGNORECASE)
_OF_LAYER = re.compile(rf"^L{_N}\.({'|'.join(_LAYER_KINDS)})$", re.IGNORECASE)
SPELLINGS = (
    "embed, logits, L5H1 (a head's output), L5H1.q/.k/.v (its inputs), L5.kv0.k/.v (a KV "
    "group's), L5.attn, L5.mlp, L5.mlp_in, L5.z, L5.resid_pre/_mid/_post, or a hook name"
)


# within a block, sites sort in the order a forward pass reaches them
_RANK = {"resid_pre": 0, "head_input": 1, "kv_input": 1, "z": 2, "head": 3, "attn": 4}
_RANK |= {"resid_mid": 5, "mlp_in": 6, "mlp": 7, "resid_post": 8, "hook": 9, "logits": 10}


@total_ordering
@dataclass(frozen=True)
class Site:
    """One place in the model (see the module's docstring); `str()` is its spelling. Built
    checked (one value for each place: a hook with a shorter spelling is refused as a
    "hook"), and sorted in the order a forward pass reaches them."""

    kind: Kind
    layer: int = -1  # the block; -1 for embed, logits and a hook name (see `block`)
    index: int = -1  # the head (head, head_input) or KV group (kv_input)
    input: Literal["", "q", "k", "v"] = ""  # head_input, kv_input: which input
    name: str = ""  # kind "hook": the hook name

    def __post_init__(self) -> None:
        kind, heads = self.kind, self.kind in ("head", "head_input", "kv_input")
        ints = all(isinstance(i, int) and not isinstance(i, bool) for i in (self.layer, self.index))
        ok = kind in get_args(Kind) and ints and isinstance(self.name, str)
        ok = ok and (self.layer >= 0) == (heads or kind in _LAYER_KINDS)
        ok = ok and (self.index >= 0) == heads and (self.name != "") == (kind == "hook")
        inputs = {"head_input": ("q", "k", "v"), "kv_input": ("k", "v")}.get(kind, ("",))
        ok = ok and self.input in inputs
        if not ok or (kind == "hook" and not H.is_hook_name(self.name)):
            raise InvalidSettingError(f"not a site: {self!r:.120}; write {SPELLINGS}")
        if kind == "hook" and (short := _shorter(self.name)) is not None:
            raise InvalidSettingError(f"the hook {self.name} is the site {short}: write that")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Site):
            return NotImplemented
        return self._order() < other._order()

    def _order(self) -> tuple[int, int, int, str, str, str]:
        rank = _RANK.get(self.kind, 0)
        return (self.block, rank, self.index, self.input, self.name, self.kind)

    def __str__(self) -> str:
        if self.kind in ("embed", "logits"):
            return self.kind
        if self.kind == "hook":
            return self.name
        if self.kind == "head":
            return str(Head(self.layer, self.index))
        if self.kind == "head_input":
            return f"{Head(self.layer, self.index)}.{self.input}"
        if self.kind == "kv_input":
            return f"L{self.layer}.kv{self.index}.{self.input}"
        return f"L{self.layer}.{self.kind}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return f"Site({str(self)!r})"

    @property
    def hook(self) -> str:
        """The TransformerLens hook point that carries this site (a head's: its layer's)."""
        if self.kind == "logits":
            raise InvalidSettingError("logits are read after the model, not at a hook point")
        if self.kind == "hook":
            return self.name
        if self.kind == "embed":
            return H.EMBED
        if self.kind in ("head", "z"):
            return H.z(self.layer)
        if self.kind in ("head_input", "kv_input"):
            return H.qkv_input(self.layer, self.input)
        return H.OF_LAYER[self.kind](self.layer)

    @property
    def block(self) -> int:
        """The block the site belongs to, for ordering: -1 before the first, 10**9 after the
        last (logits, the final norm)."""
        if self.kind == "logits":
            return 10**9
        return H.layer_of(self.name) if self.kind == "hook" else self.layer

    @property
    def heads(self) -> tuple[int, ...] | None:
        """The head (KV group) a head's site takes on its hook's head axis; None: all."""
        return (self.index,) if self.kind in ("head", "head_input", "kv_input") else None

    @property
    def head(self) -> Head | None:
        """The head, for a head's output or input."""
        return Head(self.layer, self.index) if self.kind in ("head", "head_input") else None


def embed() -> Site:
    return Site("embed")


def logits() -> Site:
    return Site("logits")


def head(layer: int, index: int) -> Site:
    return Site("head", layer, index)


def of_layer(kind: Kind, layer: int) -> Site:
    """A layer's site: "attn", "mlp", "mlp_in", "z", "resid_pre", "resid_mid", "resid_post"."""
    if kind not in _LAYER_KINDS:
        raise InvalidSettingError(
            f"{kind!r} is not a layer's site; one of {', '.join(_LAYER_KINDS)}"
        )
    return Site(kind, layer)


def parse(value: str | Site | Head) -> Site:
    """A site from its spelling (or a hook name, or a `Head`), checked; one line if unknown."""
    if isinstance(value, Site):
        return value
    if isinstance(value, Head):
        return head(value.layer, value.head)
    if not isinstance(value, str) or not value.strip():
        raise InvalidSettingError(f"a site is written like L5H1 or L5.resid_pre, not {value!r:.40}")
    text = value.strip()
    if text.lower() in ("embed", "logits"):
        return Site("embed" if text.lower() == "embed" else "logits")
    if (m := _HEAD.match(text)) is not None:
        if m[3] is None:
            return head(int(m[1]), int(m[2]))
        return Site("head_input", int(m[1]), int(m[2]), m[3].lower())  # type: ignore[arg-type]
    if (m := _GROUP.match(text)) is not None:
        return Site("kv_input", int(m[1]), int(m[2]), m[3].lower())  # type: ignore[arg-type]
    if (m := _OF_LAYER.match(text)) is not None:
        return of_layer(m[2].lower(), int(m[1]))  # type: ignore[arg-type]
    if (short := _shorter(text)) is not None:
        return short
    if H.is_hook_name(text):
        return Site("hook", name=text)
    raise InvalidSettingError(f"unknown site {text!r:.60}; write {SPELLINGS}")


def _shorter(name: str) -> Site | None:
    """The site a hook name has a shorter spelling for (`blocks.5.hook_attn_out`: L5.attn)."""
    if name == H.EMBED:
        return embed()
    block = H.block_hook(name)
    if block is not None and block[1] in H.OF_LAYER_KINDS:
        return of_layer(H.OF_LAYER_KINDS[block[1]], block[0])  # type: ignore[arg-type]
    return None


site = parse  # the public name: interp.site("L5H1")


def spelled(hook: str) -> str:
    """A hook name as its site's spelling, for messages (`blocks.5.hook_attn_out`: L5.attn);
    a name that spells no site, as it is."""
    try:
        return str(parse(hook))
    except InvalidSettingError:
        return hook


class BySite(dict):
    """A dict keyed by hook name that also answers to a site's spelling: `acts["L5.attn"]`
    reads blocks.5.hook_attn_out, `acts["L5H1"]` head 1's slice of the recorded `L5.z`
    (`[pos, d_head]`); `in` and `get` answer as indexing does. A head's input (`L5H1.q`,
    `L5.kv0.k`) is refused rather than read as its whole hook."""

    def __missing__(self, key: object) -> object:
        if not isinstance(key, (str, Site)):
            raise KeyError(key)
        try:
            where = parse(key)
            hook = where.hook
        except InvalidSettingError:
            raise KeyError(key) from None
        if (hook == key and isinstance(key, str)) or not dict.__contains__(self, hook):
            raise KeyError(key)
        value = dict.__getitem__(self, hook)
        if where.kind in ("head_input", "kv_input"):
            raise HookError(f"{where} is one head's slice of a recorded hook; read it by its name")
        if where.kind == "head":
            n = value.shape[1]
            if where.index >= n:
                raise HookError(
                    f"{where} is out of range: the recorded L{where.layer}.z has {n} heads"
                )
            return value[:, where.index]
        return value

    def __contains__(self, key: object) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def get(self, key: object, default: object = None) -> object:
        try:
            return self[key]
        except KeyError:
            return default
