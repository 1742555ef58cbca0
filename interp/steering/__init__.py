"""Steering: vectors made from prompt sets (DiffMean, CAA) or given, applied as `add`,
`project` or `set` edits while the model generates, and evaluated over paired samples against
random-direction controls and a prompting baseline."""

from interp.steering.evaluate import steer_eval
from interp.steering.measures import concept_words
from interp.steering.result import Measures, SteeringEval
from interp.steering.vector import SteeringVector
from interp.steering.vectors import SteeringVectors, separability, steering_vector

__all__ = [
    "Measures",
    "SteeringEval",
    "SteeringVector",
    "SteeringVectors",
    "concept_words",
    "separability",
    "steer_eval",
    "steering_vector",
]
