"""A traced function with its variables as constants, for a SavedModel without variables.

Saving a fake-quant EfficientDet's 3,000 variables traced save and restore
functions for each and took longer than freezing them; the frozen graph also
loads in half the time. :func:`frozen_function` freezes with the TFLite
converter's own machinery (``convert_to_constants``: read every captured
variable, inline the nested functions, replace the reads with constants) and
then imports the frozen ``GraphDef`` into a new ``tf.function`` with
``tf.graph_util.import_graph_def``; :func:`save_frozen` writes such a function as
a SavedModel's ``serving_default`` (the detector's and the classifier's export).

``convert_variables_to_constants_v2`` would give the same graph, but it rebuilds
the function by pruning the imported graph op by op in Python (``lift_to_graph``:
2.7 of its 3.4 s on the QAT detector); the import here is one C++ call. Control
flow stays functional (``While``, not v1 frames: v1 frames do not import into a
function).

TensorFlow's freezing helpers are not public API: if they move, this fails
loudly (tests/model_maker/core/test_frozen_graph.py), never silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

__all__ = ["frozen_function", "save_frozen"]

#: Name scope of the imported (frozen) ops inside the new function.
IMPORT_SCOPE = "frozen"


def frozen_function(function: Any, signature: tf.TensorSpec) -> Any:
    """A concrete function computing ``function`` with its variables as constants.

    Args:
      function: a ``ConcreteFunction`` of one tensor input that may capture variables.
      signature: its input's spec (the new function's input signature).

    Returns:
      A ``ConcreteFunction`` with ``function``'s structured outputs that captures
      no variables.

    Raises:
      ValueError: ``function`` takes more than one non-captured input.
    """
    data = convert_to_constants._FunctionConverterDataInEager(  # noqa: SLF001  see module doc
        func=function, lower_control_flow=False, aggressive_inlining=False
    )
    graph_def, converted = convert_to_constants._replace_variables_by_constants(  # noqa: SLF001
        converter_data=data
    )
    captures = function.graph.internal_captures
    constant_ids = {id(captures[index]) for index in converted}
    inputs = [t.name for t in function.inputs if id(t) not in constant_ids]
    if len(inputs) != 1:
        raise ValueError(f"frozen_function takes functions of one input, got {inputs}")
    outputs = [t.name for t in function.outputs]
    structure = function.structured_outputs

    def call(tensor):
        results = tf.graph_util.import_graph_def(
            graph_def, input_map={inputs[0]: tensor}, return_elements=outputs, name=IMPORT_SCOPE
        )
        return tf.nest.pack_sequence_as(structure, results)

    return tf.function(call, input_signature=[signature], autograph=False).get_concrete_function()


def save_frozen(serve: Callable[[Any], Any], signature: tf.TensorSpec, directory: str) -> str:
    """Trace ``serve`` (one tensor of ``signature`` in, without AutoGraph), freeze it
    (:func:`frozen_function`) and save it as ``directory``'s ``serving_default``.

    Traced here, not inside ``tf.saved_model.save``: a trace made in the save
    context cannot reuse a model's earlier trace (the context is part of the
    tracing cache key), and would trace the whole model again.
    """
    traced = tf.function(serve, input_signature=[signature], autograph=False)
    module = tf.Module()
    module.serve = frozen_function(traced.get_concrete_function(), signature)
    tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})
    return directory
