"""textgym over OpenEnv: ``textgym serve`` checked with OpenEnv's own client, and OpenEnvGymEnv against it.

The served tests start ``textgym serve`` in a subprocess on 127.0.0.1 (a free port), talk to it only
over loopback, wait in bounded loops and stop the server themselves.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("openenv")

from openenv.core import GenericEnvClient  # noqa: E402

import textgym  # noqa: E402,F401
from textgym.app.cli import main  # noqa: E402
from textgym.integrations.openenv import (  # noqa: E402
    OpenEnvGymEnv,
    TextgymAction,
    TextgymEnvironment,
    open_url,
    space_from_json,
    space_to_json,
)

ROOT = Path(__file__).parent.parent.parent
STARTUP_S = 180.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str) -> dict:
    """GET ``url`` (loopback) as JSON, with a timeout."""
    with open_url(url, timeout=10) as answer:
        return json.loads(answer.read())


def python_env() -> dict:
    """This process's environment with the repository first on ``PYTHONPATH`` (the subprocess imports this code).

    One torch thread, as in this process (``conftest``): the reference log-probs then agree to the bit.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


class Server:
    """``textgym serve ENV_ID`` in a subprocess; ``url`` once it answers ``/health``."""

    def __init__(self, env_id: str, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "textgym.app.cli", "serve", env_id, "--port", str(self.port), *args],
            env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"textgym serve exited with {self.process.returncode}: {self.process.stderr.read()}")
            try:
                get_json(f"{self.url}/health")
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"textgym serve {env_id} did not answer within {STARTUP_S} s")

    def sessions(self) -> int:
        """Sessions open on the server (OpenEnv's count, from ``/capacity``)."""
        return get_json(f"{self.url}/capacity")["active_sessions"]

    def wait_sessions(self, n: int, timeout: float = 15.0) -> int:
        """Poll the session count until it is ``n`` or ``timeout`` passes; the last count."""
        deadline = time.monotonic() + timeout
        while (count := self.sessions()) != n and time.monotonic() < deadline:
            time.sleep(0.2)
        return count

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.process.stderr.close()


@pytest.fixture(scope="module")
def board_server():
    """``textgym/TicTacToe-v0`` served with at most 3 sessions."""
    server = Server("textgym/TicTacToe-v0", "--max-sessions", "3")
    yield server
    server.stop()


#: The text server's env: TextTicTacToe-v0 with a KL coefficient other than its default (0.05).
TEXT_KWARGS = {"kl_coef": 0.1}


@pytest.fixture(scope="module")
def text_server():
    """``textgym/TextTicTacToe-v0`` (a multi-turn text env: a reference LM, KL terms, the env's own tokens).

    Served with ``TEXT_KWARGS`` and a 64 KiB message limit (both options at values other than their defaults).
    """
    server = Server("textgym/TextTicTacToe-v0", "--max-sessions", "2", "--env-kwargs", json.dumps(TEXT_KWARGS),
                    "--max-message-bytes", str(64 << 10))
    yield server
    server.stop()


def choose(rng: np.random.Generator, info: dict, n: int) -> int:
    """A random action, legal where ``info`` has an action mask."""
    mask = info.get("action_mask")
    allowed = np.flatnonzero(np.asarray(mask)) if mask is not None else np.arange(n)
    return int(rng.choice(allowed))


def local_episode(env_id: str, seed: int, **kwargs) -> list[tuple]:
    """(observation, reward, terminated, truncated, info) of each step of a seeded episode, in process."""
    env = gym.make(env_id, **kwargs)
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    steps, done = [(obs, None, False, False, info)], False
    while not done:
        obs, reward, terminated, truncated, info = env.step(choose(rng, info, env.action_space.n))
        steps.append((obs, float(reward), terminated, truncated, info))
        done = terminated or truncated
    env.close()
    return steps


def same_info(remote: dict, local: dict) -> None:
    """Every key of ``local`` came over the wire with the same value (arrays as lists)."""
    assert set(remote) == set(local)
    for key, value in local.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(np.asarray(remote[key]), value), key
        elif isinstance(value, dict):
            same_info(remote[key], value)
        else:
            assert remote[key] == (value.item() if isinstance(value, np.generic) else value), key


