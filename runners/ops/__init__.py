"""Token-mixing math of the linear architectures, as pure functions on (B, H, T, D) tensors.

Each recurrence comes in three forms that compute the same thing: a naive loop over time
(the reference), a chunk-wise parallel form (training) and a one-token step (decoding).
The mixers in runners/models/ own the parameters and call these.
"""

from runners.ops.lrpe import lrpe
from runners.ops.scalar_decay import (
    chunk_scalar_decay,
    recurrent_scalar_decay,
    step_scalar_decay,
)
from runners.ops.vector_decay import (
    chunk_vector_decay,
    recurrent_vector_decay,
    step_vector_decay,
)

__all__ = [
    "chunk_scalar_decay",
    "chunk_vector_decay",
    "lrpe",
    "recurrent_scalar_decay",
    "recurrent_vector_decay",
    "step_scalar_decay",
    "step_vector_decay",
]
