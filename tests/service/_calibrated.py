"""Calibrated model folders for the service tests, built from the shipped graphs.

The tests make their own, with a map they choose (one far from the identity, so that a
decision on the score and one on the probability differ): the raw part of a shipped graph
(``models/medical`` or ``models/wine``, its calibrated output left out) with ONNX nodes
appended that compute the map as a second output (``probability`` [N, 1] binary, ``probabilities``
[N, K] multiclass), and the shipped card with a ``calibration`` section whose held-out
probabilities come from onnxruntime running the same nodes on the card's held-out scores.

``graph_map`` lets the graph apply other parameters than the card states, and
``with_output=False`` leaves the calibrated output out: the two ways a card and its graph
can disagree, which the service must refuse.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort
from _servicekit import SHIPPED
from onnx import TensorProto, helper, numpy_helper

from costaware.calibration import (
    BINARY_OUTPUT,
    LOGIT_EPS,
    MULTICLASS_OUTPUT,
    apply_map,
    quality,
)
from costaware.card import CARD_FILENAME, MODEL_FILENAME, parse_card, write_card

# A map that moves medical's scores a long way down (its weighted loss pushed them up):
# p = 1 / (1 + exp(-1.1 logit(s) + 1.5)), so a score of 0.5 becomes a probability of 0.18.
SIGMOID = {"method": "sigmoid", "a": -1.1, "b": 1.5}
TEMPERATURE = {"method": "temperature", "temperature": 1.7}


def _constant(name: str, value: float) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=np.float32), name)


def map_nodes(
    card_map: dict[str, Any], raw: str, out: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes computing ``costaware.calibration.apply_map(card_map, raw)`` into ``out``."""
    p = "calibration_"
    if card_map["method"] == "sigmoid":
        nodes = [
            helper.make_node("Clip", [raw, p + "eps", p + "one_minus_eps"], [p + "s"]),
            helper.make_node("Log", [p + "s"], [p + "log_s"]),
            helper.make_node("Sub", [p + "one", p + "s"], [p + "rest"]),
            helper.make_node("Log", [p + "rest"], [p + "log_rest"]),
            helper.make_node("Sub", [p + "log_s", p + "log_rest"], [p + "logit"]),
            helper.make_node("Mul", [p + "logit", p + "a"], [p + "scaled"]),
            helper.make_node("Add", [p + "scaled", p + "b"], [p + "z"]),
            helper.make_node("Exp", [p + "z"], [p + "e"]),
            helper.make_node("Add", [p + "e", p + "one"], [p + "denominator"]),
            helper.make_node("Reciprocal", [p + "denominator"], [out]),
        ]
        constants = [
            _constant(p + "eps", LOGIT_EPS),
            _constant(p + "one_minus_eps", 1.0 - LOGIT_EPS),
            _constant(p + "one", 1.0),
            _constant(p + "a", card_map["a"]),
            _constant(p + "b", card_map["b"]),
        ]
        return nodes, constants
    if card_map["method"] == "temperature":
        nodes = [
            helper.make_node("Clip", [raw, p + "eps", p + "one"], [p + "q"]),
            helper.make_node("Log", [p + "q"], [p + "log_q"]),
            helper.make_node("Div", [p + "log_q", p + "temperature"], [p + "z"]),
            helper.make_node("Softmax", [p + "z"], [out], axis=1),
        ]
        constants = [
            _constant(p + "eps", LOGIT_EPS),
            _constant(p + "one", 1.0),
            _constant(p + "temperature", card_map["temperature"]),
        ]
        return nodes, constants
    raise ValueError(f"no test graph for method {card_map['method']!r}")


def calibrated_graph(source: bytes, card_map: dict[str, Any], raw: str, out: str) -> bytes:
    """``source`` with the map appended as a second output ``out`` of ``raw``'s shape."""
    model = onnx.load_from_string(source)
    nodes, constants = map_nodes(card_map, raw, out)
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(constants)
    (raw_output,) = (o for o in model.graph.output if o.name == raw)
    shape = [d.dim_param or d.dim_value for d in raw_output.type.tensor_type.shape.dim]
    model.graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, shape))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def raw_graph(source: bytes, raw: str) -> bytes:
    """``source`` cut down to what computes its raw output ``raw`` (a shipped graph's own
    calibration map and output left out)."""
    model = onnx.load_from_string(source)
    inputs = [item.name for item in model.graph.input]
    return onnx.utils.Extractor(model).extract_model(inputs, [raw]).SerializeToString()


