"""Circuit discovery: the model's graph of writers and readers (`graph`) and every edge's
attribution score between paired clean and corrupted runs (`scores`: EAP, EAP-IG)."""

from interp.circuits.curve import FRACTIONS, SIZES, Curve, Faithfulness, prune, top_n
from interp.circuits.evaluate import Evaluated, evaluate_circuit
from interp.circuits.files import read_edges, save
from interp.circuits.graph import Edge, Graph
from interp.circuits.nodes import NodeScores, node_scores
from interp.circuits.scores import CircuitScores, circuit

__all__ = [
    "FRACTIONS",
    "SIZES",
    "CircuitScores",
    "Curve",
    "Edge",
    "Evaluated",
    "Faithfulness",
    "Graph",
    "NodeScores",
    "circuit",
    "evaluate_circuit",
    "node_scores",
    "prune",
    "read_edges",
    "save",
    "top_n",
]
