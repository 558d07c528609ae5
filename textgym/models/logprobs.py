"""Log-probabilities of given tokens by teacher forcing, without materialising (tokens x vocab) fp32 logits.

With real vocabularies (Qwen2: 151,936 tokens) the logits of a teacher-forced pass are the memory
peak of RL training: 8 episodes x 64 tokens x 151,936 in fp32 are 311 MB, and their log-softmax as
much again, per forward. :func:`token_logprobs` runs the model's trunk once, then applies the output
head to a few tokens at a time, keeping only each token's log-probability (and entropy); the
backward pass recomputes each chunk's logits instead of storing them (an explicit autograd
function, :class:`_ChunkedHead`), so the peak is one chunk's logits, about ``LOGITS_BUDGET`` floats.

Log-softmax, entropies and everything after them are fp32 whatever the model's dtype (the head's
matrix product runs in the model's dtype, as the model's own forward does).

Each token is scored under the distribution it was drawn from: restricted to the allowed actions
(an environment's action mask), then at a :class:`textgym.models.sampling.Sampling`'s temperature,
top-k and top-p, the scored token always kept (so a token the updated policy would cut away keeps a
finite log-probability, and a k3 KL stays finite).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from textgym.models import model_device, native_half
from textgym.models.kv import keep_last, left_pad_np, positions_from_mask
from textgym.models.precision import Fp32CopyLinear, Fp32Linear
from textgym.models.sampling import Sampling

#: fp32 logits alive at once per chunk of tokens (64 MB).
LOGITS_BUDGET = 1 << 24


@dataclass
class TokenScores:
    """What teacher forcing says about K target tokens of each of B sequences."""

    logprobs: torch.Tensor
    """(B, K) fp32: ``log p(target | context)``."""
    entropy: torch.Tensor | None = None
    """(B, K) fp32: entropy of the next-token distribution at each target's position (if asked)."""
    hidden: torch.Tensor | None = None
    """(B, K, H): the last hidden state that predicted each target (if asked; for a value head)."""


@dataclass
class HeadParts:
    """A causal LM split into its trunk and its output head (see :func:`split_model`)."""

    trunk: Callable[..., torch.Tensor]
    """``trunk(input_ids=, attention_mask=, position_ids=)`` -> last hidden states (B, W, H)."""
    head: nn.Linear
    """The output projection to the vocabulary."""
    softcap: float | None = None
    """Gemma-2 style final logit soft-capping."""
    scale: float = 1.0
    """Multiplier of the logits (Cohere's ``logit_scale``, Granite's ``1 / logits_scaling``)."""


def split_model(model: nn.Module) -> HeadParts | None:
    """The trunk and head of a Hugging Face causal LM (also inside peft), or None when it cannot be split.

    A wrapper can provide its own split with a ``head_parts()`` method (the LoRA reference does).
    """
    head_parts = getattr(model, "head_parts", None)
    if head_parts is not None:
        return head_parts()
    get_base_model = getattr(model, "get_base_model", None)
    inner = get_base_model() if get_base_model is not None else model
    get_head = getattr(inner, "get_output_embeddings", None)
    head = get_head() if get_head is not None else None
    trunk = getattr(inner, getattr(inner, "base_model_prefix", "") or "-", None)
    if not isinstance(head, nn.Linear) or type(head) not in (nn.Linear, Fp32Linear, Fp32CopyLinear):
        return None  # a head that is more than a product with one matrix
    if not isinstance(trunk, nn.Module) or trunk is inner:
        return None
    config = inner.config
    scale = float(getattr(config, "logit_scale", None) or 1.0) / float(getattr(config, "logits_scaling", None) or 1.0)
    return HeadParts(lambda **inputs: trunk(**inputs, use_cache=False)[0], head,
                     getattr(config, "final_logit_softcapping", None), scale)


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, softcap: float | None,
            scale: float) -> torch.Tensor:
    """fp32 logits (n, V) of hidden states (n, H): the head's product in ``weight``'s dtype, then fp32."""
    logits = F.linear(hidden.to(weight.dtype), weight, bias).float()
    if scale != 1:
        logits = logits * scale
    return softcap * torch.tanh(logits / softcap) if softcap else logits


def _scored(logits: torch.Tensor, targets: torch.Tensor, allowed: torch.Tensor | None,
            sampling: Sampling | None) -> torch.Tensor:
    """fp32 logits of the distribution each target was drawn from: the allowed actions, at ``sampling``'s settings."""
    return (sampling or Sampling()).logits(logits, allowed, keep=targets)


