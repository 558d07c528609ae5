"""Rewards from sequence classifiers: a class logit or probability, or a reward model's scalar."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textgym.models import load_classifier, load_tokenizer, model_device
from textgym.rewards.base import Reward

TextPart = Literal["completion", "prompt+completion"]


class _SequenceScorer(Reward):
    """Loads a sequence classifier and runs it over texts in padded batches."""

    def __init__(self, model: PreTrainedModel | str, tokenizer: PreTrainedTokenizerBase | None, text: TextPart,
                 batch_size: int, max_length: int, dtype: str | torch.dtype | None = None, device_map: Any = None,
                 ) -> None:
        if text not in ("completion", "prompt+completion"):
            raise ValueError(f"text must be 'completion' or 'prompt+completion', got {text!r}")
        if tokenizer is None and not isinstance(model, str):
            raise ValueError("pass the tokenizer that belongs to the classifier")
        loaded = load_classifier(model, dtype=dtype, device_map=device_map) if isinstance(model, str) else None
        self.model = loaded if loaded is not None else model.eval()
        self.tokenizer = load_tokenizer(model) if tokenizer is None else tokenizer
        self.text, self.batch_size, self.max_length = text, batch_size, max_length

    @torch.no_grad()
    def logits(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        """Classifier logits of each text, shape (B, num_labels), fp32 on the host. An empty text is read as EOS."""
        texts = completions if self.text == "completion" else [p + c for p, c in zip(prompts, completions, strict=True)]
        device, out = model_device(self.model), []
        for start in range(0, len(texts), self.batch_size):
            batch = [t if t else self.tokenizer.eos_token or " " for t in texts[start:start + self.batch_size]]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                 padding_side="right", return_tensors="pt")
            out.append(self.model(**{k: v.to(device) for k, v in enc.items()}).logits.float())  # (b, num_labels)
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
        labels = {str(v): int(k) for k, v in self.model.config.id2label.items()}
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
    was trained on.

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

    def score(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """The scalar reward of each text."""
        return self.logits(prompts, completions)[:, 0].double().numpy()
