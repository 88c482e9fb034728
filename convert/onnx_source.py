"""A float ONNX classifier as a conversion source: read and checked (one input, one output, a float image,
a known size), rebuilt as a channels-last Keras model (onnx_graph.py) that every export takes, and run by
onnxruntime as the reference every artifact is measured against (the source model, not the rebuild)."""
from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgelite.backends import output_index
from edgelite.errors import EdgeliteError, one_line
from edgelite.resolve import geometry, producer_facts

log = logging.getLogger(__name__)
SUFFIXES = (".onnx",)
REBUILD_TOLERANCE = 1e-4  # max |probability difference| between the rebuilt Keras model and the source
LOGIT_TOLERANCE = 1e-5  # or, for logit outputs, max |logit difference| / the largest |logit|


@dataclass
class Source:
    """A model from outside Keras: what `pipeline.convert` needs of it."""

    model: object  # the channels-last Keras model every format is exported from
    run: object  # float NHWC batch -> the source model's raw outputs [N, classes] (the reference)
    layout: str  # the source's input layout: "NCHW" or "NHWC"
    carried: dict | None  # preprocessing fields known from where it was made (producer_name)
    world: str | None  # that world's conventions (resolve.WORLDS)
    outputs: str  # "probabilities" or "logits"
    info: dict = field(default_factory=dict)  # recorded as the artifacts' source: producer, the rebuild's check
    path: Path | None = None  # the file given (a module given from Python: its class name + ".module")
    # the same source by other float32 kernels (onnxruntime with no graph optimisations): how far two faithful
    # runs of it already differ is the floor a rebuild is held to (check_rebuild)
    other: object = None


