"""`torch.nn.parallel.DistributedDataParallel` over minitransformer.distributed (MPI).

    model = DistributedDataParallel(model)      # after init_process_group; rank 0's weights everywhere
    logits, loss = model(x, y)                  # the wrapped module's forward
    loss.backward()                             # ... then the gradients are averaged over the ranks

How the averaging is placed after backward: when gradients are to be synchronised, forward passes each
output tensor through an identity node (`_GradSyncPoint`). Backward reaches that node before any parameter
of the module gets its gradient; the node queues one callback with the autograd engine
(`autograd.queue_callback`), which runs when the whole backward pass has finished, and the callback
replaces every parameter's gradient by its mean over the ranks with one flat all-reduce (the one `loop.fit`
uses, `World.allreduce_mean_grads`). Clipping and the optimizer step that follow see the averaged
gradients, as in torch.

Gradient accumulation: whether a backward synchronises is decided at forward time, as in torch. Inside
`no_sync()`, or with `require_backward_grad_sync = False`, forward adds no sync point, so backward only
accumulates into the local `.grad`; the next synchronised backward averages the accumulated sums.

Not here: buckets and overlap of communication with backward (one all-reduce after it instead), process
groups, `static_graph` and communication hooks. find_unused_parameters is accepted and not needed: a
parameter without a gradient on some ranks gets the others' gradients averaged with zeros, and one without
a gradient on every rank keeps None, as torch does with find_unused_parameters=True.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .. import distributed
from ..autograd import Function, is_grad_enabled, queue_callback
from ..tensor import Tensor
from .module import Module


class _GradSyncPoint(Function):
    """Identity on an output of a DistributedDataParallel forward; its backward queues the gradient
    all-reduce for the end of the backward pass (once per pass, however many outputs the loss used)."""

    saves_inputs = ()
    is_view = True

    def forward(self, x: Any, ddp: DistributedDataParallel) -> Any:
        self.ddp = ddp
        return x

    def backward(self, dout: Any) -> tuple[Any]:
        self.ddp._queue_sync()
        return (dout,)


def _map_tensors(out: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """`out` with fn applied to every Tensor in it (through tuples, lists and dicts)."""
    if isinstance(out, Tensor):
        return fn(out)
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # a namedtuple
        return type(out)(*(_map_tensors(o, fn) for o in out))
    if isinstance(out, (tuple, list)):
        return type(out)(_map_tensors(o, fn) for o in out)
    if isinstance(out, dict):
        return type(out)((k, _map_tensors(v, fn)) for k, v in out.items())
    return out


class DistributedDataParallel(Module):
    """Data parallelism with torch's interface: wrap the model after `init_process_group`.

    module                the model; reach it as `.module` (state_dict keys carry a `module.` prefix)
    init_sync             copy rank 0's parameters and buffers to every rank now (default True)
    broadcast_buffers     copy rank 0's buffers to every rank at each synchronised forward (default True)
    find_unused_parameters, device_ids, output_device, dim, bucket_cap_mb, gradient_as_bucket_view,
    static_graph, ...     accepted for torch's scripts; nothing to do here (see the module doc)

    With one process every synchronisation is the identity, so a script runs unchanged without a launcher.
    """

    def __init__(self, module: Module, device_ids: Any = None, output_device: Any = None, dim: int = 0,
                 broadcast_buffers: bool = True, init_sync: bool = True, process_group: Any = None,
                 bucket_cap_mb: Any = None, find_unused_parameters: bool = False, check_reduction: bool = False,
                 gradient_as_bucket_view: bool = False, static_graph: bool = False, **kwargs: Any) -> None:
        super().__init__()
        if process_group is not None:
            raise NotImplementedError("DistributedDataParallel: only the default process group is supported")
        if not distributed.is_initialized():
            raise ValueError(distributed.NOT_INITIALIZED)
        self._world = distributed.world()
        if not any(p.requires_grad for p in module.parameters()):
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't have any parameter "
                               "that requires a gradient.")
        self.module = module
        self.device_ids, self.output_device, self.dim = device_ids, output_device, dim
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.require_backward_grad_sync = True
        self._sync_queued = False
        if init_sync:  # one starting point: rank 0's parameters and buffers on every rank
            self._world.broadcast_params(list(module.parameters()) + list(module.buffers()))

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        sync = is_grad_enabled() and self.require_backward_grad_sync
        if sync and self.broadcast_buffers:
            self._world.broadcast_params(list(self.module.buffers()))
        out = self.module(*inputs, **kwargs)
        if not sync:
            return out
        self._sync_queued = False  # (left set only by a backward that raised)
        return _map_tensors(out, lambda t: _GradSyncPoint.apply(t, ddp=self) if t.requires_grad else t)

    @contextmanager
    def no_sync(self) -> Iterator[None]:
        """Backward passes of forwards run inside this block accumulate gradients locally, unsynchronised."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    def _queue_sync(self) -> None:
        if not self._sync_queued:
            self._sync_queued = True
            queue_callback(self._sync_gradients)

    def _sync_gradients(self) -> None:
        """Every parameter's gradient -> its mean over the ranks (run once the backward pass is over)."""
        self._sync_queued = False
        params = [p for p in self.module.parameters() if p.requires_grad]
        self._world.allreduce_mean_grads(params, keep_unused=True)


from ..porting import unsupported_attribute as _unsupported  # noqa: E402

__getattr__ = _unsupported(__name__)  # a missing torch name: one error that says so
