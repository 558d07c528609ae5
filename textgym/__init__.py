"""textgym: language-model text generation as a Gymnasium environment, and the RLHF pipeline around it.

Importing textgym registers its environments with Gymnasium (ids in :data:`ENV_IDS`): the text
environment, each task's environment (derived from :data:`textgym.tasks.TASKS`) and the toy
tic-tac-toe. Importing it loads no model library (the tasks import theirs when used).
"""

from gymnasium.envs.registration import register, registry

from textgym import tasks

__version__ = "0.1.0"

#: Every environment id textgym registers: (entry point, vector entry point, default kwargs).
ENV_IDS: dict[str, tuple[str, str, dict]] = {
    "textgym/TextGeneration-v0": (*tasks.TEXT_ENTRY_POINTS, {}),  # the default task's (sentiment), or task=...
    **tasks.ENV_IDS,
    "textgym/TicTacToe-v0": ("textgym.envs.tictactoe:TicTacToeEnv", "textgym.envs.tictactoe_vector:TicTacToeVectorEnv",
                             {}),
}

for _env_id, (_entry, _vector_entry, _kwargs) in ENV_IDS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry, vector_entry_point=_vector_entry, kwargs=_kwargs)
