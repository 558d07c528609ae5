"""stable-baselines3 on textgym environments, through textgym's agent protocol.

- :class:`SB3Agent` runs any SB3 or sb3-contrib algorithm (PPO, MaskablePPO, DQN, ...) as a textgym
  agent: ``act`` calls ``predict`` (passing ``action_masks`` to maskable algorithms), ``learn`` calls
  ``learn`` and returns the finished episodes' returns.
- :class:`CausalLMPolicy` lets stock SB3 ``PPO`` train a causal LM on the text-generation
  environment. It is the slow, compatible path: SB3 calls the policy on whole observations, so every
  step re-encodes the full context window (no KV cache) and every update re-runs each transition;
  :class:`agents.lm_ppo.LMPPO` is the fast path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import ActorCriticPolicy
from transformers import PreTrainedModel

from agents.policy import LMPolicy
from textgym.models import load_causal_lm
from textgym.models.kv import keep_last, positions_from_mask


class SB3Agent:
    """A stable-baselines3 model behind the textgym agent protocol.

    Args:
        model: An SB3 algorithm instance with its environment set.

    Example:
        >>> from sb3_contrib import MaskablePPO
        >>> from textgym.envs.tictactoe import TicTacToeEnv
        >>> agent = SB3Agent(MaskablePPO("MlpPolicy", TicTacToeEnv(), n_steps=64, batch_size=32, seed=0))
        >>> rows = agent.learn(None, total_steps=64)
        >>> obs, info = TicTacToeEnv().reset(seed=0)
        >>> int(agent.act(obs[None], action_mask=info["action_mask"][None])[0]) in range(9)
        True
    """

    def __init__(self, model: BaseAlgorithm) -> None:
        self.model = model

    @property
    def global_step(self) -> int:
        """Environment steps the SB3 model has taken (its ``num_timesteps``)."""
        return int(self.model.num_timesteps)

    @property
    def updates(self) -> int:
        """Gradient updates so far (SB3's ``_n_updates``)."""
        return int(getattr(self.model, "_n_updates", 0))

    def act(self, obs: Any, *, episode_start: np.ndarray | None = None, action_mask: np.ndarray | None = None,
            deterministic: bool = False) -> np.ndarray:
        """``model.predict`` on a batch of observations (masks go to maskable algorithms)."""
        kwargs: dict[str, Any] = {}
        if action_mask is not None and "action_masks" in self.model.predict.__code__.co_varnames:
            kwargs["action_masks"] = np.asarray(action_mask).astype(bool)
        actions, _ = self.model.predict(obs, episode_start=episode_start, deterministic=deterministic, **kwargs)
        return np.asarray(actions)

    def learn(self, envs: Any, total_steps: int, callback: Any = None) -> list[dict[str, float]]:
        """Train on ``envs`` (an env or SB3 VecEnv; None keeps the model's), one row per finished episode.

        ``callback(row)`` is called with each row; returning True stops training.
        """
        if envs is not None:
            self.model.set_env(envs)
        rows: list[dict[str, float]] = []

        class _Episodes(BaseCallback):
            def _on_step(self) -> bool:
                for info in self.locals.get("infos", []):
                    if "episode" in info:
                        rows.append({"global_step": self.num_timesteps, "charts/episodic_return": info["episode"]["r"]})
                        if callback is not None and callback(rows[-1]):
                            return False
                return True

        self.model.learn(total_steps, callback=_Episodes())
        return rows

    def save(self, path: str | Path) -> None:
        """SB3's own zip format in the folder ``path`` (loading it unpickles: load only files you trust)."""
        Path(path).mkdir(parents=True, exist_ok=True)
        self.model.save(Path(path) / "sb3_model.zip")
        algorithm = type(self.model)
        (Path(path) / "sb3_algorithm.txt").write_text(f"{algorithm.__module__}:{algorithm.__qualname__}\n")

    @classmethod
    def load(cls, path: str | Path, env: Any = None) -> SB3Agent:
        """The agent :meth:`save` wrote (SB3's loader unpickles: load only folders you trust)."""
        from agents.base import import_class

        spec = (Path(path) / "sb3_algorithm.txt").read_text().strip()
        # mypy takes no abstract class for a type[T] parameter (python/mypy#4717); import_class only checks subclassing
        algorithm = import_class(spec, BaseAlgorithm)  # type: ignore[type-abstract]
        return cls(algorithm.load(Path(path) / "sb3_model.zip", env=env))


class CausalLMPolicy(ActorCriticPolicy):
    """An SB3 actor-critic whose actor is a causal LM's next-token head and whose critic is a value head on its trunk.

    Pass as ``PPO(CausalLMPolicy, env, policy_kwargs={"model": "textgym/tiny-lm"})`` on a
    text-generation environment (Dict observations ``input_ids`` / ``attention_mask``).

    Args:
        observation_space: The env's Dict observation space.
        action_space: ``Discrete(vocab_size)``.
        lr_schedule: SB3's learning-rate schedule.
        model: A name or path for :func:`textgym.models.load_causal_lm` (or a model object, which
            trains but cannot be saved: SB3 pickles ``policy_kwargs``).
        **kwargs: Passed to ``ActorCriticPolicy``.
    """

    def __init__(self, observation_space, action_space, lr_schedule, model: PreTrainedModel | str = "textgym/tiny-lm",
                 **kwargs) -> None:
        self._model_spec = (model,)  # a tuple: torch forbids assigning a module before Module.__init__
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build(self, lr_schedule) -> None:
        spec = self._model_spec[0]
        lm = load_causal_lm(spec) if isinstance(spec, str) else spec
        self.lm = LMPolicy(lm)
        # SB3 types optimizer_class as the Optimizer base, whose __init__ takes no lr (its subclasses do); SB3's
        # own _build ignores the same error
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _heads(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = obs["input_ids"].long(), obs["attention_mask"].long()  # SB3's buffers store floats
        out = self.lm.model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask),
                            logits_to_keep=keep_last(1, ids.shape[1], ids.device), output_hidden_states=True)
        head = self.lm.value_head
        if head is None:  # _build's LMPolicy has one
            raise RuntimeError("CausalLMPolicy's LMPolicy lost its value head")
        values = head(out.hidden_states[-1][:, -1].detach().float())  # (B, 1)
        return out.logits[:, -1].float(), values

    def forward(self, obs, deterministic: bool = False):
        """Actions, values (B, 1) and log-probs, as SB3's rollout collection expects."""
        logits, values = self._heads(obs)
        dist = self.action_dist.proba_distribution(action_logits=logits)
        actions = dist.get_actions(deterministic=deterministic)
        return actions, values, dist.log_prob(actions)

    def evaluate_actions(self, obs, actions: torch.Tensor):
        """Values, log-probs and entropies of stored transitions, for SB3's update."""
        logits, values = self._heads(obs)
        dist = self.action_dist.proba_distribution(action_logits=logits)
        return values, dist.log_prob(actions), dist.entropy()

    def get_distribution(self, obs):
        """The next-token distribution."""
        return self.action_dist.proba_distribution(action_logits=self._heads(obs)[0])

    def predict_values(self, obs) -> torch.Tensor:
        """Values (B, 1)."""
        return self._heads(obs)[1]
