"""Rewards from sequence classifiers: a class logit or probability, or a reward model's scalar."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textgym.models import load_classifier, load_tokenizer, model_device
from textgym.rewards.base import Reward

TextPart = Literal["completion", "prompt+completion"]


#: How a reward model reads one score off its per-token head (saved in its config as ``reward_pooling``):
#: ``"last"``, the head on the last token (the layout TRL's ``RewardTrainer`` trains and reads), or
#: ``"answer-sum"``, the head on every token of the answer, summed: a reward per token whose sum scores the answer.
POOLINGS = ("last", "answer-sum")


def reward_pooling(config: Any) -> str:
    """The pooling a reward model was trained with (``"last"`` when its config names none)."""
    pooling = getattr(config, "reward_pooling", "last")
    if pooling not in POOLINGS:
        raise ValueError(f"the reward model's config names reward_pooling {pooling!r}; textgym reads {POOLINGS}")
    return pooling


def answer_starts(tokenizer: PreTrainedTokenizerBase, before: list[str], device: Any = None) -> torch.Tensor:
    """The position of each answer's first token: how many tokens the text before it (a prompt, or "") takes."""
    return torch.tensor([len(ids) for ids in tokenizer(before)["input_ids"]], device=device)


def pooled_rewards(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, pooling: str,
                   answer_start: torch.Tensor | None = None) -> torch.Tensor:
    """One fp32 reward per row of a right-padded batch, read as ``pooling`` says (see :data:`POOLINGS`).

    ``"answer-sum"`` runs the trunk (``model.base_model``) and the scalar head (``model.score``, as
    transformers' causal-LM sequence classifiers name it) on every token and sums the head over the
    answer: the tokens from ``answer_start`` to the last one that is not padding.

    >>> from transformers import GPT2Config, GPT2ForSequenceClassification
    >>> model = GPT2ForSequenceClassification(GPT2Config(vocab_size=8, n_layer=1, n_embd=8, n_head=1, num_labels=1,
    ...                                                  pad_token_id=0)).eval()
    >>> ids, mask = torch.tensor([[5, 6, 7], [5, 6, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]])
    >>> sums = pooled_rewards(model, ids, mask, "answer-sum", torch.tensor([1, 1]))
    >>> per_token = model.score(model.transformer(ids, attention_mask=mask).last_hidden_state)[..., 0]
    >>> torch.allclose(sums, torch.stack([per_token[0, 1:].sum(), per_token[1, 1]]))
    True
    """
    if pooling == "last":
        return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, 0].float()
    if pooling != "answer-sum":
        raise ValueError(f"unknown pooling {pooling!r}; use one of {POOLINGS}")
    if answer_start is None:
        raise ValueError("answer-sum pooling needs the answers' start positions")
    per_token = head_per_token(model, input_ids, attention_mask)
    return (per_token * answer_positions(attention_mask, answer_start)).sum(1)


