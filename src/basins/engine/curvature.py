"""Curvature of any landscape, batched over points, through Hessian-vector products only.

``hvp(theta (point, param), vectors (point, param)) -> H v`` per row (reverse-over-reverse
autograd); from it the dense Hessians of small problems, Lanczos with full
reorthogonalization (extreme eigenpairs; exact once the Krylov space spans the parameters) and
Hutchinson's trace estimator (a loss with hand-derived Hessians gives its dense ones itself).
Used by the saddle check and the Newton polish of training, the flatness stage and
transition-state refinement; :func:`cholesky_solve` serves the polish and the Rosenbrock steps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

#: ``hvp(theta (minimum, param), vectors (minimum, param)) -> (minimum, param)``: H_m v_m per row.
HessianVectorProduct = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_hvp(member_loss: Callable[[torch.Tensor], torch.Tensor]) -> HessianVectorProduct:
    """Batched Hessian-vector products of a per-member loss ``(member, param) -> (member,)``.

    Members do not interact, so the Hessian of the summed loss is block-diagonal: the gradient
    of ``sum_m g_m . v_m`` is every member's own H v. Plain double-backward autograd, not
    ``torch.func``'s forward-over-reverse: under ``torch.func`` transforms some element-wise ops
    (``softplus``, ``pow``) run Python decompositions whose first call imports ``torch._dynamo``
    (about 2 s in every job that takes a Hessian, for equal products up to round-off).
    """

    def hvp(theta, vectors):
        with torch.enable_grad():
            point = theta.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(member_loss(point).sum(), point, create_graph=True)
            if not grad.requires_grad:  # a loss linear in theta: no curvature
                return torch.zeros_like(theta)
            # A scalar to differentiate: grad_outputs= would import sympy (0.7 s) on first use.
            (product,) = torch.autograd.grad((grad * vectors).sum(), point, allow_unused=True)
        return torch.zeros_like(theta) if product is None else product.detach()

    hvp.dense = getattr(member_loss, "hessians", None)  # a hand-derived dense Hessian, if any
    hvp.block_low_rank = block_low_rank_of(member_loss)
    return hvp


def block_low_rank_of(member_loss) -> Callable | None:
    """``theta ->`` :class:`basins.engine.block_low_rank.BlockLowRankHessians`: the loss's own
    Hessians as blocks plus low rank (``member_loss.block_low_rank_hessians``), or None."""
    return getattr(member_loss, "block_low_rank_hessians", None)


def dense_hessians(hvp: HessianVectorProduct, theta: torch.Tensor, *, block: int = 64) -> torch.Tensor:
    """The Hessians ``(minimum, param, param)``: the loss's own hand-derived ones where
    :func:`make_hvp` found them (``member_loss.hessians``, e.g.
    :class:`basins.landscapes.objective.NetworkLoss`; as written, symmetric up to round-off),
    else ``block`` columns of all of them per product, as ``block`` copies of every point, each
    with its own unit vector (the points do not interact), so a small network's whole Hessian
    costs one call instead of one per parameter."""
    own = getattr(hvp, "dense", None)
    if own is not None:
        # Not averaged with its transpose: that took a third of the Hessians' own time at 401
        # parameters, and eigh, eigvalsh and Cholesky read only the lower triangle.
        return own(theta)
    n_minima, n_params = theta.shape
    basis = torch.eye(n_params, dtype=theta.dtype, device=theta.device)
    columns = []
    for start in range(0, n_params, block):
        units = basis[start : start + block]
        copies = theta.repeat_interleave(len(units), dim=0)  # (minimum x column, param)
        columns.append(hvp(copies, units.repeat(n_minima, 1)).view(n_minima, len(units), n_params))
    hessians = torch.cat(columns, dim=1).transpose(1, 2)  # (minimum, column, row) -> (minimum, row, column)
    return 0.5 * (hessians + hessians.transpose(1, 2))  # symmetric up to round-off


def lanczos(
    hvp: HessianVectorProduct, theta: torch.Tensor, n_iterations: int, *, generator: torch.Generator,
    ritz_vectors: bool = False,
):
    """Ritz values ``(minimum, k)`` (ascending) and their quadrature weights, batched over minima
    (with ``ritz_vectors``, also the Ritz vectors ``(minimum, k, param)``).

    Each minimum runs its own Lanczos recursion from a random unit vector, with full
    reorthogonalization; where a Krylov space is exhausted (beta ~ 0) the recursion restarts
    from a fresh orthogonal direction, so after ``n_params`` iterations the Ritz values are the
    whole spectrum. The weights are the squared first components of the Ritz vectors (the
    stochastic Lanczos quadrature weights of the starting vector).
    """
    n_minima, n_params = theta.shape
    steps = min(n_iterations, n_params)
    basis = torch.zeros(n_minima, steps, n_params, dtype=theta.dtype, device=theta.device)
    alpha = torch.zeros(n_minima, steps, dtype=theta.dtype, device=theta.device)
    beta = torch.zeros(n_minima, steps, dtype=theta.dtype, device=theta.device)
    vector = _unit(_random_like(theta, generator))
    for j in range(steps):
        basis[:, j] = vector
        product = hvp(theta, vector)
        alpha[:, j] = (product * vector).sum(1)
        product = _orthogonalize(product, basis[:, : j + 1])
        if j + 1 == steps:
            break
        norm = product.norm(dim=1)
        scale = alpha[:, : j + 1].abs().amax(1).clamp_min(torch.finfo(theta.dtype).tiny)
        exhausted = norm <= 1e-10 * scale
        beta[:, j] = torch.where(exhausted, 0.0, norm)
        vector = product / norm.clamp_min(torch.finfo(theta.dtype).tiny)[:, None]
        if exhausted.any():
            fresh = _unit(_orthogonalize(_random_like(theta, generator), basis[:, : j + 1]))
            vector = torch.where(exhausted[:, None], fresh, vector)
    tridiagonal = torch.diag_embed(alpha) + torch.diag_embed(beta[:, :-1], 1) + torch.diag_embed(beta[:, :-1], -1)
    ritz_values, eigenvectors = torch.linalg.eigh(tridiagonal)
    weights = eigenvectors[:, 0, :] ** 2
    if ritz_vectors:
        return ritz_values, weights, torch.einsum("mjk,mjp->mkp", eigenvectors, basis)
    return ritz_values, weights


def lowest_eigenpairs(
    hvp: HessianVectorProduct, theta: torch.Tensor, *, max_dense_params: int, n_lanczos: int,
    generator: torch.Generator, known_above: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The lowest Hessian eigenvalue ``(minimum,)`` and its unit eigenvector ``(minimum, param)``.

    Dense ``eigh`` up to ``max_dense_params`` parameters (exact). Above it, where the loss
    gives its Hessians as blocks plus low rank (``hvp.block_low_rank``: one-hidden-layer,
    one-output networks), their count of eigenvalues below ``-c`` and, where there are any,
    bisection and inverse iteration (:class:`basins.engine.block_low_rank.BlockLowRankHessians`:
    exact up to round-off, no direction missed). Otherwise the lowest Ritz pair of
    ``n_lanczos`` Lanczos iterations (exact once they span the parameters; otherwise the Ritz
    value bounds the lowest eigenvalue from above, so a negative one is a true saddle
    direction while a saddle can be missed).

    With ``known_above = c`` (dense or block Hessians) a point shown to have every eigenvalue
    above ``-c`` (``H + c I`` has a Cholesky factor; no eigenvalue counted below ``-c``) is not
    decomposed: its value and vector are nan. The saddle check needs eigenpairs only below
    ``-c``; the factorization costs about a fifteenth of ``eigh`` at 161 parameters.
    """
    structured = blocks_in_place_of_dense(hvp, theta.shape[1], max_dense_params)
    if structured is not None:
        return _lowest_block_low_rank_eigenpairs(structured(theta), known_above=known_above)
    if theta.shape[1] <= max_dense_params:
        hessians = dense_hessians(hvp, theta)
        values = theta.new_full(theta.shape[:1], torch.nan)
        vectors = torch.full_like(theta, torch.nan)
        below = torch.ones(len(theta), dtype=torch.bool, device=theta.device)
        if known_above is not None:
            below = ~all_eigenvalues_above(hessians, -known_above)
        if below.any():
            below_values, below_vectors = torch.linalg.eigh(hessians[below])
            values[below], vectors[below] = below_values[:, 0], below_vectors[:, :, 0]
        return values, vectors
    values, _, vectors = lanczos(hvp, theta, n_lanczos, generator=generator, ritz_vectors=True)
    return values[:, 0], _unit(vectors[:, 0])