def is_onnx(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def load_onnx(path: Path, output: int | str | None = None, size: tuple[int, int] | None = None) -> Source:
    """Read, check and rebuild `path`; `output` chooses among several outputs, `size` (H, W) fixes a dynamic
    height and width."""
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError, a missing external data file...
        raise EdgeliteError(f"{path}: not an ONNX model ({one_line(exc)})") from None
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise EdgeliteError(f"{path}: expected one image input, the model has {len(inputs)}")
    inp = inputs[0]
    if inp.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise EdgeliteError(f"{path}: the input {inp.name!r} is not float32 (convert takes a float model)")
    names = [o.name for o in graph.output]
    chosen = names[output_index(path.name, names, output)]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    found = geometry(tuple(dims), path.name)
    if found["layout"] == "NHW":
        raise EdgeliteError(f"{path}: input {dims} has no channel axis (expected [N, C, H, W] or [N, H, W, C])")
    layout = found["layout"]
    if found["size"] is None:
        if size is None:
            raise EdgeliteError(f"{path}: the input {inp.name!r} {_dims(dims)} has a dynamic height and width: "
                                "pass --size H W")
        height, width = size
    else:
        height, width = found["size"]
        if size is not None and tuple(size) != (height, width):
            raise EdgeliteError(f"{path}: --size {size[0]} {size[1]} for a model whose input is {height}x{width}")
    channels = found["channels"]
    fixed = (1, channels, height, width) if layout == "NCHW" else (1, height, width, channels)
    if dims[0] not in (None, 1):
        raise EdgeliteError(f"{path}: the input's batch is fixed at {dims[0]} (expected 1 or dynamic)")

    optimised = _optimised(model, inp.name, fixed, chosen, path)
    from .onnx_graph import Rebuild

    rebuild = Rebuild(optimised, layout, _keras_name(path))
    keras_model = rebuild.build(inp.name, (height, width, channels), chosen)
    runner = _runner(path, inp.name, chosen, layout, dims[0] is None)
    other = _runner(path, inp.name, chosen, layout, dims[0] is None, optimised=False)
    carried, world = producer_facts(model.producer_name)
    last = _producer_of(optimised.graph, chosen)
    outputs = "probabilities" if last in ("Softmax", "Sigmoid") else "logits"
    info = {"producer": f"{model.producer_name} {model.producer_version}".strip(), "layout": layout,
            "output": chosen}
    return Source(keras_model, runner, layout, carried, world, outputs, info, path, other)


def check_rebuild(source: Source, images: np.ndarray, name: str) -> float:
    """The rebuilt Keras model against the source on real images (float NHWC): its largest probability
    difference, refused when the rebuild is not faithful (a wrong rebuild must not be exported). Faithful: within
    the bars (REBUILD_TOLERANCE, LOGIT_TOLERANCE), or within twice what two float32 runs of the source itself
    differ by on these images (`Source.other`): onnxruntime's fully optimised kernels (NCHWc convolutions,
    fused SiLU) differ from its plain ones by 9e-5 of the logits' scale on a random EfficientNet-B0, as much as
    the rebuild differs from either, while a wrong rebuild is off by orders of magnitude more."""
    probabilities = source.outputs == "probabilities"
    theirs = source.run(images)
    ours = np.asarray(source.model.predict(images, batch_size=32, verbose=0))
    diff, relative = rebuild_error(ours, theirs, probabilities)
    bars = REBUILD_TOLERANCE, LOGIT_TOLERANCE
    if diff > bars[0] and relative > bars[1] and source.other is not None:
        floor = rebuild_error(np.asarray(source.other(images)), theirs, probabilities)
        source.info["rebuild_floor"] = {"max_abs_diff": floor[0], "logit_relative_diff": floor[1]}
        bars = max(bars[0], 2 * floor[0]), max(bars[1], 2 * floor[1])
    if diff > bars[0] and relative > bars[1]:
        raise EdgeliteError(f"{name}: the rebuilt channels-last model differs from the source by {diff:.2e} in "
                            f"probability (above {bars[0]:.2g}) and by {relative:.2e} of the logits' scale "
                            f"(above {bars[1]:.2g}), beyond what float32 rounding moves the source itself: a fault "
                            f"in {__name__}; please report it with the model")
    source.info["rebuild_max_abs_diff"] = diff
    source.info["rebuild_logit_relative_diff"] = relative
    return diff


def rebuild_error(ours: np.ndarray, theirs: np.ndarray, probabilities: bool) -> tuple[float, float]:
    """The rebuild's largest probability difference, and (logit outputs) its largest logit difference relative to
    the logits' own scale. A network with large logits (a random or over-confident one: |logits| in the hundreds)
    turns float32 rounding (TensorFlow's and onnxruntime's kernels sum in different orders) into probability
    differences above REBUILD_TOLERANCE while its logits agree to a few 1e-6 of their scale; a wrong rebuild
    is off by far more than that in both. For probability outputs both figures are the probability difference."""
    from edgelite.classifier import scores_from_output

    diff = float(np.max(np.abs(scores_from_output(ours, probabilities=probabilities)
                                - scores_from_output(theirs, probabilities=probabilities))))
    if probabilities:
        return diff, diff
    scale = max(1.0, float(np.max(np.abs(theirs))))
    return diff, float(np.max(np.abs(ours.astype(np.float64) - theirs)) / scale)


def _optimised(model, input_name: str, shape: tuple, output: str, path: Path):
    """The model with its input fixed to `shape`, one output, and onnxruntime's basic graph optimisations
    (constants folded, shape arithmetic evaluated, BatchNormalization folded into the Conv before it)."""
    import onnx
    import onnxruntime as ort

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    graph = fixed.graph
    for value in graph.input:
        if value.name == input_name:
            for dim, n in zip(value.type.tensor_type.shape.dim, shape):
                dim.Clear()
                dim.dim_value = n
    keep = [o for o in graph.output if o.name == output]
    del graph.output[:]
    graph.output.extend(keep)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(tmp) / "basic.onnx")
        try:
            ort.InferenceSession(fixed.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EdgeliteError(f"{path}: onnxruntime cannot load it ({one_line(exc)})") from None
        return onnx.load(options.optimized_model_filepath)


def _runner(path: Path, input_name: str, output: str, layout: str, batched: bool, optimised: bool = True):
    """float NHWC images -> the source model's outputs, by onnxruntime on the file as given: with its default graph
    optimisations (the session made now), or with none (made at the first call: only a check that needs it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimised:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sessions = []

    def session():
        if not sessions:
            sessions.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
        return sessions[0]

    def run(images: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2) if layout == "NCHW" else images, np.float32)
        step = 32 if batched else 1
        out = [session().run([output], {input_name: x[i:i + step]})[0] for i in range(0, len(x), step)]
        return np.concatenate(out).reshape(len(x), -1)

    if optimised:
        session()
    return run


def _producer_of(graph, name: str) -> str | None:
    for node in graph.node:
        if name in node.output:
            return node.op_type
    return None


def _keras_name(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "_-" else "_" for c in path.stem)
    return stem or "model"


def _dims(dims: list) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
