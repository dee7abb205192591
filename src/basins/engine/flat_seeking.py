"""Dynamics driven by the local entropy, which seek wide flat minima.

Baldassi, Pittorino and Zecchina (2020, "Shaping the learning landscape in neural networks
around wide flat minima") argue that the minima that generalize are those inside wide flat
regions, and that algorithms descending the *local free energy*

    F(x; gamma) = -T log  integral dx' exp(-(L(x') + gamma / 2 |x - x'|^2) / T),

whose gradient is gamma (x - <x'>), <x'> the mean under that weight,

rather than the loss L find them. Two such algorithms, vectorized over members like every
stepper of :mod:`basins.engine.dynamics` (``init_state`` / ``step``):

- :class:`EntropyGD`: Entropy-SGD (Chaudhari et al. 2017, Algorithm 1) with full-batch
  gradients. Each outer step runs ``inner_steps`` Langevin steps of x' on
  L(x') + gamma / 2 |x - x'|^2 at temperature ``noise**2 / 2``, averages them exponentially
  (weight ``averaging``) into mu ~ <x'>, and moves x by ``lr * gamma * (x - mu)``, the
  gradient of F. mu is <x'> only when the chain is at equilibrium: ``inner_steps * inner_lr``
  well beyond the time it takes to leave the well it starts in, and ``averaging`` a few times
  ``1 / inner_steps``; a short chain gives the gradient of the well it began in.
- :class:`ReplicatedGD`: replicated gradient descent, the "robust ensemble" of Baldassi et al.
  (2016 PNAS, 2020): ``n_replicas`` = y replicas per member, each descending its own loss plus
  an elastic coupling gamma / 2 |w_a - c|^2 to their centre c (their mean); the member's point
  is the centre. Replicas start ``replica_spread`` apart (Gaussian) around the member's start.
  Each step is a Langevin step, at temperature T = ``noise**2 / 2`` (Entropy-GD's convention),
  on the replicated energy sum_a L(w_a) + gamma / 2 sum_a |w_a - c|^2: a replica moves by
  -lr (grad L(w_a) + gamma (w_a - c)) + sqrt(2 T lr) xi_a, and the centre by
  -lr mean_a grad L(w_a) (the couplings sum to zero) plus noise at temperature T / y. Integrating out replicas at T > 0
  gives the centre the weight exp(-y F(c) / T), the robust ensemble's local-entropy term: with
  the replicas equilibrated around it, mean_a grad L(w_a) = F'(c), and the centre descends F at
  temperature T / y, as Entropy-GD's point does, its y replicas sampling at once what
  Entropy-GD's chain samples in turn. The mean is the centre because a free centre c (no loss of
  its own) integrated out leaves the replicas exactly this energy (sum_a |w_a - c|^2 =
  sum_a |w_a - mean|^2 + y |mean - c|^2), with c Gaussian around their mean, variance
  T / (gamma y).
  Without noise (``noise`` 0, the default; T = 0) replicated GD does not seek wide minima: with
  a fraction p of the replicas in a steep well and the rest in a shallow one, a slowly growing
  coupling pulls each group with a force in ratio (1 - p) : p, and the group whose force first
  exceeds the largest slope G of its well's flank is pulled out; the steep well holds the
  ensemble unless p < G_shallow / (G_shallow + G_steep).

Both grow the coupling over ``scoping_steps`` steps ("scoping", as in both papers): gamma_t =
``coupling`` * (1 + ``coupling_growth``)^t. After them the member continues by plain gradient
descent on L (step ``final_lr``), without noise, to the minimum of L the flat-seeking phase led
it into; that minimum is checked, polished and catalogued like any other, and the engine
declares no member converged before the scoping ends (its ``anneal_steps``). ``start_step``
resumes the schedule of a member continued after that many steps. The noise is drawn
from a hash of (seed, member, step, draw), so a member's run depends on nothing else (not on
shards or chunks), as minibatch orders do. Both need one landscape shared by all members.

Tested (``tests/test_flat_seeking.py``): equal to plain loops written as the papers'
algorithms (replicated GD with and without noise), member by member; runs converge to minima of
L; a run continued from a spent budget resumes the schedule. Known answers on the narrow deep and
wide shallow wells (:func:`basins.landscapes.planted.narrow_and_wide_wells`), against quadratures
of F: at T = 0.5 F has one minimum, in the wide basin, below gamma_c = 1.61; a long inner chain's
mu is <x'> within 4 standard errors; from 37 starts where gradient descent ends in the narrow
well, Entropy-GD (600 inner steps of 0.01) ends in the wide well at gamma_0 = gamma_c / 2 (34 of
37; the test asks 33) and in the narrow one at 2 gamma_c (37 of 37), as the exact descent of F
does for every start. Replicated GD at T = 0.5 (64 replicas, 3000 steps of 0.01) does the same
from the same starts, as the descent of F over its schedule predicts: 37 of 37 in the wide well
at gamma_c / 2 (the test asks 36) and 37 of 37 in the narrow one at 2 gamma_c, on five more
seeds too (the centre is at T / y: with 16 replicas 5-12 of 37 cross F's barrier at 2 gamma_c,
with 32 0-1); without noise it ends 0 of 37 in the wide well at gamma_c / 2. Noiseless replicated
GD is gradient descent on the replicated energy, and ends where the tug of war above predicts
(p* = 0.085; 41 members of 16 replicas, every one).
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
                 noise=0.0, seed=0, start_step=0):
        super().__init__(coupling, coupling_growth, scoping_steps, final_lr, start_step)
        _check(lr=lr, n_replicas=n_replicas)
        if replica_spread < 0 or noise < 0:
            raise ValueError(f"replica_spread={replica_spread} and noise={noise} must be >= 0")
        self.lr, self.n_replicas, self.replica_spread = lr, int(n_replicas), replica_spread
        self.noise, self.seed = noise, seed

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
        if self.noise:  # Langevin at T = noise^2 / 2: sqrt(2 T lr) = noise sqrt(lr); counter 0 drew the spread
            draw = member_normal(self.seed, state["member_id"], state["steps"] + 1, replicas.shape[1:], theta.dtype)
            replicas = replicas + math.sqrt(self.lr) * self.noise * draw
        state["replicas"] = replicas
        state["steps"] = state["steps"] + 1
        theta = replicas.mean(1)
        loss, grad = objective(theta, None)
        return theta, state, loss, grad
