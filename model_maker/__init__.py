"""The ML library, usable without TFX (a notebook can import it directly).

TFMOT and the TFLite converter need Keras 2 (tf-keras). TensorFlow picks its
Keras when it is first imported, so the one environment default the library
needs is set here, before any submodule imports TensorFlow. Code in this
package imports ``tf_keras`` directly and never relies on ``tf.keras``.
"""

import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
