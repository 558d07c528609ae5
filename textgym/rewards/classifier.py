"""A sequence classifier's class logit (or probability) as the reward."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from textgym.models import load_classifier, load_tokenizer


class ClassifierReward:
    """Scores texts by one class of a sequence classifier: the seeds' "positive-class logit as reward".

    Args:
        model: An ``AutoModelForSequenceClassification`` or its embedded name, hub name or path.
        tokenizer: Its tokenizer (loaded with the model when ``model`` is a name).
        label: The class whose score is the reward, by name (``model.config.id2label``).
        output: ``"logit"`` (the raw class logit) or ``"probability"`` (its softmax probability).
        text: What is classified: the ``"completion"`` alone or ``"prompt+completion"``.
        batch_size: Texts per forward pass.
        max_length: Longest input in tokens; longer texts keep their first tokens.

    Example:
        >>> reward = ClassifierReward("textgym/sentiment-classifier", label="positive", output="probability")
        >>> scores = reward(["", ""], ["What a wonderful film, I loved it.", "Awful and boring, a waste of money."])
        >>> bool(scores[0] > 0.9 > 0.1 > scores[1])
        True
    """

    def __init__(
        self, model: PreTrainedModel | str, tokenizer: PreTrainedTokenizerBase | None = None, *,
        label: str = "positive", output: Literal["logit", "probability"] = "logit",
        text: Literal["completion", "prompt+completion"] = "completion", batch_size: int = 64, max_length: int = 256,
    ) -> None:
        self.model = load_classifier(model) if isinstance(model, str) else model.eval()
        if tokenizer is None and not isinstance(model, str):
            raise ValueError("pass the tokenizer that belongs to the classifier")
        self.tokenizer = load_tokenizer(model) if tokenizer is None else tokenizer
        labels = {str(v): int(k) for k, v in self.model.config.id2label.items()}
        if label not in labels:
            raise ValueError(f"the classifier has no label {label!r}; its labels are {sorted(labels)}")
        if output not in ("logit", "probability") or text not in ("completion", "prompt+completion"):
            raise ValueError(f"output must be 'logit' or 'probability' and text 'completion' or 'prompt+completion', "
                             f"got {output!r} and {text!r}")
        self.label_id, self.output, self.text = labels[label], output, text
        self.batch_size, self.max_length = batch_size, max_length
        self.name = f"classifier[{label}]"

    @torch.no_grad()
    def __call__(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """The chosen class's logit or probability for each text."""
        texts = completions if self.text == "completion" else [p + c for p, c in zip(prompts, completions, strict=True)]
        scores = []
        for start in range(0, len(texts), self.batch_size):
            batch = [t if t else self.tokenizer.eos_token or "" for t in texts[start:start + self.batch_size]]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                 padding_side="right", return_tensors="pt")
            logits = self.model(**enc).logits.float()  # (B, num_labels)
            chosen = logits.softmax(-1) if self.output == "probability" else logits
            scores.append(chosen[:, self.label_id])
        return torch.cat(scores).double().numpy()
