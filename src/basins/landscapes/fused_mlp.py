"""Loss and gradient of every member's MLP in one hand-derived pass, without autograd.

The same function as :func:`basins.landscapes.objective.member_losses` (the mean sample loss of
:func:`basins.landscapes.losses.sample_losses` plus ``l2 / 2 |theta|^2``) and its gradient, for
every architecture, loss and activation of :mod:`basins.landscapes.architecture` and
:mod:`basins.landscapes.losses`. Autograd records and replays about 290 operator calls per step
of a tiny network (d = 8, h = 4, P = 60), whose dispatch is most of an evaluation there (2.2 ms
against 0.75 ms written out by hand, 256 members, one thread); the backward pass written out is
about 20 calls, each a GEMM or one element-wise kernel.

Activations are kept in the (member, unit, sample) layout: every reduction (over samples, for
the loss and the bias gradients) then runs along contiguous memory, the first layer is one GEMM
over all members' units (inputs shared; the bias added by the GEMM itself), and deeper layers are
batched GEMMs (on the CPU, broadcast multiply-sums where a layer has a few units). Each layer's
gradient is written straight into its columns of the result. On a GPU, below a layer of one
unit (the output of a one-output network) the backward pass never forms the (member, unit,
sample) outer product of that unit's weights with its delta: the activation's derivative
multiplies the delta directly (broadcast) and the weights scale the small results (weight and
bias gradients, the next layer's weights), two passes over the activations fewer.
Activation-sized temporaries come from a :class:`Workspace` reused between calls. The
transcendental functions are most of an evaluation's time at the study's shapes, so each is
computed once: tanh as 2 sigmoid(2 z) - 1 on the CPU (ATen's float64 tanh costs 2-3x a sigmoid
there), the logistic loss and its derivative from one sigmoid. Results agree with autograd to round-off (tests/test_fused_mlp.py: 1e-10 relative,
float64; measured: 4e-16 absolute).
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch

from basins.engine.block_low_rank import BlockLowRankHessians
from basins.landscapes import native_mlp
from basins.landscapes.losses import check_loss
from basins.landscapes.architecture import Architecture

_aten = torch.ops.aten


class FusedMLPObjective:
    """``objective(theta, batch) -> (loss (member,), grad (member, param))`` of ``arch`` on ``(x, y)``.

    ``x`` is ``(sample, feature)``; ``y`` is ``(sample,)``: +-1 in x's dtype for one output, class
    indices (long) for several. ``batch`` is ``None`` (all samples) or ``(member, batch_size)``
    sample indices, one minibatch per member; the loss is the mean over the samples used.
    Constants of the data (labels turned into the loss's factors, one-hot targets) are made once
    here, not at every evaluation. Full-batch evaluations of the networks the C kernel covers
    (:func:`basins.landscapes.native_mlp.covers`: the study's one-output networks with hidden
    layers, in float64 or float32 on the CPU) run in it.
    """

    def __init__(self, arch: Architecture, x, y, *, loss: str, margin: float = 1.0, l2: float = 0.0, beta=1.0):
        check_loss(loss)
        if isinstance(beta, (int, float)) and beta <= 0:
            raise ValueError(f"beta={beta}: the inverse temperature must be positive")
        self.arch, self.x, self.y = arch, x, y
        self.loss, self.margin, self.l2, self.beta = loss, margin, l2, beta
        self.shared = LabelFactors(arch, y, loss, beta, x.dtype)
        self.workspace = Workspace()
        self.native = native_mlp.kernel_for(arch, x, y, loss=loss, margin=margin, l2=l2, beta=beta)

    @property
    def capture_safe(self) -> bool:
        """True where a full-batch evaluation runs on the device alone (the torch pass; the C
        kernel is the CPU's), so the engine may capture it (:mod:`basins.engine.windows`)."""
        return self.native is None

    def compiled_steps(self, stepper, *, grad_tol: float, divergence_threshold: float, satisfied=None):
        """The engine's steps of ``stepper`` as a loop in the C kernel (gd with a constant step
        size, Adam, Dormand-Prince gradient flow: :meth:`basins.landscapes.native_mlp.NativeMLP.compiled_steps`),
        or None where the kernel does not cover this network or that stepper, or an extra
        stopping test ``satisfied`` applies (the jamming sweep's objective has its own)."""
        form = getattr(stepper, "compiled_form", lambda: None)()
        if self.native is None or form is None or satisfied is not None:
            return None
        return self.native.compiled_steps(form, grad_tol=grad_tol, divergence_threshold=divergence_threshold)

    def threads_held(self):
        """While the engine's windows run in the C kernel's loop: torch's own operations on one
        thread, the kernel's on the threads torch had (:func:`basins.landscapes.native_mlp.threads_held`);
        nothing where the kernel does not run this objective."""
        return contextlib.nullcontext() if self.native is None else native_mlp.threads_held()

    @property
    def chebyshev_stages(self):
        """A Runge-Kutta-Chebyshev step's stages in the C kernel
        (:meth:`basins.landscapes.native_mlp.NativeMLP.chebyshev_stages`), or None where the
        kernel does not cover this network or runs it in float32."""
        return None if self.native is None or self.native.dtype != torch.float64 else self.native.chebyshev_stages

    @property
    def hessians(self):
        """``theta -> (member, param, param)``: the dense Hessians on all samples (:func:`hessians`;
        in the C kernel where it covers them, float64 networks of one hidden layer on the CPU: the
        same sum to round-off, 4.5-6.7x faster at N = 41: benchmarks/README.md), or None where they are not
        written out (:func:`has_hand_derived_hessian`)."""
        if self.native is not None and self.native.covers_hessians:
            return self.native.hessians
        return self._on_all_samples(hessians)

    @property
    def block_low_rank_hessians(self):
        """``theta ->`` :class:`basins.engine.block_low_rank.BlockLowRankHessians`: the same
        Hessians as blocks plus low rank (:func:`block_low_rank_hessians`), or None."""
        return self._on_all_samples(block_low_rank_hessians)

    def _on_all_samples(self, function):
        if not has_hand_derived_hessian(self.arch):
            return None
        return functools.partial(
            function, x=self.x, y=self.y, arch=self.arch, loss=self.loss, margin=self.margin, l2=self.l2,
            beta=self.beta,
        )

    def __call__(self, theta: torch.Tensor, batch: torch.Tensor | None = None):
        if batch is None and self.native is not None:
            return self.native(theta)
        if batch is None:
            return loss_and_gradient(
                theta, self.x, self.arch, self.shared, margin=self.margin, l2=self.l2, workspace=self.workspace
            )
        labels = LabelFactors(self.arch, self.y[batch], self.loss, self.beta, self.x.dtype)
        return loss_and_gradient(
            theta, self.x[batch], self.arch, labels, margin=self.margin, l2=self.l2, workspace=self.workspace
        )


class LabelFactors:
    """Labels ``(sample,)`` or ``(member, sample)`` as the loss's backward pass uses them.

    The loss is the mean over samples, or, where ``sample_weights (member, sample)`` is given,
    each member's weighted sum (rows summing to one, zero for samples outside a member's
    training set: :class:`basins.jamming.PrefixObjective`'s nested training sets).
    """

    def __init__(self, arch, y, loss, beta, dtype, sample_weights=None):
        self.loss, self.beta, self.n_samples = loss, beta, y.shape[-1]
        self.sample_weights = sample_weights
        if arch.n_outputs == 1:
            self.y = y  # +-1
            # d loss / d output of the mean over samples, up to the loss's own factor:
            # mse (f - y) / n; hinges and cross-entropy -y / n times their derivative in the margin.
            self.minus_y_over_n = self.per_sample(-y)
            self.minus_beta_y = -beta * y
        else:
            classes = torch.arange(arch.n_outputs, device=y.device)
            self.index = y.unsqueeze(-2)  # (..., 1, sample)
            self.is_true = classes[:, None] == self.index  # (..., class, sample)
            self.one_hot = self.is_true.to(dtype)

    def per_sample(self, values):
        """``values (..., sample)`` times each sample's weight in the mean: 1 / n, or its weight."""
        if self.sample_weights is None:
            return values / self.n_samples
        weights = self.sample_weights if values.dim() < 3 else self.sample_weights.unsqueeze(-2)
        return values * weights

    def mean(self, sample_loss):
        """The mean ``(member,)`` of ``sample_loss (member, sample)`` over each member's samples."""
        if self.sample_weights is None:
            return sample_loss.mean(-1)
        return (sample_loss * self.sample_weights).sum(-1)


def loss_and_gradient(theta, x, arch, labels, *, margin, l2, workspace=None, scale_below_one_unit=None):
    """Losses ``(member,)`` and gradients ``(member, param)``; see :class:`FusedMLPObjective`.

    ``x`` is ``(sample, feature)``, shared by all members, or ``(member, sample, feature)``.
    Activation-sized temporaries are taken from ``workspace`` (a :class:`Workspace`, reused
    between calls) rather than allocated afresh. ``scale_below_one_unit``: below a layer of one
    unit, keep the activation's derivative times that unit's delta and scale the small results
    by its weights instead of forming their outer product (module docstring); None: on a GPU,
    where the passes it saves are the step's time (on the CPU it gains 0-7 % and would move
    results by round-off, which the jamming sweep's marginal runs feel: session 36).
    """
    if scale_below_one_unit is None:
        scale_below_one_unit = theta.device.type != "cpu"
    workspace = Workspace() if workspace is None else workspace
    n_members = theta.shape[0]
    n_layers = len(arch.layer_shapes)
    weights, biases = [], []
    for (fan_in, fan_out), (w_slice, b_slice) in zip(arch.layer_shapes, arch.layer_slices):
        weights.append(theta[:, w_slice].view(n_members, fan_out, fan_in))
        biases.append(None if b_slice is None else theta[:, b_slice])
    # Forward: inputs of every layer, (member, unit, sample); pre-activations where erf needs them.
    inputs, pre_activations = [x if x.dim() == 2 else x.transpose(1, 2)], []
    for layer in range(n_layers):
        hidden = layer < n_layers - 1
        # Where tanh is 2 sigmoid(2 z) - 1 (_activate), the layer makes 2 z at once.
        scale = 2.0 if hidden and arch.activation == "tanh" and _tanh_by_sigmoid(theta.device) else 1.0
        pre = _affine(weights[layer], biases[layer], inputs[-1], workspace, layer, scale)
        if not hidden:
            output = pre
        else:
            pre_activations.append(pre)
            inputs.append(_activate(pre, arch.activation, workspace, layer))
    sample_loss, delta = _loss_head(output, labels, margin, theta.dtype)
    losses = labels.mean(sample_loss)
    # Backward, output layer to first: delta is d loss / d pre-activation, (member, unit, sample).
    # Each layer's gradients are written into their columns of one (member, param) tensor: a
    # fresh one, as callers keep gradients of several evaluations (the stages of a step).
    grad = torch.empty_like(theta)
    # The true d loss / d pre-activation is ``unit_scale * delta`` (unit_scale (member, unit, 1),
    # None: 1): below a layer of one unit, w_h delta_p f'(z_hp) is kept as f'(z_hp) delta_p with
    # the factor w_h applied to the small results, so the (member, unit, sample) outer product
    # w_h delta_p is never written (two passes over the activations fewer).
    unit_scale = None
    for layer in reversed(range(n_layers)):
        source = inputs[layer]
        w_slice, b_slice = arch.layer_slices[layer]
        weight_grad = grad[:, w_slice].view(weights[layer].shape)
        if source.dim() == 2:  # the shared inputs: one GEMM over all members' units
            _shared_input_weight_gradient(delta, source, weight_grad, workspace)
        else:
            _member_weight_gradient(delta, source, weight_grad, workspace)
        if unit_scale is not None:
            weight_grad.mul_(unit_scale)
        if b_slice is not None:
            torch.sum(delta, -1, out=grad[:, b_slice])
            if unit_scale is not None:
                grad[:, b_slice].mul_(unit_scale[..., 0])
        if layer:
            weight = weights[layer] if unit_scale is None else weights[layer] * unit_scale
            pre = pre_activations[layer - 1]
            if scale_below_one_unit and weight.shape[1] == 1 and arch.activation != "linear":
                back = workspace.take(("back", layer), source.shape, source)
                delta = _activation_backward(delta, source, pre, arch.activation, out=back)
                unit_scale = weight.transpose(1, 2)
            else:
                back = _input_gradient(weight, delta, workspace, layer)
                delta = _activation_backward(back, source, pre, arch.activation)
                unit_scale = None
    if l2:
        losses = losses + 0.5 * l2 * (theta * theta).sum(-1)
        grad = grad.add_(theta, alpha=l2)
    return losses, grad


class Workspace:
    """Named scratch buffers, grown as needed and handed out as contiguous views.

    Fresh activation-sized tensors at every evaluation are what the allocator maps and the
    kernels page-fault into; one buffer per role, reused, keeps them mapped and in cache.
    """

    def __init__(self):
        self.buffers = {}

    def take(self, name, shape, like: torch.Tensor) -> torch.Tensor:
        size = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.numel() < size or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self.buffers[name] = torch.empty(size, dtype=like.dtype, device=like.device)
        return buffer[:size].view(shape)


def _affine(weight, bias, source, workspace, layer, scale=1.0):
    """``scale (weight @ source + bias)`` per member, (member, fan_out, sample)."""
    n_members, fan_out, fan_in = weight.shape
    n_samples = source.shape[-1] if source.dim() == 3 else source.shape[0]
    pre = workspace.take(("pre", layer), (n_members, fan_out, n_samples), weight)
    if source.dim() == 2:  # shared inputs (sample, feature): one GEMM for all members' units
        flat = pre.view(n_members * fan_out, -1)
        if bias is None:
            torch.mm(weight.reshape(n_members * fan_out, fan_in), source.T, out=flat)
            return pre if scale == 1.0 else pre.mul_(scale)
        # The bias enters as the GEMM's added term (one pass over the output, not two).
        torch.addmm(bias.reshape(-1, 1), weight.reshape(n_members * fan_out, fan_in), source.T,
                    beta=scale, alpha=scale, out=flat)
        return pre
    if fan_out <= _NARROW and fan_in <= _NARROW and source.device.type == "cpu":
        # A broadcast multiply-sum: on the CPU a batched GEMM of a few rows costs 2-3x more.
        product = workspace.take("product", (n_members, fan_out, fan_in, n_samples), weight)
        torch.sum(torch.mul(weight.unsqueeze(-1), source.unsqueeze(1), out=product), 2, out=pre)
    else:
        torch.bmm(weight, source, out=pre)
    if bias is not None:
        pre.add_(bias.unsqueeze(-1))
    return pre if scale == 1.0 else pre.mul_(scale)


def _member_weight_gradient(delta, source, out, workspace):
    """``delta @ source^T`` per member into ``out`` (member, fan_out, fan_in), from a hidden
    layer's inputs ``source`` (member, fan_in, sample)."""
    n_members, fan_out, fan_in = out.shape
    if fan_out <= _NARROW and fan_in <= _NARROW and delta.device.type == "cpu":
        # Sums along the contiguous samples; a batched GEMM of a few rows costs 2-3x more.
        product = workspace.take("product", (n_members, fan_out, fan_in, delta.shape[-1]), delta)
        torch.mul(delta.unsqueeze(2), source.unsqueeze(1), out=product)
        torch.sum(product, -1, out=out)
    else:
        products = workspace.take("weight_grad", out.shape, delta)
        out.copy_(torch.bmm(delta, source.transpose(1, 2), out=products))


def _shared_input_weight_gradient(delta, source, out, workspace):
    """``delta @ source`` per member into ``out`` (member, fan_out, fan_in): the first layer's
    weight gradient, from the inputs (sample, feature) all members share.

    Computed as ``source^T @ delta^T``, (feature, member unit): a GEMM whose long dimension is
    the output's columns; the other orientation (long rows, 8-60 columns) ran 2-4x slower in
    MKL on an AMD EPYC (benchmarks/README.md).
    """
    n_members, fan_out, fan_in = out.shape
    flat = workspace.take("weight_grad_t", (fan_in, n_members * fan_out), delta)
    torch.mm(source.T, delta.reshape(n_members * fan_out, -1).T, out=flat)
    out.copy_(flat.T.view(n_members, fan_out, fan_in))


def _input_gradient(weight, delta, workspace, layer):
    """``weight^T @ delta`` per member: the gradient at a layer's inputs, (member, fan_in, sample)."""
    n_members, fan_out, fan_in = weight.shape
    back = workspace.take(("back", layer), (n_members, fan_in, delta.shape[-1]), weight)
    if fan_out == 1:  # an outer product per member
        return torch.mul(weight.transpose(1, 2), delta, out=back)
    if fan_out <= _NARROW and fan_in <= _NARROW and delta.device.type == "cpu":
        product = workspace.take("product", (n_members, fan_out, fan_in, delta.shape[-1]), weight)
        return torch.sum(torch.mul(weight.unsqueeze(-1), delta.unsqueeze(2), out=product), 1, out=back)
    return torch.bmm(weight.transpose(1, 2), delta, out=back)


def _activate(pre, activation, workspace, layer):
    """The activation of ``pre``; for tanh on the CPU, ``pre`` holds twice the pre-activation
    (_affine's ``scale``) and tanh z = 2 sigmoid(2 z) - 1, 2-3x faster than ATen's tanh in
    float64 there and within 4e-16 of it (the absolute error of the sigmoid; |tanh| <= 1 still
    holds); on a GPU ATen's tanh, one pass over the activations instead of two."""
    if activation == "linear":
        return pre
    hidden = workspace.take(("hidden", layer), pre.shape, pre)
    if activation == "tanh" and _tanh_by_sigmoid(pre.device):
        return torch.add(_minus_one(pre), torch.sigmoid(pre, out=hidden), alpha=2, out=hidden)
    if activation == "tanh":  # one kernel: the pass is memory-bound
        return torch.tanh(pre, out=hidden)
    if activation == "relu":
        return torch.clamp_min(pre, 0, out=hidden)
    return torch.erf(pre, out=hidden)


def _tanh_by_sigmoid(device: torch.device) -> bool:
    """Whether tanh is computed as 2 sigmoid(2 z) - 1 (on the CPU; :func:`_activate`), so that
    the layer before it makes 2 z."""
    return device.type == "cpu"


def _minus_one(like):
    return _constant(-1.0, like.dtype, like.device)


@functools.cache
def _constant(value, dtype, device):
    """A device scalar made once: making it at each evaluation copies it from the host, which a
    captured step cannot do."""
    return torch.tensor(value, dtype=dtype, device=device)


def _activation_backward(grad, output, pre, activation, out=None):
    """d loss / d pre-activation, written into ``out`` (a workspace buffer of ``output``'s shape,
    where ``grad`` broadcasts to it), else over ``grad``."""
    out = grad if out is None else out
    if activation == "tanh":
        return _aten.tanh_backward.grad_input(grad, output, grad_input=out)
    if activation == "relu":
        return _aten.threshold_backward.grad_input(grad, output, 0, grad_input=out)
    if activation == "erf":
        return torch.mul(grad, torch.exp(-pre * pre).mul_(2 / math.sqrt(math.pi)), out=out)
    return grad


# Layers up to this many units are multiplied as broadcast multiply-sums on the CPU.
_NARROW = 4


def _loss_head(output, labels, margin, dtype):
    """Per-sample losses ``(member, sample)`` and d mean-loss / d output ``(member, output, sample)``."""
    loss, beta = labels.loss, labels.beta
    if output.shape[1] == 1:
        f = output[:, 0]
        if loss == "mse":
            residual = f - labels.y
            return 0.5 * residual**2, labels.per_sample(residual).unsqueeze(1)
        if loss == "cross_entropy":
            # softplus(z) / beta with z = -beta y f; its derivative in f is -y sigmoid(z) (beta
            # cancels). One sigmoid serves both: softplus(z) = relu(z) - log sigmoid(|z|), and
            # sigmoid(|z|) = max(s, 1 - s) lies in [1/2, 1], so the log is exact to round-off.
            z = labels.minus_beta_y * f
            s = torch.sigmoid(z)
            sample_loss = torch.relu(z).sub_(torch.log(torch.maximum(s, 1 - s)))
            delta = s.mul_(labels.minus_y_over_n)
            return (sample_loss if beta == 1 else sample_loss.div_(beta)), delta.unsqueeze(1)
        shortfall = margin - labels.y * f
        if loss == "hinge":
            delta = _aten.threshold_backward(labels.minus_y_over_n.expand_as(shortfall), shortfall, 0)
            return torch.relu(shortfall), delta.unsqueeze(1)
        active = torch.relu(shortfall)
        return 0.5 * active**2, (active * labels.minus_y_over_n).unsqueeze(1)
    # Several outputs, (member, class, sample); labels are class indices.
    one_hot = labels.one_hot
    if loss == "mse":
        residual = output - one_hot
        return 0.5 * (residual**2).sum(1), labels.per_sample(residual)
    if loss == "cross_entropy":
        scaled = beta * output
        true = scaled.gather(1, labels.index.expand(output.shape[0], 1, -1))[:, 0]
        sample_loss = (torch.logsumexp(scaled, 1) - true) / beta
        return sample_loss, labels.per_sample(torch.softmax(scaled, 1) - one_hot)
    # Crammer-Singer margin: the true output minus the largest other; autograd splits the
    # gradient of a max evenly between tied outputs, and so does this.
    true = output.gather(1, labels.index.expand(output.shape[0], 1, -1))
    others = output.masked_fill(labels.is_true, float("-inf"))
    largest = others.amax(1, keepdim=True)
    tied = (others == largest).to(dtype)
    shortfall = (margin - (true - largest))[:, 0]
    if loss == "hinge":
        sample_loss = torch.relu(shortfall)
        slope = -(shortfall > 0).to(dtype)
    else:
        active = torch.relu(shortfall)
        sample_loss, slope = 0.5 * active**2, -active
    delta = labels.per_sample(slope).unsqueeze(1) * (one_hot - tied / tied.sum(1, keepdim=True))
    return sample_loss, delta


def has_hand_derived_hessian(arch: Architecture) -> bool:
    """:func:`hessians` covers networks with one output and at most one hidden layer."""
    return arch.n_outputs == 1 and arch.depth <= 1


def hessians(theta, x, y, arch, *, loss, margin=1.0, l2=0.0, beta=1.0):
    """Dense Hessians ``(member, param, param)`` of the mean sample loss plus ``l2 / 2 |theta|^2``
    (:func:`basins.landscapes.objective.member_losses`), written out for the networks of
    :func:`has_hand_derived_hessian`.

    With ``f`` the output on a sample, ``l'`` and ``l''`` the loss's derivatives in ``f``:
    ``H = mean_s (l'' J_s J_s^T + l' d^2 f_s) + l2 I``. The Gauss-Newton part is one batched
    GEMM over the Jacobian ``J (member, sample, param)``; ``d^2 f`` couples only the incoming
    weights and bias of a hidden unit with each other (through the activation's second
    derivative) and with that unit's outgoing weight. Autograd's double backward costs one
    Hessian-vector product per parameter; this costs about two of them in all (and agrees with
    autograd to round-off: tests/test_fused_mlp.py).
    """
    jacobian, curvature, unit_terms = _hessian_terms(theta, x, y, arch, loss, margin, beta)
    if unit_terms is None:  # the inputs (with a 1 for the bias), shared by every member
        inputs = jacobian[0]
        hess = inputs.T @ (curvature.unsqueeze(-1) * inputs)
    else:
        # (einsum takes the batched product the same way as `J^T @ (C J)`, bit for bit, faster)
        hess = torch.einsum("msp,msq->mpq", jacobian, curvature.unsqueeze(-1) * jacobian)
        # The output's own curvature, weighted by l': per unit, its incoming weights and bias
        # (indices `incoming`) with each other and with its outgoing weight (`outgoing`); every
        # entry it touches once, so one indexed addition into the flattened Hessians does it all.
        incoming, outgoing, block, cross = unit_terms
        n_params = hess.shape[-1]
        to_outgoing = outgoing.unsqueeze(-1)
        entries = torch.cat([(incoming.unsqueeze(-1) * n_params + incoming.unsqueeze(-2)).flatten(),
                             (incoming * n_params + to_outgoing).flatten(), (to_outgoing * n_params + incoming).flatten()])
        hess.view(len(hess), -1).index_add_(1, entries, torch.cat([block.flatten(1), cross.flatten(1), cross.flatten(1)], 1))
    hess.diagonal(dim1=1, dim2=2).add_(l2)
    return hess


def block_low_rank_hessians(theta, x, y, arch, *, loss, margin=1.0, l2=0.0, beta=1.0) -> BlockLowRankHessians:
    """The Hessians of :func:`hessians` as blocks plus low rank
    (:class:`basins.engine.block_low_rank.BlockLowRankHessians`), never written out: per hidden
    unit one block over its incoming weights, bias and outgoing weight (the output's curvature
    weighted by l', plus ``l2``), the output bias alone (``l2``), and the Gauss-Newton term
    ``J^T diag(l'') J`` of rank at most the number of samples."""
    n_members, n_params = theta.shape
    jacobian, curvature, unit_terms = _hessian_terms(theta, x, y, arch, loss, margin, beta)
    if unit_terms is None:  # no hidden layer, no blocks: every parameter in the rest (l2)
        groups = torch.zeros((0, 1), dtype=torch.long, device=theta.device)
        blocks = theta.new_zeros((n_members, 0, 1, 1))
    else:
        incoming, outgoing, block, cross = unit_terms
        groups = torch.cat([incoming, outgoing.unsqueeze(1)], 1)  # (unit, fan_in [+ 1] + 1)
        k = groups.shape[1]
        blocks = theta.new_zeros((n_members, arch.width, k, k))
        blocks[:, :, : k - 1, : k - 1] = block
        blocks[:, :, : k - 1, k - 1] = cross
        blocks[:, :, k - 1, : k - 1] = cross
        blocks.diagonal(dim1=2, dim2=3).add_(l2)
    in_groups = torch.zeros(n_params, dtype=torch.bool, device=theta.device)
    in_groups[groups.flatten()] = True
    rest = torch.nonzero(~in_groups).flatten()
    return BlockLowRankHessians.from_parts(
        groups=groups, blocks=blocks, rest=rest, rest_diagonal=theta.new_full((n_members, len(rest)), l2),
        jacobian=jacobian, curvature=curvature,
    )


def _hessian_terms(theta, x, y, arch, loss, margin, beta):
    """The output's Jacobian ``(member, sample, param)`` and the loss's curvature ``l''``
    ``(member, sample)``, and for a hidden layer (else None) each unit's parameter indices
    (:func:`_unit_parameters`) with the output's own curvature weighted by l': ``block
    (member, unit, in, in)`` among its incoming weights and bias, ``cross (member, unit, in)``
    between them and its outgoing weight (networks of :func:`has_hand_derived_hessian` only)."""
    if not has_hand_derived_hessian(arch):
        raise ValueError(f"no hand-derived Hessian for {arch}: one output and depth <= 1 only")
    n_members, n_params = theta.shape
    n_samples = x.shape[0]
    inputs = torch.cat([x, x.new_ones(n_samples, 1)], 1) if arch.bias else x  # (sample, fan_in [+ 1])
    if arch.depth == 0:
        (w_slice, b_slice), = arch.layer_slices
        output = theta[:, w_slice] @ x.T + (theta[:, b_slice] if arch.bias else 0.0)
        _, curvature = _loss_derivatives(output, y, loss, margin, beta, n_samples)
        # The inputs (with a 1 for the bias) are the output's Jacobian.
        return inputs.expand(n_members, -1, -1), curvature, None
    ((w_in, b_in), (w_out, b_out)) = arch.layer_slices
    width, fan_in = arch.width, arch.n_inputs
    weights_in = theta[:, w_in].view(n_members, width, fan_in)
    pre = weights_in @ x.T + (theta[:, b_in].unsqueeze(-1) if arch.bias else 0.0)  # (member, unit, sample)
    hidden, slope, bend = _activation_derivatives(pre, arch.activation)
    weights_out = theta[:, w_out]  # (member, unit)
    output = (weights_out.unsqueeze(-1) * hidden).sum(1) + (theta[:, b_out] if arch.bias else 0.0)
    gradient, curvature = _loss_derivatives(output, y, loss, margin, beta, n_samples)
    # The Jacobian of the output, (member, sample, param), in the parameters' own order (each
    # layer's weights, then its biases: Architecture.layer_slices).
    unit_slope = (weights_out.unsqueeze(-1) * slope).transpose(1, 2)  # d f / d pre, (member, sample, unit)
    parts = [(unit_slope.unsqueeze(-1) * x[None, :, None, :]).reshape(n_members, n_samples, -1),
             *([unit_slope] if arch.bias else []), hidden.transpose(1, 2),
             *([theta.new_ones(n_members, n_samples, 1)] if arch.bias else [])]
    jacobian = torch.cat(parts, 2)
    incoming, outgoing = _unit_parameters(arch, theta.device)
    weighted_bend = gradient.unsqueeze(1) * weights_out.unsqueeze(-1) * bend  # (member, unit, sample)
    block = (weighted_bend.unsqueeze(-1) * inputs).transpose(2, 3) @ inputs  # (member, unit, in, in)
    cross = (gradient.unsqueeze(1) * slope) @ inputs  # (member, unit, in)
    return jacobian, curvature, (incoming, outgoing, block, cross)


def _unit_parameters(arch, device):
    """Per hidden unit, the indices of its incoming weights and bias ``(unit, fan_in [+ 1])`` and
    of its outgoing weight ``(unit,)``."""
    ((w_in, b_in), (w_out, _)) = arch.layer_slices
    incoming = torch.arange(w_in.start, w_in.stop, device=device).view(arch.width, arch.n_inputs)
    if arch.bias:
        incoming = torch.cat([incoming, torch.arange(b_in.start, b_in.stop, device=device).unsqueeze(1)], 1)
    return incoming, torch.arange(w_out.start, w_out.stop, device=device)


def _activation_derivatives(pre, activation):
    """The activation of ``pre`` and its first and second derivatives."""
    if activation == "tanh":
        value = torch.tanh(pre)
        slope = 1 - value * value
        return value, slope, -2 * value * slope
    if activation == "erf":
        slope = torch.exp(-pre * pre) * (2 / math.sqrt(math.pi))
        return torch.erf(pre), slope, -2 * pre * slope
    if activation == "relu":  # autograd's convention: slope 0 at the kink
        return torch.relu(pre), (pre > 0).to(pre.dtype), torch.zeros_like(pre)
    return pre, torch.ones_like(pre), torch.zeros_like(pre)


def _loss_derivatives(output, y, loss, margin, beta, n_samples):
    """First and second derivatives ``(member, sample)`` of the mean sample loss in each output."""
    if loss == "mse":
        first, second = output - y, torch.ones_like(output)
    elif loss == "cross_entropy":  # softplus(-beta y f) / beta
        s = torch.sigmoid(-beta * y * output)
        first, second = -y * s, beta * s * (1 - s)
    else:
        shortfall = margin - y * output
        active = (shortfall > 0).to(output.dtype)
        if loss == "hinge":
            first, second = -y * active, torch.zeros_like(output)
        else:  # quadratic_hinge
            first, second = -y * torch.relu(shortfall), active
    return first / n_samples, second / n_samples
