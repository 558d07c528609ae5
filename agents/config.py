"""The hyperparameters of the agents, in a module light enough for command-line help.

:class:`UpdateConfig` holds what the one PPO core reads (:mod:`agents.update`: the minibatch epochs,
the clipped loss, the KL controller) and the fields every PPO-style algorithm shares; the toy agent's
:class:`agents.ppo.PPOConfig` and the language-model algorithms' :class:`LMConfig` extend it. Its
defaults are the language-model algorithms'; ``PPOConfig`` sets its own for small toy policies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def bounded(default: Any, low: float | None = None, high: float | None = None, above: float | None = None) -> Any:
    """A dataclass field with ``default`` whose value must lie in ``[low, high]`` (None: no bound that side).

    ``above`` is a strict lower bound instead of ``low``: the value must be greater than it. A list
    ``default`` (each instance gets its own copy) bounds each of its values.

    The bounds are declared once, in the field's metadata; the command line's config validator
    (:func:`textgym.app.config.validate`) checks every field against them before anything is built.
    """
    metadata = {"low": low, "high": high, "above": above}
    if isinstance(default, list):  # a list's bounds hold for each of its values
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class UpdateConfig:
    """The hyperparameters of the shared PPO update (:mod:`agents.update`), with cleanrl's names.

    The functions of :mod:`agents.update` take this type; ``num_minibatches`` and ``update_epochs``
    must be set (not None) by the time they run (:class:`agents.lm.LMAgent` fills them from its
    algorithm's defaults).
    """

    learning_rate: float = bounded(5e-5, low=0)
    """Adam learning rate."""
    num_minibatches: int | None = bounded(None, low=1)
    """Minibatches per update epoch; None: the algorithm's (``LMAgent.defaults``: 2; REINFORCE 1)."""
    update_epochs: int | None = bounded(None, low=1)
    """Passes over each batch; None: the algorithm's (2; REINFORCE 1: one on-policy step per batch)."""
    clip_coef: float = bounded(0.2, low=0)
    """Ratio clipping of the surrogate (and of PPO's value loss)."""
    ent_coef: float = bounded(0.0, low=0)
    """Entropy bonus."""
    vf_coef: float = bounded(0.5, low=0)
    """PPO: weight of the value loss."""
    gamma: float = bounded(1.0, low=0, high=1)
    """PPO: discount."""
    gae_lambda: float = bounded(1.0, low=0, high=1)
    """PPO: GAE's lambda. 1 (returns minus the value baseline) because the reward comes at the end: with
    less, a value head still learning the reward's scale bootstraps low, ending early looks better than
    going on, and PPO learns to cut answers short."""
    norm_adv: bool = True
    """Normalise advantages per minibatch (PPO, RLOO, REINFORCE; GRPO's are normalised per group)."""
    kl_setpoint: float | None = bounded(None, above=0)
    """If set, an adaptive controller steers the environment's kl_coef toward this KL per episode."""
    kl_horizon: int = bounded(10_000, low=1)
    """Horizon of the adaptive KL controller, in environment steps (tokens, for text)."""
    max_grad_norm: float = bounded(0.5, low=0)
    """Gradient clipping."""
    target_kl: float | None = bounded(None, low=0)
    """Stop an update's epochs early when the approximate KL to the behaviour policy exceeds this (checked after
    each epoch: it needs ``update_epochs`` > 1 to stop anything)."""
    seed: int = 0
    """Seed of the episodes, the sampling and the minibatches."""


@dataclass
class LMConfig(UpdateConfig):
    """Hyperparameters of the language-model algorithms (cleanrl's names); each algorithm says which it reads.

    A field left None takes the algorithm's value (:attr:`agents.lm.LMAgent.defaults`) when the agent is
    made; the agent's ``cfg`` (and the ``agent.json`` it saves) holds the value it uses. The fields of
    the shared update are :class:`UpdateConfig`'s.
    """

    batch_episodes: int = bounded(32, low=1)
    """Finished episodes per update (per process); a multiple of the environment's group size."""
    value_trunk_grad: bool = False
    """PPO: let the value loss train the LM's trunk as well as the value head (a shared actor-critic trunk,
    right for games, where the value must be read off the state); off, the head only reads the LM."""
    symmetries: bool = False
    """Also train on the environment's symmetric copies of every episode (``env.symmetries``, e.g. the
    board's rotations and reflections in ``textgym/TextTicTacToe-v0``), each with the rewards,
    advantages and behaviour log-probabilities of its episode. Each update then sees (1 + copies)
    times the episodes, for that much more compute (and minibatches that much larger)."""
    scale_rewards: bool = True
    """GRPO: divide each group's centred returns by the group's std (False: the Dr. GRPO variant)."""
    kl_in_loss: bool | None = None
    """Put the KL penalty in the loss (k3 estimator per token) instead of the reward; None: the algorithm's
    (GRPO: in the loss, as published, so only the score is group-normalised; the others: in the reward)."""
    temperature: float = bounded(1.0, above=0)
    """Sampling temperature while acting (> 0); every log-probability of a ratio or a KL is taken at it, the
    reference's too: the environment must have the same ``temperature`` (``textgym train`` sees to it)."""
    top_k: int | None = bounded(None, low=0)
    """Sample among the top_k most likely tokens only (None or 0: all); the policy's log-probabilities are
    those of this cut, renormalised distribution (the reference's are not cut)."""
    top_p: float = bounded(1.0, above=0, high=1)
    """Sample among the fewest most likely tokens whose probability reaches top_p (after top_k), in (0, 1];
    1: all. Log-probabilities as for top_k."""
    gradient_checkpointing: bool = False
    """Recompute the LM's activations in the backward pass instead of storing them (less memory, more time)."""
