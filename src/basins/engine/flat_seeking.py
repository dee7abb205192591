"""Dynamics driven by the local entropy, which seek wide flat minima.

Baldassi, Pittorino and Zecchina (2020, "Shaping the learning landscape in neural networks
around wide flat minima") argue that the minima that generalize are those inside wide flat
regions, and that algorithms descending the *local free energy*

    F(x; gamma) = -T log  integral dx' exp(-L(x') / T - gamma / 2 |x - x'|^2)

rather than the loss L find them. Two such algorithms, vectorized over members like every
stepper of :mod:`basins.engine.dynamics` (``init_state`` / ``step``):

- :class:`EntropyGD`: Entropy-SGD (Chaudhari et al. 2017, Algorithm 1) with full-batch
  gradients. Each outer step runs ``inner_steps`` Langevin steps of x' on
  L(x') + gamma / 2 |x - x'|^2 at temperature ``noise**2 / 2``, averages them exponentially
  (weight ``averaging``) into mu ~ <x'>, and moves x by ``lr * gamma * (x - mu)``, the
  gradient of F.
- :class:`ReplicatedGD`: replicated gradient descent, the "robust ensemble" of Baldassi et al.
  (2016 PNAS, 2020): ``n_replicas`` replicas per member, each descending its own loss plus an
  elastic coupling gamma / 2 |w_a - c|^2 to their centre c (their mean); the member's point is
  the centre. Replicas start ``replica_spread`` apart (Gaussian) around the member's start.

Both grow the coupling over ``scoping_steps`` steps ("scoping", as in both papers): gamma_t =
``coupling`` * (1 + ``coupling_growth``)^t. After them the member continues by plain gradient
descent on L (step ``final_lr``), without noise, to the minimum of L the flat-seeking phase led
it into; that minimum is checked, polished and catalogued like any other, and the engine
declares no member converged before the scoping ends (its ``anneal_steps``). ``start_step``
resumes the schedule of a member continued after that many steps. The noise is drawn
from a hash of (seed, member, step, draw), so a member's run depends on nothing else (not on
shards or chunks), as minibatch orders do. Both need one landscape shared by all members.

Tested (``tests/test_flat_seeking.py``): equal to plain loops written as the papers'
algorithms, member by member; runs converge to minima of L; a run continued from a spent budget
resumes the schedule. Not yet tested: the known answer that on a landscape with a narrow deep
well and a wide shallow one they end in the wide well where gradient descent ends in the narrow
one, at the coupling the local free energy predicts (issue #26).
"""

from __future__ import annotations

import math

import torch

from basins.engine.dynamics import member_normal


def _check(**values):
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name}={value} must be positive")


class _Scoped:
    """The coupling schedule gamma_t = coupling (1 + coupling_growth)^t, per member ``(member, 1)``,
    over ``scoping_steps`` steps; then plain gradient descent with step ``final_lr``."""

    def __init__(self, coupling, coupling_growth, scoping_steps, final_lr, start_step):
        _check(coupling=coupling, final_lr=final_lr)
        if coupling_growth < 0 or scoping_steps < 0 or start_step < 0:
            raise ValueError(
                f"coupling_growth={coupling_growth}, scoping_steps={scoping_steps} and "
                f"start_step={start_step} must be >= 0"
            )
        self.coupling, self.coupling_growth = coupling, coupling_growth
        self.scoping_steps, self.final_lr, self.start_step = int(scoping_steps), final_lr, int(start_step)

    def gamma(self, steps: torch.Tensor, dtype) -> torch.Tensor:
        return (self.coupling * (1 + self.coupling_growth) ** steps.to(dtype)).unsqueeze(1)

    def step(self, theta, state, loss, grad, objective):
        if int(state["steps"][0]) >= self.scoping_steps:  # members of a chunk step together
            theta = theta - self.final_lr * grad
            state["steps"] = state["steps"] + 1
            loss, grad = objective(theta, None)
            return theta, state, loss, grad
        return self.scoping_step(theta, state, objective)

    def _steps(self, theta):
        return torch.full((theta.shape[0],), self.start_step, dtype=torch.long, device=theta.device)