def _lowest_block_low_rank_eigenpairs(hessians, *, known_above):
    below = torch.ones(hessians.n_members, dtype=torch.bool, device=hessians.diagonal.device)
    if known_above is not None:
        below = hessians.count_below(torch.full_like(hessians.diagonal[:, 0], -known_above)) >= 1
    values = hessians.diagonal.new_full((hessians.n_members,), torch.nan)
    vectors = torch.full(hessians.factors.shape[:2], torch.nan, dtype=values.dtype, device=values.device)
    if below.any():
        values[below], vectors[below] = hessians.select(below).lowest_eigenpairs()
    return values, vectors


def lowest_eigenvalues(hvp: HessianVectorProduct, theta: torch.Tensor, *, max_dense_params: int) -> torch.Tensor:
    """The lowest Hessian eigenvalue ``(minimum,)``: dense ``eigvalsh`` up to
    ``max_dense_params`` parameters, above it from the loss's blocks plus low rank (as
    :func:`lowest_eigenpairs`; their bisection brackets it to 1e-3 relative, and the value is a
    Rayleigh quotient, never below the true one)."""
    structured = blocks_in_place_of_dense(hvp, theta.shape[1], max_dense_params)
    if structured is not None:
        return structured(theta).lowest_eigenpairs()[0]
    return torch.linalg.eigvalsh(dense_hessians(hvp, theta))[:, 0]


