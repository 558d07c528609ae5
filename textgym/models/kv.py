"""A causal language model stepped one token at a time over N independent slots.

Both the environment (scoring ``log pi_ref(a_t | s_t)``) and sampling policies need the same
thing: N contexts in lockstep, each with its own past, where any slot may start a new prompt at
any step. :class:`SlotKVCache` keeps one batched key/value cache whose columns are left-padded per
slot, so a step is a single batched forward over one new token per slot (O(1) model work per
token), and a reset re-encodes only the prompts of the slots that restart.

Layout: every layer caches keys and values of shape ``(N, heads, T, head_dim)``; ``mask`` (N, T)
marks the columns that belong to each slot's current episode, always the rightmost ones. Dead
columns on the left (from finished episodes) are dropped once they are at least half the cache.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel


def left_pad(sequences: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-D token tensors into a left-padded batch.

    Args:
        sequences: Token id tensors, each of shape (L_i,), L_i >= 1.
        pad_id: The id written into padding positions (masked out, so any valid id works).

    Returns:
        ``(input_ids, attention_mask)``, both of shape (n, max L_i), dtype long.
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq) :] = seq
        mask[row, width - len(seq) :] = 1
    return ids, mask


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
        >>> import torch
        >>> from textgym.models.tiny import random_causal_lm
        >>> lm = random_causal_lm(vocab_size=50, n_layer=1, n_embd=16, seed=0)
        >>> cache = SlotKVCache(lm, num_slots=2, pad_id=0)
        >>> cache.start([0, 1], [torch.tensor([3, 4, 5]), torch.tensor([7])]).shape
        torch.Size([2, 50])
        >>> cache.step(torch.tensor([9, 9])).shape
        torch.Size([2, 50])
    """

    def __init__(self, model: PreTrainedModel, num_slots: int, pad_id: int, with_hidden: bool = False) -> None:
        self.model = model
        self.with_hidden = with_hidden
        self.last_hidden: torch.Tensor | None = None
        self.num_slots = num_slots
        self.pad_id = pad_id
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros((num_slots, 0), dtype=torch.long)  # (N, T)
        self.next_pos = torch.zeros(num_slots, dtype=torch.long)  # (N,)

    @property
    def length(self) -> int:
        """Number of cached columns T (the widest slot's context, plus dead columns)."""
        return self.mask.shape[1]

    @torch.no_grad()
    def start(self, slots: Sequence[int], prompts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Begin new contexts in ``slots`` from ``prompts``; other slots keep their past.

        Args:
            slots: Distinct slot indices to (re)start.
            prompts: One non-empty 1-D token tensor per slot.

        Returns:
            Next-token logits after each prompt, shape (len(slots), V), float32. With
            ``with_hidden`` set, :attr:`last_hidden` holds the matching last hidden states (n, H).
        """
        ids, mask = left_pad(prompts, self.pad_id)  # (n, P)
        fresh = DynamicCache()
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions_from_mask(mask),
            past_key_values=fresh,
            use_cache=True,
            output_hidden_states=self.with_hidden,
        )
        self._keep_hidden(out)
        lengths = mask.sum(-1)
        if self.cache is None or len(slots) == self.num_slots:
            order = torch.as_tensor(slots).argsort()  # rows in slot order
            self.cache = _select_rows(fresh, order)
            self.mask = mask[order]
            self.next_pos = lengths[order]
        else:
            self._merge(torch.as_tensor(slots), fresh, mask)
            self.next_pos[list(slots)] = lengths
        return out.logits[:, -1].float()

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append one token to every slot; return the next-token logits, shape (N, V)."""
        mask = torch.cat([self.mask, torch.ones((self.num_slots, 1), dtype=torch.long)], 1)
        out = self.model(
            input_ids=tokens.view(-1, 1),  # (N, 1)
            attention_mask=mask,
            position_ids=self.next_pos.view(-1, 1),
            past_key_values=self.cache,
            use_cache=True,
            output_hidden_states=self.with_hidden,
        )
        self._keep_hidden(out)
        self.mask = mask
        self.next_pos += 1
        return out.logits[:, -1].float()

    def _keep_hidden(self, out) -> None:
        if self.with_hidden:
            self.last_hidden = out.hidden_states[-1][:, -1].float()  # (n, H) at the newest position

    def _merge(self, slots: torch.Tensor, fresh: DynamicCache, mask: torch.Tensor) -> None:
        """Write freshly encoded prompts into the right-aligned columns of ``slots``."""
        width = mask.shape[1]
        self._trim_dead_columns(keep_at_least=width)
        grow = max(0, width - self.length)
        self.mask = torch.nn.functional.pad(self.mask, (grow, 0))
        self.mask[slots] = 0
        self.mask[slots, self.length - width :] = mask
        for layer, new in zip(self.cache.layers, fresh.layers, strict=True):
            keys = torch.nn.functional.pad(layer.keys, (0, 0, grow, 0))  # (N, H, T, D)
            values = torch.nn.functional.pad(layer.values, (0, 0, grow, 0))
            keys[slots, :, keys.shape[2] - width :] = new.keys
            values[slots, :, values.shape[2] - width :] = new.values
            layer.keys, layer.values = keys, values

    def _trim_dead_columns(self, keep_at_least: int) -> None:
        """Drop leading columns no slot uses once they make up half the cache."""
        live = self.mask.any(0).nonzero()
        first_live = int(live[0]) if len(live) else self.length
        first_live = min(first_live, max(0, self.length - keep_at_least))
        if first_live == 0 or 2 * first_live < self.length:
            return
        self.mask = self.mask[:, first_live:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[:, :, first_live:]
            layer.values = layer.values[:, :, first_live:]


def _select_rows(cache: DynamicCache, rows: torch.Tensor) -> DynamicCache:
    """A cache holding ``rows`` of ``cache`` in that order."""
    if bool((rows == torch.arange(len(rows))).all()):
        return cache
    return DynamicCache(ddp_cache_data=[(ly.keys[rows], ly.values[rows]) for ly in cache.layers])


LOGITS_BUDGET = 1 << 22  # floats of logits per teacher-forced chunk (16 MB)


@torch.no_grad()
def completion_logprobs(model: PreTrainedModel, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                        pad_id: int) -> list[torch.Tensor]:
    """``log p(token | context)`` of every completion token, by teacher forcing.

    One forward per chunk of sequences, sized so the logits stay under about 16 MB (the full
    (n, T, V) tensor and its log-softmax cost more in allocation than in arithmetic); only the
    completion positions' logits are computed (``logits_to_keep``).

    Returns:
        One float64 tensor per completion, its length.
    """
    keep = max(len(c) for c in completions) + 1
    rows = max(1, LOGITS_BUDGET // (keep * model.config.vocab_size))
    rows = -(-len(completions) // -(-len(completions) // rows))  # equal chunks: 16 rows in 8 + 8, not 15 + 1
    out: list[torch.Tensor] = []
    for start in range(0, len(completions), rows):
        chunk = range(start, min(start + rows, len(completions)))
        seqs = [torch.tensor([*prompts[i], *completions[i]], dtype=torch.long) for i in chunk]
        ids, mask = left_pad(seqs, pad_id)  # (n, W)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions_from_mask(mask),
                       logits_to_keep=keep).logits[:, :-1].float()  # (n, keep - 1, V)
        targets = ids[:, ids.shape[1] - keep + 1:, None]  # (n, keep - 1, 1)
        lps = (logits.gather(-1, targets) - torch.logsumexp(logits, -1, keepdim=True)).squeeze(-1)
        out += [lps[row, lps.shape[1] - len(completions[i]):].double() for row, i in enumerate(chunk)]
    return out