def write_uncalibrated(folder: Path, source: str = "builtin") -> dict[str, Any]:
    """A copy of the shipped model ``source`` without its calibration map: the raw part
    of its graph and its card without ``calibration`` (as an older card, or
    ``--calibration none``). Returns the card as JSON."""
    shipped = SHIPPED / source
    card = json.loads((shipped / CARD_FILENAME).read_bytes())
    card.pop("calibration", None)
    # A binary card's held-out probabilities are the calibrated ones; a multiclass card's
    # are its raw scores, and its calibrated ones have their own field.
    card["held_out"].pop("calibrated_probabilities" if card.get("task") else "probabilities")
    graph = raw_graph((shipped / MODEL_FILENAME).read_bytes(), card["onnx"]["output_name"])
    card["onnx"]["sha256"] = hashlib.sha256(graph).hexdigest()
    card["version"] = f"{card['version']}-uncalibrated"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILENAME).write_bytes(graph)
    write_card(folder, parse_card(json.dumps(card).encode(), folder / CARD_FILENAME))
    return json.loads((folder / CARD_FILENAME).read_bytes())


def run_map(card_map: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    """The map's nodes alone, run by onnxruntime on raw outputs ([N, 1] or [N, K])."""
    width = raw.shape[1]
    nodes, constants = map_nodes(card_map, "raw", "out")
    graph = helper.make_graph(
        nodes,
        "calibration_map",
        [helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", width])],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what the shipped graphs use, and onnxruntime reads
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"raw": raw.astype(np.float32)})
    return out


def write_calibrated(
    folder: Path,
    source: str = "medical",
    card_map: dict[str, Any] | None = None,
    graph_map: dict[str, Any] | None = None,
    with_output: bool = True,
    version: str | None = None,
) -> dict[str, Any]:
    """A calibrated copy of the shipped model ``source`` in ``folder``: the graph with the
    map's nodes (``graph_map``, the card's map by default; none when ``with_output`` is
    False) and the card with ``calibration`` for ``card_map``. Returns the card as JSON."""
    shipped = SHIPPED / source
    card = json.loads((shipped / CARD_FILENAME).read_bytes())
    multiclass = card.get("task") == "multiclass"
    card_map = card_map or (TEMPERATURE if multiclass else SIGMOID)
    out = MULTICLASS_OUTPUT if multiclass else BINARY_OUTPUT
    raw = card["onnx"]["output_name"]
    graph = raw_graph((shipped / MODEL_FILENAME).read_bytes(), raw)
    if with_output:
        graph = calibrated_graph(graph, graph_map or card_map, raw, out)
    held_out = card["held_out"]
    if multiclass:
        scores = np.asarray(held_out["probabilities"], dtype=np.float32)
        held_out["calibrated_probabilities"] = run_map(card_map, scores).tolist()
        after = held_out["calibrated_probabilities"]
    else:
        scores = np.asarray(held_out["scores"], dtype=np.float32)
        held_out["probabilities"] = run_map(card_map, scores[:, None]).reshape(-1).tolist()
        after = held_out["probabilities"]
    labels = held_out["labels"]
    # The nodes compute the map: what onnxruntime gave is the card's map within float32.
    assert np.allclose(after, apply_map(parse_map(card_map), scores), atol=1e-6)
    card["calibration"] = {
        "map": card_map,
        "output_name": out,
        "fitted_on": "held_back",
        "rows": 100,
        "held_out": {
            "before": quality(scores.astype(np.float64), labels),
            "after": quality(np.asarray(after), labels),
        },
    }
    card["onnx"]["sha256"] = hashlib.sha256(graph).hexdigest()
    card["version"] = version or f"{card['version']}-calibrated"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILENAME).write_bytes(graph)
    data = json.dumps(card).encode()
    write_card(folder, parse_card(data, folder / CARD_FILENAME))
    return json.loads((folder / CARD_FILENAME).read_bytes())


def parse_map(card_map: dict[str, Any]) -> Any:
    """The card's map object (``costaware.card.CalibrationMap``) for a map written as JSON."""
    from pydantic import TypeAdapter

    from costaware.card import CalibrationMap

    return TypeAdapter(CalibrationMap).validate_python(card_map)


def graph_outputs(folder: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of ``folder``'s graph for rows ``x``, by name (onnxruntime, float32)."""
    session = ort.InferenceSession(
        (folder / MODEL_FILENAME).read_bytes(), providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"features": x.astype(np.float32)}), strict=True))


# A matrix whose Elkan threshold is 0.5: the calibrated probabilities (well below the
# medical scores) and the raw scores decide many rows differently.
EVEN = {"tp": 0.0, "fp": -100.0, "tn": 0.0, "fn": -100.0}


def model_dir(root: Path, *calibrated: str) -> Path:
    """``root`` with calibrated copies of the shipped ``calibrated`` models and an
    uncalibrated copy of the shipped ``builtin``."""
    for name in calibrated:
        write_calibrated(root / name, name)
    write_uncalibrated(root / "builtin")
    return root