def check_wire_episode(result, local_step) -> None:
    """One OpenEnv ``StepResult`` equals the in-process step."""
    obs, reward, terminated, truncated, info = local_step
    remote = result.observation
    if isinstance(obs, dict):
        assert all(np.array_equal(np.asarray(remote["observation"][k]), v) for k, v in obs.items())
    else:
        assert np.array_equal(np.asarray(remote["observation"], dtype=obs.dtype), obs)
    assert result.reward == reward
    assert (remote["terminated"], remote["truncated"], result.done) == (terminated, truncated, terminated or truncated)
    same_info(remote["info"], info)


# -------------------------------------------------------------------------------- without a server
def test_spaces_survive_their_json_form():
    """Every space textgym registers comes back equal from its JSON form."""
    for env_id in ("textgym/TicTacToe-v0", "textgym/TinyLanguage-v0"):
        env = gym.make(env_id)
        for space in (env.observation_space, env.action_space):
            assert space_from_json(json.loads(json.dumps(space_to_json(space)))) == space
        env.close()


def test_the_environment_refuses_bad_input_by_name():
    """Wrong types, ids outside the space, unknown fields, steps outside an episode: errors that say what to do."""
    env = TextgymEnvironment("textgym/TicTacToe-v0")
    with pytest.raises(RuntimeError, match="send reset first"):
        env.step(TextgymAction(action=0))
    env.reset(seed=0)
    with pytest.raises(TypeError, match="one integer id of Discrete"):
        env.step(TextgymAction(action=1.5))
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(TextgymAction(action=-1))
    with pytest.raises(ValueError, match=r"unknown action field\(s\) \['cell'\]"):
        env.step(TextgymAction(cell=3))
    with pytest.raises(ValueError, match="unknown reset argument"):
        env.reset(sed=0)
    with pytest.raises(TypeError, match="seed must be"):
        env.reset(seed="0")
    with pytest.raises(ValueError, match="unknown env id 'textgym/Nope-v0'"):
        TextgymEnvironment("textgym/Nope-v0")


def test_serve_refuses_an_unknown_id_and_bad_kwargs(capsys):
    """``textgym serve`` has help; it exits 2 naming an unknown id (and the ids it knows), or a bad option value."""
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0 and "usage: textgym serve" in capsys.readouterr().out
    assert main(["serve", "textgym/Nope-v0"]) == 2
    assert "unknown env id 'textgym/Nope-v0'" in capsys.readouterr().err
    assert main(["serve", "textgym/TicTacToe-v0", "--env-kwargs", "[1]"]) == 2
    assert "--env-kwargs must be a JSON object" in capsys.readouterr().err
    assert main(["serve", "textgym/TicTacToe-v0", "--env-kwargs", '{"colour": "red"}']) == 2
    assert "does not take the keyword arguments" in capsys.readouterr().err
    assert main(["serve", "textgym/TicTacToe-v0", "--max-sessions", "0"]) == 2
    assert "max_sessions must be a whole number >= 1" in capsys.readouterr().err
    assert main(["serve", "textgym/TicTacToe-v0", "--max-message-bytes", "10"]) == 2
    assert "max_message_bytes must be a whole number >= 1024" in capsys.readouterr().err
    assert main(["serve", "textgym/TicTacToe-v0", "--port", "70000"]) == 2
    assert "port must be a whole number 0-65535" in capsys.readouterr().err


