"""Shared fixtures: a word-level tokenizer and a random tiny GPT-2, both built offline.

The tokenizer follows GPT-2's convention that EOS, BOS and pad are one token (id 0), so every
test exercises the pad == EOS case.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textgym.models.tiny import random_causal_lm, word_tokenizer
from textgym.rewards import KeywordReward

WORDS = [f"w{i}" for i in range(1, 48)]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    """Provide the offline word-level tokenizer over ``WORDS`` (EOS, BOS and pad share id 0)."""
    return word_tokenizer(WORDS)


@pytest.fixture(scope="session")
def lm(tokenizer):
    """Provide a random two-layer tiny GPT-2 sized to the tokenizer's vocabulary."""
    return random_causal_lm(len(tokenizer), n_layer=2, n_embd=32, n_positions=64, seed=0)


class WordParts:
    """+1 for each occurrence of ``word``, earned where the word ends (a reward with ``parts``)."""

    def __init__(self, word):
        self.word, self.name = word, f"parts[{word}]"

    def __call__(self, prompts, completions):
        """The number of times the word occurs."""
        return np.array([sum(v for _, v in self._ends(c)) for c in completions], float)

    def parts(self, prompts, completions):
        """One part of 1 at the end of each occurrence."""
        return [(np.array([e for e, _ in self._ends(c)], int), np.array([v for _, v in self._ends(c)]))
                for c in completions]

    def _ends(self, completion):
        return [(i + len(self.word), 1.0) for i in range(len(completion)) if completion.startswith(self.word, i)
                and completion[i + len(self.word):i + len(self.word) + 1] in ("", " ")]


@pytest.fixture(scope="session")
def word_parts():
    """Provide :class:`WordParts`, a reward that earns its score in parts (for ``credit="token"``)."""
    return WordParts


@pytest.fixture
def env_kwargs(lm, tokenizer):
    """Keyword arguments for ``textgym/TextGeneration-v0`` on the tiny model."""
    return dict(model=lm, tokenizer=tokenizer, prompts=["w1 w2 w3", "w4", "w5 w6", "w7 w8 w9 w10"],
                reward_fn=KeywordReward(["w3", "w5"]), max_context=16, max_new_tokens=6)


class FakeCuda:
    """CUDA tensors without a GPU: ``torch._subclasses.fake_tensor.FakeTensorMode`` with shapes and devices only.

    On a CPU-only torch, fake tensors can live on ``"cuda"`` and an op that mixes devices raises, but
    a few Python-level tensor methods (``x[i]``, ``x[i] = y``, ``x.to("cuda")``, ``x.contiguous()``) ask
    for a CUDA device guard that such a build lacks. A torch-function mode runs those on the fake
    tensors' CPU twins and puts the results back on ``"cuda"``, after checking, as CUDA would, that no
    host tensor takes part. Data-dependent calls (``.item()``, ``.tolist()``, ``.numpy()``) raise, as
    they should in code that runs on a device.
    """

    def __init__(self) -> None:
        from torch._subclasses.fake_tensor import FakeTensorMode

        self.mode = FakeTensorMode(allow_non_fake_inputs=True)

    def __enter__(self):
        self.mode.__enter__()
        self._patch = _CudaMethods()
        self._patch.__enter__()
        return self

    def __exit__(self, *exc):
        self._patch.__exit__(*exc)
        return self.mode.__exit__(*exc)

    @staticmethod
    def module(module: torch.nn.Module) -> torch.nn.Module:
        """Replace every parameter and buffer of ``module`` by a fake CUDA tensor of the same shape and dtype."""
        for mod in module.modules():
            for name, param in list(mod._parameters.items()):
                if param is not None:
                    mod._parameters[name] = torch.nn.Parameter(torch.empty_like(param, device="cuda"),
                                                               requires_grad=False)
            for name, buffer in list(mod._buffers.items()):
                if buffer is not None:
                    mod._buffers[name] = torch.empty_like(buffer, device="cuda")
        return module


class _CudaMethods(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        from torch._subclasses.fake_tensor import FakeTensor
        from torch.utils._pytree import tree_flatten

        kwargs = kwargs or {}
        flat = tree_flatten((args, kwargs))[0]
        if func in (torch.Tensor.to, torch.Tensor.cuda):
            target = _target(func, flat)
            if target is not None and target.type == "cuda":
                dtype = next((a for a in flat[1:] if isinstance(a, torch.dtype)), None)
                return torch.ops.aten._to_copy(args[0], device=torch.device("cuda", 0), dtype=dtype or args[0].dtype)
        fakes = [t for t in flat if isinstance(t, FakeTensor) and t.fake_device.type == "cuda"]
        if not fakes or func is torch.Tensor.cpu:
            return func(*args, **kwargs)
        hosts = [t for t in flat if isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.dim() > 0]
        if hosts:
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"cuda:0 and cpu! (in {getattr(func, '__name__', func)})")
        for tensor in fakes:
            tensor.fake_device = torch.device("cpu")
        try:
            out = func(*args, **kwargs)
        finally:
            for tensor in fakes:
                tensor.fake_device = torch.device("cuda", 0)
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, FakeTensor) and tensor.fake_device.type == "cpu":
                tensor.fake_device = torch.device("cuda", 0)
        return out


def _target(func, flat):
    if func is torch.Tensor.cuda:
        return torch.device("cuda", 0)
    for arg in flat[1:]:
        if isinstance(arg, str | torch.device):
            return torch.device(arg)
        if isinstance(arg, torch.Tensor):
            return arg.device
    return None


@pytest.fixture
def fake_cuda() -> FakeCuda:
    """A context in which tensors can be fake CUDA tensors (:class:`FakeCuda`)."""
    return FakeCuda()
