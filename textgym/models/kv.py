"""A causal language model stepped one token at a time over N independent slots.

Both the environment (scoring ``log pi_ref(a_t | s_t)``) and sampling policies need the same
thing: N contexts in lockstep, each with its own past, where any slot may start a new prompt at
any step, and a multi-turn environment may append several tokens of its own to some slots.
:class:`SlotKVCache` keeps one batched key/value cache for all slots, so a step is a single batched
forward over one new token per slot (O(1) model work per token), a restart re-encodes only the
prompts of the slots that restart, and an environment turn encodes only the tokens it appends.

Layout: every layer caches keys and values of shape ``(N, heads, T, head_dim)``; the attention mask
(N, T) marks the columns that belong to each slot's current episode. Columns of finished episodes,
and the columns other slots' environment turns added, are dead for a slot. Once at least half the
cache is dead, the live columns are packed to the right (a slice when they are already contiguous,
one gather otherwise), so the cache stays about as wide as the longest live context.

Devices: the cache lives on the model's device. The bookkeeping (which columns are live, each
slot's next position) is kept on the host in numpy, so no step waits on the device for it; a step
moves the new tokens to the device once (or takes them there already, from a sampler) and returns
logits on the device.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Protocol, cast

import numpy as np
import torch
import transformers
from packaging.version import Version
from transformers import DynamicCache, PreTrainedModel

from textgym.models import model_device

#: transformers 5.24 renamed the forward keyword ``past_key_values`` to ``cache`` (the old name warns, and goes
#: away in 5.40).
CACHE_RENAMED = Version(transformers.__version__) >= Version("5.24.0.dev0")


def cache_keyword(model: torch.nn.Module) -> str:
    """The keyword under which ``model.forward`` takes its key/value cache: ``cache`` or ``past_key_values``.

    Read from the forward's signature (a model with remote code may still use the old name); a wrapper
    whose forward takes ``**kwargs`` (peft, the LoRA reference) gets the installed transformers' name.

    Example:
        >>> class Old(torch.nn.Module):
        ...     def forward(self, input_ids, past_key_values=None): ...
        >>> cache_keyword(Old())
        'past_key_values'
    """
    parameters = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    return "cache" if CACHE_RENAMED else "past_key_values"


def keep_last(count: int, width: int, device: torch.device | str) -> int | torch.Tensor:
    """The ``logits_to_keep`` of a forward over ``width`` positions that needs the last ``count``: as indices.

    Given an int, transformers slices the hidden states before the output head, and the slice (a
    strided view) sends the head's product down a batched path that copies the whole head matrix once
    per sequence: 5 s instead of 0.03 s for Qwen2-0.5B's head and 8 sequences in bf16 on a CPU. Index
    positions gather a contiguous copy of the few hidden states instead.

    >>> keep_last(1, 1, "cpu"), keep_last(2, 5, "cpu")
    (1, tensor([3, 4]))
    """
    return count if count >= width else torch.arange(width - count, width, device=device)


def left_pad_np(sequences: Sequence[Sequence[int] | np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack token sequences into a left-padded batch on the host: ``(ids, mask)``, both int64 (n, max L).

    >>> ids, mask = left_pad_np([[5, 6], [7]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6], [0, 7]], [[1, 1], [0, 1]])
    """
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, width - len(seq):] = np.asarray(seq)
            mask[row, width - len(seq):] = 1
    return ids, mask


