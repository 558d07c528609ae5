"""textgym: language-model text generation as a Gymnasium environment, and the RLHF pipeline around it.

Importing textgym registers its environments with Gymnasium (ids in :data:`ENV_IDS`).
"""

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"

#: Every environment id textgym registers, with its entry points (single, vector).
_TEXT = (
    "textgym.envs.text_generation:make_env",  # TextGenerationEnv, an unknown keyword named in one line
    "textgym.envs.text_generation_vector:TextGenerationVectorEnv",
)

#: Every environment id textgym registers: (entry point, vector entry point, default kwargs).
ENV_IDS: dict[str, tuple[str, str | None, dict]] = {
    "textgym/TextGeneration-v0": (*_TEXT, {}),
    "textgym/Sentiment-v0": (*_TEXT, {"task": "sentiment"}),
    "textgym/Helpfulness-v0": (*_TEXT, {"task": "helpfulness"}),
    "textgym/Detox-v0": (*_TEXT, {"task": "detox"}),
    "textgym/TinyLanguage-v0": (*_TEXT, {"task": "tiny"}),
    "textgym/TextTicTacToe-v0": ("textgym.envs.text_tictactoe:make_env", "textgym.envs.text_tictactoe:make_vector_env",
                                 {}),
    "textgym/TicTacToe-v0": ("textgym.envs.tictactoe:TicTacToeEnv", "textgym.envs.tictactoe_vector:TicTacToeVectorEnv",
                             {}),
}

for _env_id, (_entry, _vector_entry, _kwargs) in ENV_IDS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry, vector_entry_point=_vector_entry, kwargs=_kwargs)