class EntropyGD(_Scoped):
    """Entropy-SGD (Chaudhari et al. 2017) with full-batch inner gradients; see the module."""

    needs_shared_landscape = True

    def __init__(self, *, lr, inner_lr, inner_steps, coupling, coupling_growth, noise, scoping_steps, final_lr,
                 averaging=0.75, seed=0, start_step=0):
        super().__init__(coupling, coupling_growth, scoping_steps, final_lr, start_step)
        _check(lr=lr, inner_lr=inner_lr, inner_steps=inner_steps)
        if noise < 0 or not 0 < averaging <= 1:
            raise ValueError(f"noise={noise} must be >= 0 and averaging={averaging} in (0, 1]")
        self.lr, self.inner_lr, self.inner_steps = lr, inner_lr, int(inner_steps)
        self.noise, self.averaging, self.seed = noise, averaging, seed

    def init_state(self, theta, grad, member_ids):
        return {"steps": self._steps(theta), "member_id": member_ids.to(theta.device)}

    def scoping_step(self, theta, state, objective):
        gamma = self.gamma(state["steps"], theta.dtype)
        inner, mean = theta.clone(), theta.clone()
        for k in range(self.inner_steps):
            _, inner_grad = objective(inner, None)
            inner = inner - self.inner_lr * (inner_grad + gamma * (inner - theta))
            if self.noise:
                counter = state["steps"] * self.inner_steps + k
                draw = member_normal(self.seed, state["member_id"], counter, theta.shape[1:], theta.dtype)
                inner = inner + math.sqrt(self.inner_lr) * self.noise * draw
            mean = (1 - self.averaging) * mean + self.averaging * inner
        theta = theta - self.lr * gamma * (theta - mean)
        state["steps"] = state["steps"] + 1
        loss, grad = objective(theta, None)
        return theta, state, loss, grad


class ReplicatedGD(_Scoped):
    """Replicated gradient descent (robust ensemble; Baldassi et al.); see the module."""

    needs_shared_landscape = True

    def __init__(self, *, lr, n_replicas, coupling, coupling_growth, replica_spread, scoping_steps, final_lr,
                 seed=0, start_step=0):
        super().__init__(coupling, coupling_growth, scoping_steps, final_lr, start_step)
        _check(lr=lr, n_replicas=n_replicas)
        if replica_spread < 0:
            raise ValueError(f"replica_spread={replica_spread} must be >= 0")
        self.lr, self.n_replicas, self.replica_spread, self.seed = lr, int(n_replicas), replica_spread, seed

    def init_state(self, theta, grad, member_ids):
        member_ids = member_ids.to(theta.device)
        shape = (self.n_replicas, theta.shape[1])
        spread = member_normal(self.seed, member_ids, torch.zeros_like(member_ids), shape, theta.dtype)
        return {
            "replicas": theta.unsqueeze(1) + self.replica_spread * spread,
            "steps": self._steps(theta),
            "member_id": member_ids,
        }

    def scoping_step(self, theta, state, objective):
        replicas = state["replicas"]
        n_members, n_replicas, n_params = replicas.shape
        gamma = self.gamma(state["steps"], theta.dtype).unsqueeze(2)
        centre = replicas.mean(1, keepdim=True)
        _, replica_grad = objective(replicas.reshape(n_members * n_replicas, n_params), None)
        replicas = replicas - self.lr * (replica_grad.view_as(replicas) + gamma * (replicas - centre))
        state["replicas"] = replicas
        state["steps"] = state["steps"] + 1
        theta = replicas.mean(1)
        loss, grad = objective(theta, None)
        return theta, state, loss, grad