def left_pad(sequences: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-D token tensors into a left-padded batch.

    Args:
        sequences: Token id tensors (or lists), each of shape (L_i,), L_i >= 1.
        pad_id: The id written into padding positions (masked out, so any valid id works).

    Returns:
        ``(input_ids, attention_mask)``, both of shape (n, max L_i), dtype long, on the host.
    """
    ids, mask = left_pad_np([np.asarray(s) for s in sequences], pad_id)
    return torch.from_numpy(ids), torch.from_numpy(mask)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch: 0 at each row's first real token."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


class SlotKVCache:
    """Incremental next-token logits for N slots of one causal LM.

    Args:
        model: A Hugging Face causal LM (any ``AutoModelForCausalLM``); it is not modified.
        num_slots: How many contexts are stepped in lockstep.
        pad_id: Token id used in padding positions.
        with_hidden: Also keep the last hidden state of each call (for a value head) in ``last_hidden``.

    Example:
        >>> from textgym.models.tiny import random_causal_lm
        >>> lm = random_causal_lm(vocab_size=50, n_layer=1, n_embd=16, seed=0)
        >>> cache = SlotKVCache(lm, num_slots=2, pad_id=0)
        >>> cache.start([0, 1], [[3, 4, 5], [7]]).shape
        torch.Size([2, 50])
        >>> cache.step(torch.tensor([9, 9])).shape
        torch.Size([2, 50])
        >>> cache.extend([1], [[4, 4, 4]]).shape  # an environment writes three tokens into slot 1
        torch.Size([1, 50])
    """

    def __init__(self, model: PreTrainedModel, num_slots: int, pad_id: int, with_hidden: bool = False) -> None:
        self.model = model
        self.device = model_device(model)
        self.cache_keyword = cache_keyword(model)
        self.with_hidden = with_hidden
        self.last_hidden: torch.Tensor | None = None
        self.num_slots = num_slots
        self.pad_id = pad_id
        self.cache: DynamicCache | None = None
        self.live = np.zeros((num_slots, 0), dtype=bool)  # (N, T) host: columns of each slot's current context
        self.mask = torch.zeros((num_slots, 0), dtype=torch.long, device=self.device)  # (N, T) the same, on device
        self.next_pos = np.zeros(num_slots, dtype=np.int64)  # (N,) host: position of each slot's next token
        self.positions = torch.zeros(num_slots, dtype=torch.long, device=self.device)  # (N,) the same, on device

    @property
    def length(self) -> int:
        """Number of cached columns T (the widest slot's context, plus dead columns)."""
        return self.live.shape[1]

    @torch.no_grad()
    def start(self, slots: Sequence[int], prompts: Sequence[Sequence[int] | np.ndarray | torch.Tensor]) -> torch.Tensor:
        """Begin new contexts in ``slots`` from ``prompts``; other slots keep their past.

        Args:
            slots: Distinct slot indices to (re)start.
            prompts: One non-empty token sequence per slot (host lists, arrays or CPU tensors).

        Returns:
            Next-token logits after each prompt, shape (len(slots), V), float32, on the model's
            device. With ``with_hidden`` set, :attr:`last_hidden` holds the matching last hidden
            states (n, H).
        """
        slots = [int(s) for s in slots]
        ids, mask = left_pad_np([np.asarray(p) for p in prompts], self.pad_id)  # (n, P)
        batch = torch.from_numpy(np.stack([ids, mask])).to(self.device)  # (2, n, P): one transfer
        fresh = DynamicCache()
        out = self._forward(batch[0], batch[1], positions_from_mask(batch[1]), fresh)
        lengths = mask.sum(1)
        if self.cache is None or len(slots) == self.num_slots:
            order = np.argsort(slots)  # rows in slot order
            self.cache = _select_rows(fresh, order, self.device)
            self.live, self.next_pos = mask[order].astype(bool), lengths[order]
            self.mask = batch[1] if _in_order(order) else batch[1].index_select(0, _index(order, self.device))
            self.positions = _index(self.next_pos, self.device)
        else:
            self._drop(slots)
            self._write(slots, fresh, mask, batch[1])
            self.next_pos[slots] = lengths
            self.positions = _index(self.next_pos, self.device)
        return out.logits[:, -1].float()

    @torch.no_grad()
    def step(self, tokens: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Append one token to every slot; return the next-token logits, shape (N, V), on the model's device."""
        tokens = torch.as_tensor(tokens).to(self.device).view(-1, 1)  # (N, 1)
        self.live = np.concatenate([self.live, np.ones((self.num_slots, 1), dtype=bool)], 1)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], 1)  # (N, T + 1)
        out = self._forward(tokens, self.mask, self.positions.view(-1, 1), self.cache)
        self.next_pos += 1
        self.positions = self.positions + 1
        return out.logits[:, -1].float()

    @torch.no_grad()
    def extend(self, slots: Sequence[int], tokens: Sequence[Sequence[int] | np.ndarray]) -> torch.Tensor:
        """Append several tokens to some slots (an environment's turn); the other slots are unchanged.

        Only the appended tokens are encoded, against the slots' cached past.

        Returns:
            Next-token logits after each slot's new tokens, shape (len(slots), V), on the device.
        """
        slots = [int(s) for s in slots]
        ids, mask = left_pad_np([np.asarray(t) for t in tokens], self.pad_id)  # (n, w)
        width = ids.shape[1]
        rows = torch.as_tensor(slots, device=self.device)
        batch = torch.from_numpy(np.stack([ids, mask])).to(self.device)  # (2, n, w): one transfer
        cache = self._filled()
        past = _select_rows(cache, np.asarray(slots), self.device, copy=True)
        attention = torch.cat([self.mask.index_select(0, rows), batch[1]], 1)  # (n, T + w)
        positions = self.positions.index_select(0, rows)[:, None] + positions_from_mask(batch[1])  # (n, w)
        out = self._forward(batch[0], attention, positions, past)
        self.live = np.pad(self.live, ((0, 0), (0, width)))
        self.live[slots, -width:] = mask.astype(bool)
        self.mask = torch.nn.functional.pad(self.mask, (0, width))
        self.mask[rows, -width:] = batch[1]
        for layer, new in zip(_layers(cache), _layers(past), strict=True):
            keys = torch.nn.functional.pad(layer.keys, (0, 0, 0, width))  # (N, H, T + w, D)
            values = torch.nn.functional.pad(layer.values, (0, 0, 0, width))
            keys[rows, :, -width:] = new.keys[:, :, -width:]
            values[rows, :, -width:] = new.values[:, :, -width:]
            layer.keys, layer.values = keys, values
        self.next_pos[slots] += mask.sum(1)
        self.positions = _index(self.next_pos, self.device)
        self._pack_if_sparse()
        return out.logits[:, -1].float()

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache | None):
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         output_hidden_states=self.with_hidden,
                         logits_to_keep=keep_last(1, ids.shape[1], ids.device), **{self.cache_keyword: cache})
        if self.with_hidden:
            self.last_hidden = out.hidden_states[-1][:, -1].float()  # (n, H) at the newest position
        return out

    def _filled(self) -> DynamicCache:
        """The cache, once :meth:`start` has filled it."""
        if self.cache is None:
            raise RuntimeError("SlotKVCache: start some slots before extending them")
        return self.cache

    def _drop(self, slots: list[int]) -> None:
        """Mark the columns of ``slots`` dead; pack the cache once at least half of it is dead."""
        self.live[slots] = False
        self.mask[torch.as_tensor(slots, device=self.device)] = 0
        self._pack_if_sparse()

    def _pack_if_sparse(self) -> None:
        needed = int(self.live.sum(1).max())
        if self.length >= 2 * max(needed, 1):
            self._pack(needed)

    def _pack(self, width: int) -> None:
        """Move every slot's live columns to the right end of a cache ``width`` columns wide."""
        counts = self.live.sum(1)
        tails = np.array([row[self.length - n:].all() for row, n in zip(self.live, counts, strict=True)])
        if tails.all():  # live columns are contiguous suffixes: cut the dead prefix
            keep = slice(self.length - width, self.length)
            for layer in _layers(self._filled()):
                layer.keys, layer.values = layer.keys[:, :, keep], layer.values[:, :, keep]
            self.live, self.mask = self.live[:, keep], self.mask[:, keep]
            return
        index = np.zeros((self.num_slots, width), dtype=np.int64)  # (N, W): old column of each new one
        live = np.zeros((self.num_slots, width), dtype=bool)
        for row in range(self.num_slots):
            columns = np.flatnonzero(self.live[row])
            index[row, width - len(columns):] = columns
            live[row, width - len(columns):] = True
        gather = torch.from_numpy(np.stack([index, live])).to(self.device)  # (2, N, W): one transfer
        for layer in _layers(self._filled()):
            heads, dim = layer.keys.shape[1], layer.keys.shape[3]
            at = gather[0][:, None, :, None].expand(-1, heads, -1, dim)
            layer.keys, layer.values = layer.keys.gather(2, at), layer.values.gather(2, at)
        self.live, self.mask = live, gather[1]

    def _write(self, slots: list[int], fresh: DynamicCache, mask: np.ndarray, mask_t: torch.Tensor) -> None:
        """Write freshly encoded prompts into the right-aligned columns of ``slots`` (growing the cache if needed)."""
        width = mask.shape[1]
        grow = max(0, width - self.length)
        rows = torch.as_tensor(slots, device=self.device)
        self.live = np.pad(self.live, ((0, 0), (grow, 0)))
        self.live[slots] = False
        self.live[slots, self.length - width:] = mask.astype(bool)
        self.mask = torch.nn.functional.pad(self.mask, (grow, 0))
        self.mask[rows] = 0
        self.mask[rows, self.length - width:] = mask_t
        for layer, new in zip(_layers(self._filled()), _layers(fresh), strict=True):
            keys = torch.nn.functional.pad(layer.keys, (0, 0, grow, 0))  # (N, H, T, D)
            values = torch.nn.functional.pad(layer.values, (0, 0, grow, 0))
            keys[rows, :, keys.shape[2] - width:] = new.keys
            values[rows, :, values.shape[2] - width:] = new.values
            layer.keys, layer.values = keys, values


