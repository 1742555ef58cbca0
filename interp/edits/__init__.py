"""Open interventions, the value and how it runs: an `Intervention` is a list of edits, each a
`Site` (`L5H1`, `L5.resid_pre`, or any TransformerLens hook point), positions (`positions`)
and an operation (`value`); `applying` turns it
into forward hooks that every run (generation, teacher-forced runs, the exact runner) uses.
Below generation in the flow: a run records the intervention it ran under, so any consumer
can replay it."""

from interp.edits.applying import positions_in
from interp.edits.positions import Positions, Span, span
from interp.edits.value import OPS, Context, Edit, Intervention, edit

__all__ = [
    "OPS",
    "Context",
    "Edit",
    "Intervention",
    "Positions",
    "Span",
    "edit",
    "positions_in",
    "span",
]