def head_per_token(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The scalar head on every token, (B, T) fp32: at token t, the score of the text up to t.

    It runs the trunk (``model.base_model``) and the head (``model.score``, as transformers' causal-LM
    sequence classifiers name it), so it needs one of those (GPT-2, Llama, Qwen, ...).
    """
    head = getattr(model, "score", None)
    if head is None:
        raise ValueError("a per-token reward needs a causal LM's sequence classifier (a scalar head named `score`, "
                         "as AutoModelForSequenceClassification builds on GPT-2, Llama or Qwen)")
    return head(model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state)[..., 0].float()


def answer_positions(attention_mask: torch.Tensor, answer_start: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the answer's tokens of a right-padded batch, from ``answer_start`` to the last real token."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return attention_mask.bool() & (positions[None, :] >= answer_start[:, None])


class _SequenceScorer(Reward):
    """Loads a sequence classifier and runs it over texts in padded batches."""

    def __init__(self, model: PreTrainedModel | str, tokenizer: PreTrainedTokenizerBase | None, text: TextPart,
                 batch_size: int, max_length: int, dtype: str | torch.dtype | None = None, device_map: Any = None,
                 ) -> None:
        if text not in ("completion", "prompt+completion"):
            raise ValueError(f"text must be 'completion' or 'prompt+completion', got {text!r}")
        if isinstance(model, str):
            self.model = load_classifier(model, dtype=dtype, device_map=device_map)
            self.tokenizer = load_tokenizer(model) if tokenizer is None else tokenizer
        elif tokenizer is None:
            raise ValueError("pass the tokenizer that belongs to the classifier")
        else:
            self.model, self.tokenizer = model.eval(), tokenizer
        self.text, self.batch_size, self.max_length = text, batch_size, max_length

    def _texts(self, prompts: list[str], completions: list[str]) -> tuple[list[str], list[str]]:
        """What is read before the answer ("" or the prompt) and the whole text, for each pair."""
        before = [""] * len(completions) if self.text == "completion" else list(prompts)
        return before, [b + c for b, c in zip(before, completions, strict=True)]

    def _encode(self, texts: list[str], offsets: bool = False) -> dict[str, torch.Tensor]:
        """One right-padded batch on the model's device; an empty text is read as EOS.

        With ``offsets``, also ``offset_mapping`` (B, T, 2) on the host: each token's characters in its text.
        """
        enc = self.tokenizer([t if t else self.tokenizer.eos_token or " " for t in texts], padding=True,
                             truncation=True, max_length=self.max_length, padding_side="right", return_tensors="pt",
                             return_offsets_mapping=offsets)
        return {k: v if k == "offset_mapping" else v.to(model_device(self.model)) for k, v in enc.items()}

    @torch.no_grad()
    def logits(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        """Classifier logits of each text, shape (B, num_labels), fp32 on the host. An empty text is read as EOS."""
        _, texts = self._texts(prompts, completions)
        out = [self.model(**self._encode(texts[start:start + self.batch_size])).logits.float()  # (b, num_labels)
               for start in range(0, len(texts), self.batch_size)]
        return torch.cat(out).cpu()  # one transfer per call


class ClassifierReward(_SequenceScorer):
    """Scores texts by one class of a sequence classifier: the seeds' "positive-class logit as reward".

    Args:
        model: An ``AutoModelForSequenceClassification`` or its embedded name, hub name or path.
        tokenizer: Its tokenizer (loaded with the model when ``model`` is a name).
        label: The class whose score is the reward, by name (``model.config.id2label``).
        output: ``"logit"`` (the raw class logit) or ``"probability"`` (its softmax probability).
        text: What is classified: the ``"completion"`` alone or ``"prompt+completion"``.
        batch_size: Texts per forward pass.
        max_length: Longest input in tokens; longer texts keep their first tokens.
        dtype: Weight dtype when ``model`` is a name (``"bf16"``, ...).
        device_map: Where to load it when ``model`` is a name (``"cuda:1"``, ``"auto"``): a reward model
            may sit on another device than the policy and the reference.

    Example:
        >>> reward = ClassifierReward("textgym/sentiment-classifier", label="positive", output="probability")
        >>> scores = reward(["", ""], ["What a wonderful film, I loved it.", "Awful and boring, a waste of money."])
        >>> bool(scores[0] > 0.9 > 0.1 > scores[1])
        True
    """

    def __init__(
        self, model: PreTrainedModel | str, tokenizer: PreTrainedTokenizerBase | None = None, *,
        label: str = "positive", output: Literal["logit", "probability"] = "logit", text: TextPart = "completion",
        batch_size: int = 64, max_length: int = 256, dtype: str | torch.dtype | None = None, device_map: Any = None,
    ) -> None:
        super().__init__(model, tokenizer, text, batch_size, max_length, dtype, device_map)
        labels = {str(v): int(k) for k, v in (self.model.config.id2label or {}).items()}
        if label not in labels:
            raise ValueError(f"the classifier has no label {label!r}; its labels are {sorted(labels)}")
        if output not in ("logit", "probability"):
            raise ValueError(f"output must be 'logit' or 'probability', got {output!r}")
        self.label_id, self.output = labels[label], output
        self.name = f"classifier[{label}]"

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """The chosen class's logit or probability for each text."""
        logits = self.logits(prompts, completions)
        chosen = logits.softmax(-1) if self.output == "probability" else logits
        return chosen[:, self.label_id].double().numpy()


class RewardModel(_SequenceScorer):
    """A learned preference reward model: the scalar head of a one-label sequence classifier.

    This is the layout :func:`textgym.rewards.training.train_reward_model` and TRL's
    ``RewardTrainer`` both save (``AutoModelForSequenceClassification`` with ``num_labels=1``), so a
    model trained by either scores here. By default it reads ``prompt + completion``, the text it
    was trained on. A model trained with ``pooling="answer-sum"`` (its config says so) sums its head
    over the answer's tokens instead of reading the last one (:data:`POOLINGS`).

    Args:
        model: The reward model, or its embedded name, hub name or path.
        tokenizer: Its tokenizer (loaded with the model when ``model`` is a name).
        text: ``"prompt+completion"`` (default) or ``"completion"``.
        batch_size: Texts per forward pass.
        max_length: Longest input in tokens.
        name: The reward's name in logs and ``info``.
        dtype: Weight dtype when ``model`` is a name.
        device_map: Where to load it when ``model`` is a name.

    Example:
        >>> from transformers import GPT2Config, GPT2ForSequenceClassification
        >>> from textgym.models.tiny import word_tokenizer
        >>> tok = word_tokenizer(["good", "bad", "answer"])
        >>> model = GPT2ForSequenceClassification(GPT2Config(vocab_size=4, n_layer=1, n_embd=8, n_head=1,
        ...                                                  num_labels=1, pad_token_id=0))
        >>> reward = RewardModel(model, tok, name="helpfulness_rm")
        >>> reward(["answer", "answer"], [" good", " bad"]).shape
        (2,)
    """

    def __init__(
        self, model: PreTrainedModel | str, tokenizer: PreTrainedTokenizerBase | None = None, *,
        text: TextPart = "prompt+completion", batch_size: int = 64, max_length: int = 256,
        name: str = "reward_model", dtype: str | torch.dtype | None = None, device_map: Any = None,
    ) -> None:
        super().__init__(model, tokenizer, text, batch_size, max_length, dtype, device_map)
        if self.model.config.num_labels != 1:
            raise ValueError(f"a reward model has one output (num_labels=1); this model has "
                             f"{self.model.config.num_labels}: use ClassifierReward with a label instead")
        self.name = name
        self.pooling = reward_pooling(self.model.config)

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """The scalar reward of each text."""
        if self.pooling == "last":
            return self.logits(prompts, completions)[:, 0].double().numpy()
        before, texts = self._texts(prompts, completions)
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                enc = self._encode(texts[start:start + self.batch_size])
                begins = answer_starts(self.tokenizer, before[start:start + self.batch_size], enc["input_ids"].device)
                out.append(pooled_rewards(self.model, enc["input_ids"], enc["attention_mask"], "answer-sum", begins))
        return torch.cat(out).cpu().double().numpy()

    @torch.no_grad()
    def parts(self, prompts: list[str], completions: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each completion's score in parts, one per answer token: ``(ends, values)`` per completion.

        ``ends[i]`` is the character of the completion where the i-th answer token ends and
        ``values[i]`` is that token's part; the parts sum to :meth:`score`. An answer-sum model's parts
        are its head on each answer token. A last-token model's head on a token is its score of the
        text up to there, so its parts are the changes of that score: the first answer token gets the
        score after it, each later token the change it makes (a potential-based shaping; the sum is the
        score). An empty answer is no part (answer-sum) or one part at character 0 (last token).

        Environments made with ``credit="token"`` pay each part at the token that completed it.
        """
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("per-token parts need the character offsets of each token, which only a fast tokenizer "
                             "gives; load the reward model's tokenizer with use_fast=True")
        before, texts = self._texts(prompts, completions)
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            enc = self._encode(texts[chunk], offsets=True)
            ends = enc.pop("offset_mapping")[..., 1]  # (b, T) the character after each token
            head = head_per_token(self.model, enc["input_ids"], enc["attention_mask"]).cpu().double()  # (b, T)
            mask = enc["attention_mask"].cpu()
            answer, lengths = answer_positions(mask, answer_starts(self.tokenizer, before[chunk])), mask.sum(1)
            for row, (text_before, completion) in enumerate(zip(before[chunk], completions[chunk], strict=True)):
                where = answer[row].nonzero()[:, 0]
                chars = (ends[row, where] - len(text_before)).clamp(0, len(completion))
                values = head[row, where]
                if self.pooling == "last":
                    if len(where):
                        values = values.diff(prepend=values.new_zeros(1))
                    else:  # no answer token: the whole score (the head on the last token) at character 0
                        chars, values = chars.new_zeros(1), head[row, lengths[row] - 1][None]
                out.append((chars.numpy().astype(np.int64), values.numpy()))
        return out