def test_serve_without_the_extra_says_what_to_install(monkeypatch, capsys):
    """Without OpenEnv installed, ``textgym serve`` exits 2 naming the extra to install."""
    for name in [m for m in sys.modules if m == "openenv" or m.startswith("openenv.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "textgym.integrations.openenv")
    assert main(["serve", "textgym/TicTacToe-v0"]) == 2
    assert "pip install 'textgym[openenv]'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ over the wire
@pytest.mark.slow
@pytest.mark.parametrize("which", ["board", "text"])
def test_the_same_seed_gives_the_same_episode_as_in_process(which, request):
    """Observations, rewards, end flags and every info key (KL terms, masks, per-turn rewards) match exactly."""
    server = request.getfixturevalue(f"{which}_server")
    env_id = {"board": "textgym/TicTacToe-v0", "text": "textgym/TextTicTacToe-v0"}[which]
    kwargs = TEXT_KWARGS if which == "text" else {}
    n = gym.make(env_id).action_space.n
    for seed in (0, 7):
        local = local_episode(env_id, seed, **kwargs)
        rng = np.random.default_rng(seed)
        with GenericEnvClient(base_url=server.url).sync() as client:
            result = client.reset(seed=seed)
            check_wire_episode(result, local[0])
            for step in local[1:]:
                result = client.step({"action": choose(rng, result.observation["info"], n)})
                check_wire_episode(result, step)
    assert server.wait_sessions(0) == 0


@pytest.mark.slow
def test_sessions_on_one_server_keep_their_state_apart(board_server):
    """Three interleaved sessions with different seeds each play their own in-process episode."""
    seeds = (1, 2, 3)
    episodes = {seed: local_episode("textgym/TicTacToe-v0", seed) for seed in seeds}
    rngs = {seed: np.random.default_rng(seed) for seed in seeds}
    clients = {seed: GenericEnvClient(base_url=board_server.url).sync() for seed in seeds}
    try:
        last = {seed: clients[seed].reset(seed=seed) for seed in seeds}
        assert board_server.sessions() == 3
        for t in range(1, max(len(e) for e in episodes.values())):
            for seed in seeds:
                if t < len(episodes[seed]):
                    last[seed] = clients[seed].step({"action": choose(rngs[seed], last[seed].observation["info"], 9)})
                    check_wire_episode(last[seed], episodes[seed][t])
        assert {seed: clients[seed].state()["step_count"] for seed in seeds} == {
            seed: len(episodes[seed]) - 1 for seed in seeds}
        with GenericEnvClient(base_url=board_server.url).sync() as fourth, pytest.raises(
                RuntimeError, match="CAPACITY_REACHED"):
            fourth.reset(seed=0)
    finally:
        for client in clients.values():
            client.close()
    assert board_server.wait_sessions(0) == 0


@pytest.mark.slow
def test_bad_input_over_the_wire_gets_a_clear_error_and_the_server_keeps_serving(board_server):
    """Each bad message gets an error that names it; the session (or, after a huge message, the server) goes on."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with GenericEnvClient(base_url=board_server.url).sync() as client:
        with pytest.raises(RuntimeError, match="send reset first"):
            client.step({"action": 0})
        client.reset(seed=0)
        bad = [({"action": "four"}, "one integer id of Discrete\\(9\\), got str"),
               ({"action": [4]}, "one integer id"),
               ({"action": 9}, "outside the action space Discrete\\(9\\)"),
               ({"action": 10**30}, "outside the action space"),
               ({"cell": 4}, "unknown action field\\(s\\) \\['cell'\\]"),
               ({}, "no 'action' field")]
        for action, message in bad:
            with pytest.raises(RuntimeError, match=message):
                client.step(action)
        with pytest.raises(RuntimeError, match="seed must be"):
            client.reset(seed="zero")
        with pytest.raises(RuntimeError, match="unknown reset argument"):
            client.reset(prompt="hi")
        result, rng = client.reset(seed=5), np.random.default_rng(5)
        while not result.done:  # the session still plays a whole game after all that
            result = client.step({"action": choose(rng, result.observation["info"], 9)})
        with pytest.raises(RuntimeError, match="no episode is running"):
            client.step({"action": 0})
    ws_url = board_server.url.replace("http://", "ws://") + "/ws"
    with connect(ws_url, open_timeout=10, close_timeout=5) as ws:
        ws.send("{not json")
        assert json.loads(ws.recv(timeout=10))["data"]["code"] == "INVALID_JSON"
        ws.send(json.dumps({"type": "jump"}))
        assert "Unknown message type: jump" in json.loads(ws.recv(timeout=10))["data"]["message"]
        ws.send(json.dumps({"type": "step", "data": {"action": 0}, "extra": "x" * (2 << 20)}))  # over the 1 MiB limit
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1009  # message too big
    assert board_server.wait_sessions(0) == 0
    with GenericEnvClient(base_url=board_server.url).sync() as client:
        check_wire_episode(client.reset(seed=0), local_episode("textgym/TicTacToe-v0", 0)[0])


@pytest.mark.slow
def test_a_lower_message_limit_closes_only_the_oversized_connection(text_server):
    """Served with ``--max-message-bytes 65536``: a 100 kB step closes its connection (1009), a 60 kB one is read."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    ws_url = text_server.url.replace("http://", "ws://") + "/ws"
    with connect(ws_url, open_timeout=10, close_timeout=5) as ws:
        ws.send(json.dumps({"type": "reset", "data": {"seed": 0}}))
        assert json.loads(ws.recv(timeout=30))["type"] == "observation"
        ws.send(json.dumps({"type": "step", "data": {"action": 0, "pad": "x" * (60 << 10)}}))
        assert "unknown action field(s) ['pad']" in json.loads(ws.recv(timeout=30))["data"]["message"]
        ws.send(json.dumps({"type": "step", "data": {"action": 0, "pad": "x" * 100_000}}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd.code == 1009
    assert text_server.wait_sessions(0) == 0


@pytest.mark.slow
def test_a_killed_client_leaves_no_session(board_server):
    """A client process killed mid-episode (SIGKILL): the server closes its session within seconds."""
    code = ("import sys, time\nfrom openenv.core import GenericEnvClient\n"
            f"c = GenericEnvClient(base_url='{board_server.url}').sync()\nc.reset(seed=0)\nc.step({{'action': 4}})\n"
            "print('ready', flush=True)\ntime.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=python_env())
    try:
        deadline = time.monotonic() + 120
        while board_server.sessions() != 1 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.2)
        assert child.stdout.readline().strip() == "ready"
        assert board_server.sessions() == 1
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert board_server.wait_sessions(0, timeout=15) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        child.stdout.close()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["board", "text"])
def test_a_gymnasium_env_stepping_the_server_equals_the_env_in_process(which, request):
    """OpenEnvGymEnv rebuilds the spaces, observations (dtypes too), rewards and info of the in-process env."""
    server = request.getfixturevalue(f"{which}_server")
    env_id = {"board": "textgym/TicTacToe-v0", "text": "textgym/TextTicTacToe-v0"}[which]
    local = gym.make(env_id, **(TEXT_KWARGS if which == "text" else {}))
    remote = OpenEnvGymEnv(server.url)
    assert (remote.observation_space, remote.action_space) == (local.observation_space, local.action_space)
    for seed in (3, 4):
        steps = []
        for env in (local, remote):
            rng = np.random.default_rng(seed)
            obs, info = env.reset(seed=seed)
            episode, done = [(obs, info)], False
            while not done:
                obs, reward, terminated, truncated, info = env.step(choose(rng, info, env.action_space.n))
                episode.append((obs, reward, terminated, truncated, info))
                done = terminated or truncated
            steps.append(episode)
        assert len(steps[0]) == len(steps[1])
        for here, there in zip(*steps, strict=True):
            for a, b in zip(here, there, strict=True):
                if isinstance(a, dict) and "input_ids" in a:
                    assert all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
                elif isinstance(a, dict):
                    same_info(b, a)
                    if "action_mask" in a:
                        assert b["action_mask"].dtype == np.int8
                elif isinstance(a, np.ndarray):
                    assert np.array_equal(a, b) and a.dtype == b.dtype
                else:
                    assert a == b
    remote.close()
    local.close()
    assert server.wait_sessions(0) == 0


@pytest.mark.slow
def test_the_client_env_passes_gymnasiums_checker_and_a_textgym_agent_trains_on_it(board_server):
    """Gymnasium's env checker passes on the remote env; PPO from ``agents`` runs updates on two remote sessions."""
    from gymnasium.utils.env_checker import check_env

    from agents.ppo import PPO, MLPPolicy, PPOConfig

    env = OpenEnvGymEnv(board_server.url)
    check_env(env, skip_render_check=True)
    env.close()
    envs = gym.vector.SyncVectorEnv([lambda: OpenEnvGymEnv(board_server.url)] * 2,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    agent = PPO(MLPPolicy(18, 9, (16, 16)), PPOConfig(num_steps=8, num_minibatches=2, update_epochs=1, seed=0))
    logs = agent.learn(envs, total_steps=32)
    envs.close()
    assert len(logs) == 2 and all(np.isfinite(log["losses/policy_loss"]) for log in logs)
    assert board_server.wait_sessions(0) == 0
