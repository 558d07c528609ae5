"""RL agents for textgym environments: baselines, PPO for toy envs, and the language-model algorithms.

One PPO core (:mod:`agents.update`, configured by :class:`agents.config.UpdateConfig`) serves the toy
agent (:mod:`agents.ppo`) and the language-model algorithms (:mod:`agents.lm`); its pure math is
:mod:`agents.ppo_math`.

A language-model algorithm is one module on :class:`agents.lm.LMAgent` plus one line in
:data:`LM_AGENTS`; ``textgym train --agent`` takes these names, or ``module:Class`` for any class
that follows the agent protocol (:class:`agents.base.Agent`) and is built like one
(``Class(model, tokenizer, config)``, ``Class.load(path)``).
"""

from __future__ import annotations

from typing import Any

#: The language-model algorithms by name (module:class).
LM_AGENTS: dict[str, str] = {
    "ppo": "agents.lm_ppo:LMPPO",
    "rloo": "agents.rloo:RLOO",
    "grpo": "agents.grpo:GRPO",
    "reinforce": "agents.reinforce:REINFORCE",
}


def agent_class(name: str) -> type[Any]:
    """The class of a language-model agent: a name of :data:`LM_AGENTS` or ``module:Class``.

    >>> agent_class("grpo").__name__
    'GRPO'
    """
    from agents.base import import_class

    if name not in LM_AGENTS and ":" not in name:
        raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(LM_AGENTS)}, or module:Class "
                         "(or file.py:Class) for your own, e.g. mypkg.agents:MyAgent")
    klass = import_class(LM_AGENTS.get(name, name), object)
    missing = [m for m in ("act", "learn", "save", "load") if not callable(getattr(klass, m, None))]
    if missing:
        raise ValueError(f"{name!r} does not follow the agent protocol: it has no {', '.join(missing)} "
                         "(subclass agents.lm.LMAgent)")
    return klass