def blocks_in_place_of_dense(hvp: HessianVectorProduct, n_params: int, max_dense_params: int) -> Callable | None:
    """The loss's Hessians as blocks plus low rank (``theta ->``
    :class:`basins.engine.block_low_rank.BlockLowRankHessians`) where they take the place of
    dense ones: above ``max_dense_params`` parameters, for a loss that gives them; else None."""
    structured = getattr(hvp, "block_low_rank", None)
    return structured if n_params > max_dense_params else None


def hutchinson_trace(
    hvp: HessianVectorProduct, theta: torch.Tensor, n_probes: int, *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Trace of each Hessian by Hutchinson's estimator with Rademacher probes; mean and standard error."""
    if n_probes < 2:
        raise ValueError(f"n_probes={n_probes}: a standard error needs at least 2 probes")
    samples = []
    for _ in range(n_probes):
        probe = torch.randint(0, 2, theta.shape, generator=generator, device="cpu").to(theta) * 2 - 1
        samples.append((probe * hvp(theta, probe)).sum(1))
    samples = torch.stack(samples, dim=1)
    return samples.mean(1), samples.std(1) / np.sqrt(n_probes)


def _orthogonalize(vectors, basis):
    """Remove the components along ``basis (minimum, k, param)``, twice (Parlett's "twice is enough")."""
    for _ in range(2):
        vectors = vectors - torch.einsum("mk,mkp->mp", torch.einsum("mkp,mp->mk", basis, vectors), basis)
    return vectors


def _random_like(theta, generator):
    return torch.randn(theta.shape, generator=generator, dtype=theta.dtype, device="cpu").to(theta.device)


def _unit(vectors):
    return vectors / vectors.norm(dim=1, keepdim=True)


def all_eigenvalues_above(matrices: torch.Tensor, bound: float) -> torch.Tensor:
    """``(member,)``: whether every eigenvalue of each symmetric matrix ``(member, n, n)`` lies
    above ``bound`` (``matrices - bound I`` has a Cholesky factor). The diagonals are shifted in
    place and restored exactly: a shifted copy of a batch of dense Hessians costs as much as
    their factors."""
    diagonal = matrices.diagonal(dim1=1, dim2=2)
    saved = diagonal.clone()
    diagonal.sub_(bound)
    try:
        return torch.linalg.cholesky_ex(matrices)[1] == 0
    finally:
        diagonal.copy_(saved)


def cholesky_solve(factor: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``H^-1 rhs`` per member ``(member, n)`` from lower Cholesky factors ``(member, n, n)`` of
    ``H``: two batched triangular solves (``torch.cholesky_solve`` takes 6x as long for one
    right-hand side a member)."""
    half = torch.linalg.solve_triangular(factor, rhs.unsqueeze(-1), upper=False)
    return torch.linalg.solve_triangular(factor.mT, half, upper=True).squeeze(-1)