def head_dtype(weight: torch.Tensor) -> torch.dtype:
    """The head's matrix products run in the weights' dtype, or in fp32 on a CPU that emulates it.

    There (see :func:`textgym.models.native_half`) a chunked call pays for one fp32 copy of the
    head (545 MB for Qwen2-0.5B) instead of products many times slower.
    """
    return weight.dtype if native_half(weight.device, weight.dtype) else torch.float32


class _ChunkedHead(torch.autograd.Function):
    """Log-probabilities and entropies of targets through the output head, a chunk of tokens at a time.

    Forward keeps no logits of a call that takes several chunks; backward recomputes each chunk's and
    applies ``d log p(y) / d z = onehot(y) - p`` and ``d H / d z = -p * (z - E_p[z])`` (through the
    soft-capping, when there is one), so the peak is one chunk's logits either way. A call whose
    logits fit in half a chunk (a small vocabulary, a short batch) keeps them for its backward
    instead of multiplying by the head again. Entropies are computed only when asked for, and their
    term of the backward only when something depends on them (a loss with an entropy bonus).
    """

    @staticmethod
    def forward(ctx, hidden, targets, weight, bias, softcap, scale, rows, allowed=None, sampling=None,  # noqa: D102
                entropy=True):
        ctx.set_materialize_grads(False)
        logprobs = torch.empty(len(hidden), device=hidden.device)
        entropies = torch.empty(len(hidden) if entropy else 0, device=hidden.device)
        head = weight.to(head_dtype(weight))
        head_bias = None if bias is None else bias.to(head.dtype)
        keep = any(ctx.needs_input_grad[:4]) and 2 * len(hidden) <= rows  # one chunk, with room for its probs
        ctx.kept = None
        for start in range(0, len(hidden), rows):
            chunk = slice(start, start + rows)
            capped = _logits(hidden[chunk], head, head_bias, softcap, scale)  # (n, V)
            logits = _scored(capped, targets[chunk], None if allowed is None else allowed[chunk], sampling)
            log_p = logits.log_softmax(-1)  # one fused pass; cut tokens stay finite (the lowest float)
            target_logprobs = log_p.gather(-1, targets[chunk, None])  # (n, 1)
            logprobs[chunk] = target_logprobs.squeeze(-1)
            probs = log_p.exp_() if entropy or keep else None  # in place: log_p is not needed again
            if entropy:  # H = logsumexp(z) - E_p[z]
                lse = logits.gather(-1, targets[chunk, None]) - target_logprobs  # a target is never cut
                entropies[chunk] = lse.squeeze(-1) - torch.linalg.vecdot(probs, logits)
            if keep:
                ctx.kept = (capped, logits, probs)
        ctx.save_for_backward(hidden, targets, weight, bias, allowed)
        ctx.softcap, ctx.scale, ctx.rows, ctx.sampling = softcap, scale, rows, sampling
        if not entropy:
            ctx.mark_non_differentiable(entropies)
        return logprobs, entropies

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropies):  # noqa: D102
        hidden, targets, weight, bias, allowed = ctx.saved_tensors
        need_hidden, _, need_weight, need_bias = ctx.needs_input_grad[:4]
        grad_hidden = torch.zeros_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if need_weight else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if need_bias else None
        head = weight.to(head_dtype(weight))
        head_bias = None if bias is None else bias.to(head.dtype)
        for start in range(0, len(hidden), ctx.rows):
            chunk = slice(start, start + ctx.rows)
            if ctx.kept is not None:
                capped, logits, probs = ctx.kept
            else:
                capped = _logits(hidden[chunk], head, head_bias, ctx.softcap, ctx.scale)  # (n, V)
                logits = _scored(capped, targets[chunk], None if allowed is None else allowed[chunk], ctx.sampling)
                probs = None
            probs = logits.softmax(-1) if probs is None else probs  # (n, V), overwritten by the gradient
            entropy_term = None
            if grad_entropies is not None and grad_entropies.numel():  # d H / d z, times its gradient
                mean = torch.linalg.vecdot(probs, logits)[:, None]  # E_p[z]
                entropy_term = (logits - mean).mul_(probs).mul_(grad_entropies[chunk, None])
            if grad_logprobs is not None:  # d/dz of log p(y), times its gradient
                grad = probs.mul_(grad_logprobs[chunk, None].neg())
                grad.scatter_add_(-1, targets[chunk, None], grad_logprobs[chunk, None])
            else:
                grad = probs.zero_()
            if entropy_term is not None:
                grad -= entropy_term
            if ctx.sampling is not None and ctx.sampling.temperature != 1:
                grad /= ctx.sampling.temperature  # cut tokens have probability 0: no gradient through the cut
            if ctx.softcap:
                grad *= 1 - (capped / ctx.softcap) ** 2
            if ctx.scale != 1:
                grad *= ctx.scale  # (n, V): the gradient at the head's raw output
            if need_hidden:
                grad_hidden[chunk] = (grad.to(head.dtype) @ head).to(hidden.dtype)
            if need_weight:
                grad_weight.addmm_(grad.T, hidden[chunk].float())
            if need_bias:
                grad_bias += grad.sum(0)
        ctx.kept = None
        grad_weight = None if grad_weight is None else grad_weight.to(weight.dtype)
        grad_bias = None if grad_bias is None else grad_bias.to(bias.dtype)
        return grad_hidden, None, grad_weight, grad_bias, None, None, None, None, None, None


