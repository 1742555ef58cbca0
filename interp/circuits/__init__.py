"""Circuit discovery: the model's graph of writers and readers (`graph`) and every edge's
attribution score between paired clean and corrupted runs (`scores`: EAP, EAP-IG)."""

from interp.circuits.curve import Curve, Faithfulness
from interp.circuits.evaluate import Evaluated, evaluate_circuit
from interp.circuits.graph import Edge, Graph
from interp.circuits.scores import CircuitScores, circuit

__all__ = [
    "CircuitScores",
    "Curve",
    "Edge",
    "Evaluated",
    "Faithfulness",
    "Graph",
    "circuit",
    "evaluate_circuit",
]
