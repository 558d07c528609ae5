"""Loading causal LMs, tokenizers and classifiers by embedded name, hub name or local path.

Every loader goes through :func:`resolve`: a short embedded name (``textgym/...``) maps to a folder
shipped inside the package; anything else is passed to ``from_pretrained`` unchanged (a hub name
for online users, or a local folder). Remote code is off and safetensors weights are required
unless the caller opts out.
"""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

EMBEDDED_DIR = Path(__file__).parent / "embedded"
EMBEDDED_PREFIX = "textgym/"


def embedded_names() -> list[str]:
    """The embedded model names shipped with this installation, e.g. ``textgym/tiny-lm``."""
    if not EMBEDDED_DIR.is_dir():
        return []
    return sorted(EMBEDDED_PREFIX + p.name for p in EMBEDDED_DIR.iterdir() if (p / "config.json").is_file()
                  or (p / "tokenizer.json").is_file())


def resolve(name_or_path: str | Path) -> str:
    """Turn an embedded name into its folder; return anything else unchanged.

    Raises:
        ValueError: For an unknown embedded name (the message lists the known ones).
        FileNotFoundError: For a path that looks local (``./x``, ``/x``, ``~/x``) but does not exist.
    """
    name = str(name_or_path)
    if name.startswith(EMBEDDED_PREFIX):
        folder = EMBEDDED_DIR / name.removeprefix(EMBEDDED_PREFIX)
        if not folder.is_dir():
            known = ", ".join(embedded_names()) or "none are installed"
            raise ValueError(f"unknown embedded model {name!r}; known embedded models: {known}")
        return str(folder)
    if name.startswith((".", "/", "~")) and not Path(name).expanduser().exists():
        raise FileNotFoundError(
            f"model path {name!r} does not exist; pass an existing folder written by "
            "save_pretrained, a hub name, or an embedded name such as 'textgym/tiny-lm'"
        )
    return str(Path(name).expanduser()) if name.startswith("~") else name


def load_causal_lm(
    name_or_path: str | Path, *, trust_remote_code: bool = False, use_safetensors: bool = True,
) -> PreTrainedModel:
    """Load a causal LM in eval mode (embedded name, hub name or local folder)."""
    model = AutoModelForCausalLM.from_pretrained(
        resolve(name_or_path), trust_remote_code=trust_remote_code, use_safetensors=use_safetensors,
    )
    return model.eval()


def load_classifier(
    name_or_path: str | Path, *, trust_remote_code: bool = False, use_safetensors: bool = True,
) -> PreTrainedModel:
    """Load a sequence classifier in eval mode (embedded name, hub name or local folder)."""
    model = AutoModelForSequenceClassification.from_pretrained(
        resolve(name_or_path), trust_remote_code=trust_remote_code, use_safetensors=use_safetensors,
    )
    return model.eval()


def load_tokenizer(name_or_path: str | Path, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load the tokenizer saved with a model (embedded name, hub name or local folder)."""
    return AutoTokenizer.from_pretrained(resolve(name_or_path), trust_remote_code=trust_remote_code)
