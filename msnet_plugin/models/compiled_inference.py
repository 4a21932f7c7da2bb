"""MotionSqueeze's inference as one opaque op inside ``torch.compile``.

Traced by ``torch.compile``, MotionSqueeze's layers become a dozen kernels
that inductor generates and builds from a cold cache (its batch norms, the
normalisation, the window's max, the transformation's stages), and that run
slower than the module's tuned eager kernels. In inference (no autograd,
eval mode) MotionSqueeze instead calls ``msnet::motion_squeeze_inference``:
a ``torch.library`` custom op whose implementation is the module's own
eager forward, over the module's parameters and buffers passed in as
tensors (``torch.func.functional_call`` on a module built from the same
constructor arguments through the registry, kept per arguments). Inductor
calls it as an external kernel and generates nothing for it; the graph
stays whole (one node, no graph break). Its fake implementation gives the
output's shape: that of the input.

Where autograd runs, torch.compile traces the layers (the kernels as the
ops of :mod:`.kernel_ops`): this op has no autograd formula. Exporters
(``torch.export``, the ONNX exporters, ``torch.jit.trace``) trace the
layers too, so that an exported graph keeps standard operators.
"""
import json
import threading
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
from mmaction.registry import MODELS

from .kernel_ops import NAMESPACE
from .tracing import is_compiling_not_exporting

#: One module per set of constructor arguments (JSON), to run the op's
#: tensors through, and the names of its tensors in :func:`state_tensors`'
#: order.
_templates: Dict[str, Tuple[nn.Module, List[str]]] = {}
#: functional_call swaps the op's tensors into a shared module: one call at
#: a time (threads serving two models of one configuration).
_template_lock = threading.Lock()


def runs_as_one_op(module: nn.Module) -> bool:
    """True while ``torch.compile`` (not an exporter) traces ``module`` in
    inference: eval mode and no autograd."""
    return (is_compiling_not_exporting() and not module.training
            and not torch.is_grad_enabled())


def state_tensors(module: nn.Module) -> List[torch.Tensor]:
    """The module's parameters, then its buffers, in registration order."""
    return [*module.parameters(), *module.buffers()]


def _template(arguments: str) -> Tuple[nn.Module, List[str]]:
    """The module the op's tensors run through, built on the meta device
    (no memory, and no draw from the user's random generator: the op's
    tensors replace all of its own), and its tensors' names."""
    if arguments not in _templates:
        with torch.device('meta'):
            template = MODELS.build(
                dict(type='MotionSqueeze', **json.loads(arguments))).eval()
        names = [name for name, _ in template.named_parameters()] + \
            [name for name, _ in template.named_buffers()]
        _templates[arguments] = template, names
    return _templates[arguments]


@torch.library.custom_op(f'{NAMESPACE}::motion_squeeze_inference',
                         mutates_args=())
def motion_squeeze_inference(x: torch.Tensor, state: List[torch.Tensor],
                             arguments: str) -> torch.Tensor:
    """MotionSqueeze(**json.loads(arguments)).eval() with ``state``
    (:func:`state_tensors`' order) on (N*T, C, H, W) ``x``: (N*T, C, H, W),
    x plus the motion features, computed eagerly, contiguous."""
    with _template_lock, torch.no_grad():
        template, names = _template(arguments)
        return torch.func.functional_call(template, dict(zip(names, state)),
                                          (x, )).contiguous()


@motion_squeeze_inference.register_fake
def _(x: torch.Tensor, state: List[torch.Tensor],
      arguments: str) -> torch.Tensor:
    return x.new_empty(x.shape)