def token_logprobs(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, num_targets: int, *,
    num_actions: int | None = None, entropy: bool = False, hidden: bool = False, budget: int = LOGITS_BUDGET,
    allowed: torch.Tensor | None = None, sampling: Sampling | None = None,
) -> TokenScores:
    """Score the last ``num_targets`` tokens of each left-padded sequence by one teacher-forced forward.

    Args:
        model: A causal LM (plain, peft, or anything :func:`split_model` splits; others are run
            whole with ``logits_to_keep``).
        input_ids: (B, W) left-padded, on the model's device.
        attention_mask: (B, W), 1 on real tokens.
        num_targets: K: the targets are ``input_ids[:, -K:]``.
        num_actions: Score over the first ``num_actions`` vocabulary entries only (an environment
            whose action space is smaller than the model's vocabulary); None: all of them.
        entropy: Also compute each position's entropy.
        hidden: Also return the hidden states that predicted the targets.
        budget: fp32 logits per chunk.
        allowed: (B, K, A) bool, A the scored vocabulary (``num_actions`` or all of it): score each
            target under the distribution restricted to its allowed tokens (an environment's action
            mask), as a sampler that masks them draws it. None: every token is allowed.
        sampling: Score each target under the distribution a sampler with these settings draws from
            (temperature, top-k, top-p; module docstring). None: the model's own.

    Returns:
        :class:`TokenScores`, every tensor (B, K).
    """
    positions = positions_from_mask(attention_mask)
    targets = input_ids[:, -num_targets:]  # (B, K)
    if allowed is not None:
        width = num_actions or _output_rows(model)
        if allowed.shape != (*targets.shape, width):
            raise ValueError(f"allowed must be (batch, num_targets, actions) = {(*targets.shape, width)}, "
                             f"got {tuple(allowed.shape)}")
    parts = split_model(model)
    if parts is None:
        return _whole_model(model, input_ids, attention_mask, positions, num_targets, num_actions, entropy, hidden,
                            allowed, sampling)
    states = parts.trunk(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions)
    states = states[:, -num_targets - 1:-1]  # (B, K, H): the position before each target
    weight: torch.Tensor = parts.head.weight
    if isinstance(parts.head, Fp32CopyLinear) and not weight.requires_grad:
        weight = parts.head.fp32_weight  # a frozen tied head's fp32 copy, made once (textgym.models.precision)
    bias: torch.Tensor | None = parts.head.bias
    if num_actions is not None:
        weight, bias = weight[:num_actions], None if bias is None else bias[:num_actions]
    if not torch.is_grad_enabled():  # a Function sees requires_grad, not the grad mode: keep nothing for a backward
        weight, bias = weight.detach(), None if bias is None else bias.detach()
    flat, flat_targets = states.reshape(-1, states.shape[-1]), targets.reshape(-1)  # (B * K, H), (B * K,)
    rows = max(1, budget // weight.shape[0] // (4 if sampling is not None and sampling.truncates else 1))  # a sort
    flat_allowed = None if allowed is None else allowed.reshape(-1, allowed.shape[-1])  # (B * K, A)
    logprobs, entropies = _ChunkedHead.apply(flat, flat_targets, weight, bias, parts.softcap, parts.scale, rows,
                                             flat_allowed, sampling, entropy)
    return TokenScores(logprobs.view(targets.shape), entropies.view(targets.shape) if entropy else None,
                       states if hidden else None)


def _output_rows(model: nn.Module) -> int:
    """The rows of a causal LM's output head (its vocabulary): a transformers model, or peft's wrapper of one."""
    get_head: Any = model.get_output_embeddings
    return get_head().weight.shape[0]


def _vocab_size(model: nn.Module) -> int:
    """The vocabulary size in a causal LM's config: a transformers model, peft's wrapper of one, or a stand-in."""
    config: Any = model.config
    return config.vocab_size


def _whole_model(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor,
                 num_targets: int, num_actions: int | None, entropy: bool, hidden: bool,
                 allowed: torch.Tensor | None = None, sampling: Sampling | None = None) -> TokenScores:
    """The fallback for models that cannot be split: their own forward, logits of the last K + 1 positions."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                logits_to_keep=keep_last(num_targets + 1, input_ids.shape[1], input_ids.device),
                output_hidden_states=hidden)
    targets = input_ids[:, -num_targets:]  # (B, K)
    logp = torch.log_softmax(_scored(out.logits[:, :-1, :num_actions].float(), targets, allowed, sampling), -1)
    logprobs = logp.gather(-1, targets[..., None]).squeeze(-1)  # (B, K)
    ent = -(logp.exp() * logp).sum(-1) if entropy else None
    states = out.hidden_states[-1][:, -num_targets - 1:-1] if hidden else None
    return TokenScores(logprobs, ent, states)


@torch.no_grad()
def completion_logprobs(model: nn.Module, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                        pad_id: int, num_actions: int | None = None, budget: int = LOGITS_BUDGET,
                        allowed: Sequence[np.ndarray | None] | None = None, sampling: Sampling | None = None,
                        ) -> list[torch.Tensor]:
    """``log p(token | context)`` of every completion token, by teacher forcing (batched, chunked).

    Sequences are scored a few at a time so that one chunk's logits stay under about ``budget``
    floats even for models that cannot be split (:func:`split_model`).

    ``allowed`` (one bool array (completion length, A) or None per completion) restricts each
    token's distribution to the tokens allowed there, and ``sampling`` sets its temperature, top-k
    and top-p (:func:`token_logprobs`).

    Returns:
        One float64 tensor per completion, its length, on the host.
    """
    keep = max(len(c) for c in completions)
    vocab = num_actions or _vocab_size(model)
    rows = max(1, budget // ((keep + 1) * vocab))
    rows = -(-len(completions) // -(-len(completions) // rows))  # equal chunks: 16 rows in 8 + 8, not 15 + 1
    device = model_device(model)
    out: list[torch.Tensor] = []
    for start in range(0, len(completions), rows):
        chunk = range(start, min(start + rows, len(completions)))
        ids, mask = left_pad_np([[*prompts[i], *completions[i]] for i in chunk], pad_id)  # (n, W)
        batch = torch.from_numpy(np.stack([ids, mask])).to(device)  # (2, n, W): one transfer
        masks: torch.Tensor | None = None
        if allowed is not None and any(allowed[i] is not None for i in chunk):
            host = np.ones((len(chunk), keep, vocab), np.bool_)  # (n, K, A)
            for row, i in enumerate(chunk):
                row_allowed = allowed[i]
                if row_allowed is not None:
                    host[row, keep - len(completions[i]):] = row_allowed
            masks = torch.from_numpy(host).to(device)
        scores = token_logprobs(model, batch[0], batch[1], keep, num_actions=num_actions, budget=budget,
                                allowed=masks, sampling=sampling).logprobs
        scores = scores.double().cpu()  # one transfer per chunk
        out += [scores[row, keep - len(completions[i]):] for row, i in enumerate(chunk)]
    return out


@torch.no_grad()
def completion_kl(policy: nn.Module, reference: nn.Module, prompts: Sequence[Sequence[int]],
                  completions: Sequence[Sequence[int]], pad_id: int, num_actions: int | None = None,
                  budget: int = LOGITS_BUDGET) -> list[torch.Tensor]:
    """``KL(policy(.|s_t) || reference(.|s_t))`` at every completion token's state, from whole distributions.

    Summed over a completion sampled from the policy, it is an unbiased estimate of the
    sequence-level KL that, unlike a sampled log-ratio, is never negative.

    Returns:
        One float64 tensor per completion (one KL per token), on the host.
    """
    keep = max(len(c) for c in completions)
    vocab = num_actions or _vocab_size(policy)
    rows = max(1, budget // (2 * (keep + 1) * vocab))
    out: list[torch.Tensor] = []
    for start in range(0, len(completions), rows):
        chunk = range(start, min(start + rows, len(completions)))
        ids, mask = left_pad_np([[*prompts[i], *completions[i]] for i in chunk], pad_id)  # (n, W)
        logps = []
        for model in (policy, reference):
            batch = torch.from_numpy(np.stack([ids, mask])).to(model_device(model))
            logits = model(input_ids=batch[0], attention_mask=batch[1], position_ids=positions_from_mask(batch[1]),
                           logits_to_keep=keep_last(keep + 1, ids.shape[1], batch.device)
                           ).logits[:, :-1, :vocab]  # (n, K, V)
            logps.append(torch.log_softmax(logits.float(), -1).to(model_device(policy)))
        kl = (logps[0].exp() * (logps[0] - logps[1])).sum(-1).double().cpu()  # (n, K)
        out += [kl[row, keep - len(completions[i]):] for row, i in enumerate(chunk)]
    return out
