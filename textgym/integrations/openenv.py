"""OpenEnv, both ways: serve any registered textgym env over OpenEnv's protocol, and step a remote one.

`OpenEnv <https://github.com/huggingface/OpenEnv>`_ (the ``openenv`` package, formerly ``openenv-core``)
serves environments over a WebSocket (``/ws``: one environment instance per connection) with
``reset`` / ``step`` / ``state`` messages, and ships the clients trainers use to step them (TRL, SkyRL,
torchforge, Unsloth). This module plugs textgym into both ends, with OpenEnv's own server and client
code (no HTTP written here):

* :class:`TextgymEnvironment` is an OpenEnv ``Environment`` around one Gymnasium env (any id and
  keyword arguments); :func:`make_app` builds OpenEnv's FastAPI app for it (one env per session) and
  :func:`serve` runs it under uvicorn (``textgym serve ENV_ID``).
* :class:`OpenEnvGymEnv` is a ``gymnasium.Env`` that steps a remote OpenEnv env through OpenEnv's
  ``GenericEnvClient``, so textgym's agents train on environments others serve.

The wire format of a textgym env: the action is ``{"action": <int>}`` (one id of the env's
``Discrete`` action space: a token id, a board cell); an observation carries ``observation`` (the
Gymnasium observation as JSON: nested lists, a dict of them for text envs), ``info`` (every ``info``
key, arrays as lists), ``terminated`` and ``truncated`` (OpenEnv's ``done`` is their or), and the
step's ``reward``. Besides OpenEnv's routes the app answers ``GET /spaces`` (the Gymnasium spaces, so a
client can rebuild them) and ``GET /capacity`` (OpenEnv's count of open sessions and their limit).
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, cast

import gymnasium as gym
import numpy as np
from gymnasium import spaces

try:
    import uvicorn
    from fastapi import FastAPI
    from openenv.core import GenericEnvClient
    from openenv.core.env_server import Action, Environment, HTTPEnvServer, Observation, State
    from openenv.core.env_server.types import EnvironmentMetadata
    from pydantic import ConfigDict, Field
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("textgym.integrations.openenv needs OpenEnv: pip install 'textgym[openenv]'") from err

__all__ = ["OpenEnvGymEnv", "TextgymAction", "TextgymEnvironment", "TextgymObservation", "TextgymState",
           "make_app", "run_app", "serve", "space_from_json", "space_to_json"]

#: Largest WebSocket message the server reads (bytes); a bigger one closes that connection with 1009.
MAX_MESSAGE_BYTES = 1 << 20


# ------------------------------------------------------------------------------------------ JSON forms
def to_jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars as lists and Python numbers (nested dicts and lists too)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def space_to_json(space: gym.Space) -> dict:
    """A JSON form of a ``Discrete``, ``Box``, ``MultiBinary``, ``MultiDiscrete`` or ``Dict`` space."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):
        return {"type": "Box", "low": space.low.tolist(), "high": space.high.tolist(), "shape": list(space.shape),
                "dtype": str(space.dtype)}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": to_jsonable(space.n)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "dtype": str(space.dtype)}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(s) for k, s in space.spaces.items()}}
    raise ValueError(f"cannot describe {space} as JSON: use Discrete, Box, MultiBinary, MultiDiscrete or Dict")