class _KVLayer(Protocol):
    """One attention layer of a filled cache: keys and values, each (N, heads, T, head_dim)."""

    keys: torch.Tensor
    values: torch.Tensor


def _layers(cache: DynamicCache) -> list[_KVLayer]:
    """The layers of a cache a forward has filled.

    transformers types them loosely (keys are None before the first forward, and a linear-attention
    layer has none); the layers of a cache a forward of an attention model has filled all hold both.
    """
    return cast(list[_KVLayer], cache.layers)


def _index(values: np.ndarray, device: torch.device) -> torch.Tensor:
    """A device copy of a host int64 array (never sharing memory with it, also on the CPU)."""
    return torch.tensor(values, dtype=torch.long, device=device)


def _in_order(rows: np.ndarray) -> bool:
    return bool((rows == np.arange(len(rows))).all())


def _select_rows(cache: DynamicCache, rows: np.ndarray, device: torch.device, copy: bool = False) -> DynamicCache:
    """A cache holding ``rows`` of ``cache`` in that order (the cache itself when that is all of it, in order)."""
    if not copy and _in_order(rows):
        return cache
    index = _index(rows, device)
    return DynamicCache(ddp_cache_data=[(ly.keys.index_select(0, index), ly.values.index_select(0, index))
                                        for ly in _layers(cache)])