def space_from_json(data: dict) -> gym.Space:
    """The space :func:`space_to_json` described."""
    kind = data.get("type")
    if kind == "Discrete":
        return spaces.Discrete(data["n"], start=data.get("start", 0))
    if kind == "Box":
        dtype = np.dtype(data["dtype"])
        return spaces.Box(np.asarray(data["low"], dtype), np.asarray(data["high"], dtype), tuple(data["shape"]), dtype)
    if kind == "MultiBinary":
        return spaces.MultiBinary(data["n"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(data["nvec"], dtype=data["dtype"])
    if kind == "Dict":
        return spaces.Dict({k: space_from_json(s) for k, s in data["spaces"].items()})
    raise ValueError(f"unknown space type {kind!r} in {data!r}")


def from_jsonable(space: gym.Space, value: Any) -> Any:
    """The observation of ``space`` whose JSON form is ``value`` (arrays with the space's dtype)."""
    if isinstance(space, spaces.Dict):
        return {k: from_jsonable(s, value[k]) for k, s in space.spaces.items()}
    if isinstance(space, spaces.Discrete):
        return np.int64(value)
    return np.asarray(value, dtype=space.dtype)


# ---------------------------------------------------------------------------------------- wire types
class TextgymAction(Action):
    """One action: ``{"action": <int>}``, an id of the env's ``Discrete`` action space.

    The field is checked by the environment (not by the schema) so that a wrong type or an unknown
    field gets an error that names it, instead of a bare validation failure.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    action: Any = Field(default=None, description="one id of the env's Discrete action space (a token id, a cell)")


class TextgymObservation(Observation):
    """What ``reset`` and ``step`` return: the Gymnasium observation, ``info`` and the two end flags."""

    observation: Any = Field(default=None, description="the Gymnasium observation as JSON (lists, dicts of lists)")
    info: dict[str, Any] = Field(default_factory=dict, description="the step's info, arrays as lists")
    terminated: bool = Field(default=False, description="the episode really ended (EOS, game over)")
    truncated: bool = Field(default=False, description="a limit ended the episode (max_new_tokens)")


class TextgymState(State):
    """The session's state: OpenEnv's ``episode_id`` and ``step_count``, the env id, whether it is over."""

    env_id: str = Field(default="", description="the Gymnasium id of the served env")
    episode_over: bool = Field(default=True, description="no episode is running: send reset")


# ------------------------------------------------------------------------------------------- server
class TextgymEnvironment(Environment[TextgymAction, TextgymObservation, TextgymState]):
    """An OpenEnv ``Environment`` around one Gymnasium env; the server makes one per session.

    ``reset(seed=None, episode_id=None, options=None)`` calls the env's ``reset(seed=, options=)``;
    ``step`` takes a :class:`TextgymAction`. Bad input raises ``ValueError`` / ``TypeError`` naming what
    was wrong (OpenEnv sends the message back as an ``EXECUTION_ERROR``; the session stays usable), and
    stepping before ``reset`` or after the episode ended raises ``RuntimeError``.

    Args:
        env_id: a registered Gymnasium id (``textgym/TicTacToe-v0``, ``textgym/Sentiment-v0``, ...).
        env_kwargs: keyword arguments of ``gymnasium.make``.
    """

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self, env_id: str, env_kwargs: dict | None = None):
        super().__init__()
        self.env = make_env(env_id, env_kwargs)
        self.env_id = env_id
        self._state = TextgymState(env_id=env_id)

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> TextgymObservation:
        """Start an episode; ``options`` (the only other argument) goes to the env's ``reset``."""
        unknown = sorted(set(kwargs) - {"options"})
        if unknown:
            raise ValueError(f"unknown reset argument(s) {unknown}; reset takes seed, episode_id and options")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise TypeError(f"seed must be a whole number >= 0 or null, got {seed!r}")
        options = kwargs.get("options")
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"options must be an object (a dict), got {type(options).__name__}")
        obs, info = self.env.reset(seed=seed, options=options)
        self._state = TextgymState(env_id=self.env_id, episode_id=episode_id, step_count=0, episode_over=False)
        return TextgymObservation(observation=to_jsonable(obs), info=to_jsonable(info), reward=None, done=False)

    def step(self, action: TextgymAction, timeout_s: float | None = None, **kwargs: Any) -> TextgymObservation:
        """Take one action; the reward and both end flags come back with the observation."""
        if self._state.episode_over:
            raise RuntimeError("no episode is running (it ended, or reset was never sent): send reset first")
        value = check_action(action, cast(spaces.Discrete, self.env.action_space))  # make_env checked it
        obs, reward, terminated, truncated, info = self.env.step(value)
        over = bool(terminated or truncated)
        self._state.step_count += 1
        self._state.episode_over = over
        return TextgymObservation(observation=to_jsonable(obs), info=to_jsonable(info), reward=float(reward),
                                  done=over, terminated=bool(terminated), truncated=bool(truncated))

    @property
    def state(self) -> TextgymState:
        """The session's state (episode id, steps taken, whether the episode is over)."""
        return self._state

    def get_metadata(self) -> EnvironmentMetadata:
        """The env id and its spaces."""
        from textgym import __version__

        return EnvironmentMetadata(name=self.env_id, version=__version__,
                                   description=f"textgym env {self.env_id}: action {self.env.action_space}, "
                                               f"observation {self.env.observation_space}")

    def close(self) -> None:
        """Close the Gymnasium env."""
        self.env.close()


def make_env(env_id: str, env_kwargs: dict | None = None) -> gym.Env:
    """``gymnasium.make(env_id, **env_kwargs)`` with textgym's ids registered and a clear unknown-id error."""
    import textgym

    if not isinstance(env_id, str) or env_id not in gym.registry:
        raise ValueError(f"unknown env id {env_id!r}; textgym registers {sorted(textgym.ENV_IDS)} "
                         "(import the package that registers any other id before serving it)")
    if env_kwargs is not None and not isinstance(env_kwargs, dict):
        raise TypeError(f"env_kwargs must be a dict of gymnasium.make keyword arguments, got {env_kwargs!r}")
    try:
        env = gym.make(env_id, **(env_kwargs or {}))
    except TypeError as err:
        raise ValueError(f"{env_id} does not take the keyword arguments {env_kwargs}: {err}") from err
    if not isinstance(env.action_space, spaces.Discrete):
        env.close()
        raise ValueError(f"{env_id} has action space {env.action_space}; textgym serves Discrete action spaces")
    return env


def check_action(action: TextgymAction, space: spaces.Discrete) -> int:
    """The action id in ``action``, or a ``ValueError`` / ``TypeError`` naming what is wrong with it."""
    extra = sorted(action.model_extra or {})
    if extra:
        raise ValueError(f"unknown action field(s) {extra}; send {{\"action\": <int>}}")
    value = action.action
    if value is None:
        raise ValueError("the action has no 'action' field; send {\"action\": <int>}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"action must be one integer id of {space}, got {type(value).__name__} {value!r:.80}")
    if not space.contains(value):
        raise ValueError(f"action {value} is outside the action space {space}: ids run from {space.start} "
                         f"to {space.start + space.n - 1}")
    return value


def make_app(env_id: str, env_kwargs: dict | None = None, *, max_sessions: int = 4) -> FastAPI:
    """OpenEnv's FastAPI app serving ``env_id``: one env per WebSocket session (``/ws``), at most ``max_sessions``.

    The env is built once here, so an unknown id or bad keyword arguments fail now, not per session.

    Args:
        env_id: a registered Gymnasium id.
        env_kwargs: keyword arguments of ``gymnasium.make``.
        max_sessions: sessions open at once; one more is refused with OpenEnv's ``CAPACITY_REACHED``. A
            session ends with its WebSocket: a client that closes, dies or stops answering pings
            (20 s) frees it.
    """
    from openenv.core.env_server.types import ConcurrencyConfig

    if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
        raise ValueError(f"max_sessions must be a whole number >= 1, got {max_sessions!r}")
    probe = make_env(env_id, env_kwargs)
    described = {"observation_space": space_to_json(probe.observation_space),
                 "action_space": space_to_json(probe.action_space)}
    probe.close()
    kwargs = dict(env_kwargs or {})

    def factory() -> TextgymEnvironment:
        return TextgymEnvironment(env_id, kwargs)

    config = ConcurrencyConfig(max_concurrent_envs=max_sessions)
    server = HTTPEnvServer(factory, TextgymAction, TextgymObservation, concurrency_config=config,
                           state_cls=TextgymState)
    app = FastAPI(title=f"textgym {env_id} (OpenEnv)")
    server.register_routes(app, mode="simulation")
    app.get("/spaces", tags=["Environment Info"])(lambda: described)
    app.get("/capacity", tags=["Environment Info"])(lambda: server.get_capacity_status().model_dump())
    return app


def serve(env_id: str, env_kwargs: dict | None = None, *, host: str = "127.0.0.1", port: int = 8000,
          max_sessions: int = 4, max_message_bytes: int = MAX_MESSAGE_BYTES, log_level: str = "warning") -> None:
    """Serve ``env_id`` over OpenEnv's protocol until stopped (uvicorn; Ctrl-C or SIGTERM stops it).

    Args:
        env_id: a registered Gymnasium id.
        env_kwargs: keyword arguments of ``gymnasium.make``.
        host: the address to bind (``127.0.0.1``: this machine only; ``0.0.0.0``: every interface).
        port: the TCP port.
        max_sessions: sessions open at once (see :func:`make_app`).
        max_message_bytes: the largest WebSocket message read; a bigger one closes its connection (1009).
        log_level: uvicorn's log level.
    """
    app = make_app(env_id, env_kwargs, max_sessions=max_sessions)
    run_app(app, host=host, port=port, max_message_bytes=max_message_bytes, log_level=log_level)


def run_app(app: FastAPI, *, host: str = "127.0.0.1", port: int = 8000, max_message_bytes: int = MAX_MESSAGE_BYTES,
            log_level: str = "warning") -> None:
    """Run an app of :func:`make_app` under uvicorn until stopped (the arguments as :func:`serve`'s)."""
    if isinstance(max_message_bytes, bool) or not isinstance(max_message_bytes, int) or max_message_bytes < 1024:
        raise ValueError(f"max_message_bytes must be a whole number >= 1024, got {max_message_bytes!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be a whole number 0-65535, got {port!r}")
    uvicorn.run(app, host=host, port=port, ws_max_size=max_message_bytes, log_level=log_level,
                ws_ping_interval=20.0, ws_ping_timeout=20.0)


# ------------------------------------------------------------------------------------------- client
def open_url(url: str, timeout: float) -> Any:
    """``urlopen(url)``, bypassing any HTTP proxy for a loopback host (as OpenEnv's client does)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    handlers = [urllib.request.ProxyHandler({})] if host in ("127.0.0.1", "localhost", "::1") else []
    return urllib.request.build_opener(*handlers).open(url, timeout=timeout)


def _info_from_json(info: dict) -> dict:
    """``info`` with lists of numbers back as numpy arrays (``action_mask`` as int8, as textgym envs give it)."""
    out = {}
    for key, value in info.items():
        if key == "action_mask" and isinstance(value, list):
            out[key] = np.asarray(value, dtype=np.int8)
        elif isinstance(value, list) and all(isinstance(v, int | float) for v in value):
            out[key] = np.asarray(value)
        else:
            out[key] = value
    return out


class OpenEnvGymEnv(gym.Env):
    """A Gymnasium env that steps a remote OpenEnv env, so textgym's agents train on envs others serve.

    Each instance holds one OpenEnv session (one WebSocket, OpenEnv's ``GenericEnvClient``), opened at
    the first ``reset``. Against a ``textgym serve`` server everything is rebuilt exactly: the spaces
    (from ``GET /spaces``), the observation (arrays of the space's dtype), ``info`` and the two end
    flags. Against another server, pass the spaces and, where its wire format differs,
    ``to_action`` (Gymnasium action -> the action dict the server takes) and ``from_observation``
    (the server's observation dict -> the Gymnasium observation).

    Action Space:
        ``action_space`` (given, or the served env's).

    Observation Space:
        ``observation_space`` (given, or the served env's).

    Rewards:
        The server's reward of each step (``0.0`` where it sends none).

    Episode End:
        ``terminated`` and ``truncated`` as the server reports them; a server that sends OpenEnv's
        ``done`` only ends episodes with ``terminated=done``.

    Information:
        The served env's ``info`` (lists of numbers as numpy arrays, ``action_mask`` as int8) plus
        ``openenv_metadata`` where the server sends metadata.

    Arguments:
        base_url: the server (``http://host:port`` or ``ws://host:port``).
        observation_space: the observation space (default: the server's ``/spaces``).
        action_space: the action space (default: the server's ``/spaces``).
        to_action: Gymnasium action -> action dict (default ``{"action": int(a)}``).
        from_observation: observation dict -> Gymnasium observation (default: the ``observation`` field,
            cast to ``observation_space``).
        connect_timeout_s: seconds to open the WebSocket.
        message_timeout_s: seconds to wait for each answer.

    Version History:
        * v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(self, base_url: str, observation_space: gym.Space | None = None, action_space: gym.Space | None = None,
                 *, to_action: Callable[[Any], dict] | None = None,
                 from_observation: Callable[[dict], Any] | None = None,
                 connect_timeout_s: float = 10.0, message_timeout_s: float = 60.0):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://", "ws://", "wss://")):
            raise ValueError(f"base_url must be http(s):// or ws(s):// of an OpenEnv server, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        if observation_space is None or action_space is None:
            served = self._served_spaces(connect_timeout_s)
            observation_space = observation_space or space_from_json(served["observation_space"])
            action_space = action_space or space_from_json(served["action_space"])
        self.observation_space, self.action_space = observation_space, action_space
        self.to_action = to_action or (lambda a: {"action": int(a)})
        self.from_observation = from_observation or (
            lambda obs: from_jsonable(self.observation_space, obs["observation"]))
        self._client = GenericEnvClient(base_url=self.base_url, connect_timeout_s=connect_timeout_s,
                                        message_timeout_s=message_timeout_s).sync()

    def _served_spaces(self, timeout: float) -> dict:
        url = self.base_url.replace("ws://", "http://", 1).replace("wss://", "https://", 1) + "/spaces"
        try:
            with open_url(url, timeout) as answer:
                return json.loads(answer.read())
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise ValueError(f"could not read the spaces from {url} ({err}); a server other than `textgym serve` "
                             "needs observation_space and action_space passed in") from err

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        """Reset the remote env (its own seeding: the same seed gives the same episode)."""
        super().reset(seed=seed)
        data: dict[str, Any] = {"seed": seed} if seed is not None else {}
        if options is not None:
            data["options"] = options
        result = self._client.reset(**data)
        return self.from_observation(result.observation), self._info(result)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """Send one action; the server's reward and end flags come back."""
        result = self._client.step(self.to_action(action))
        obs = result.observation
        terminated = bool(obs.get("terminated", result.done))
        truncated = bool(obs.get("truncated", False))
        reward = 0.0 if result.reward is None else float(result.reward)
        if not math.isfinite(reward):
            raise ValueError(f"the server at {self.base_url} sent a non-finite reward {result.reward!r}")
        return self.from_observation(obs), reward, terminated, truncated, self._info(result)

    def _info(self, result: Any) -> dict:
        info = _info_from_json(result.observation.get("info", {}) or {})
        if result.metadata:
            info["openenv_metadata"] = result.metadata
        return info

    def close(self) -> None:
        """Close the session (the server frees its env)."""
        self._client.close()
