"""Loading causal LMs, tokenizers and classifiers by embedded name, hub name or local path.

Every loader goes through :func:`resolve`: a short embedded name (``textgym/...``) maps to a folder
shipped inside the package; a local folder is used as it is; anything else is a hub name for
``from_pretrained`` (online users). Remote code is off and safetensors weights are required unless
the caller opts out. Loading prints nothing (transformers' progress bars are held back while a
textgym loader runs).

A folder holding LoRA adapters (``adapter_config.json``, written by peft) loads as its base model
with the adapters on top; the base is recorded by the name it was loaded under (an embedded or hub
name, never this machine's path to it), so an adapter folder works on any machine with textgym, or
by a path relative to the adapters' folder (``../../sft``), so a run folder holding both can move.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)
from transformers.utils import logging as hf_logging

EMBEDDED_DIR = Path(__file__).parent / "embedded"
EMBEDDED_PREFIX = "textgym/"


def embedded_names() -> list[str]:
    """The embedded model names shipped with this installation, e.g. ``textgym/tiny-lm``."""
    if not EMBEDDED_DIR.is_dir():
        return []
    return sorted(EMBEDDED_PREFIX + p.name for p in EMBEDDED_DIR.iterdir() if (p / "config.json").is_file()
                  or (p / "tokenizer.json").is_file())


def resolve(name_or_path: str | Path) -> str:
    """Turn an embedded name into its folder; return a local folder or a hub name unchanged.

    A name is local when it exists, starts like a path (``./x``, ``/x``, ``~/x``), has more than one
    ``/`` (hub names are ``owner/name``), or its first part is a folder here (``runs/my-rm`` next to
    a ``runs/`` folder): a missing local folder is an error at once, never a hub download.

    Raises:
        ValueError: For an unknown embedded name (the message lists the known ones).
        FileNotFoundError: For a local-looking path that does not exist.
    """
    name = str(name_or_path)
    if name.startswith(EMBEDDED_PREFIX):
        folder = EMBEDDED_DIR / name.removeprefix(EMBEDDED_PREFIX)
        if not folder.is_dir():
            known = ", ".join(embedded_names()) or "none are installed"
            raise ValueError(f"unknown embedded model {name!r}; known embedded models: {known}")
        return str(folder)
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    first = Path(name.split("/", 1)[0]).expanduser()
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or ("/" in name and first.is_dir()):
        raise FileNotFoundError(
            f"no such folder: {name!r}; pass an existing folder written by save_pretrained, a hub name "
            "(owner/name), or an embedded name such as 'textgym/tiny-lm'"
        )
    return name


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """Hold back transformers' progress bars ("Loading weights", "Writing model shards"); restore them after."""
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hold back transformers' warnings (errors still show); restore its verbosity after."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def as_dtype(dtype: str | torch.dtype | None) -> torch.dtype | str | None:
    """A dtype as ``from_pretrained`` takes it, from ``"bf16"``/``"bfloat16"``, ``"fp16"``, ``"fp32"``, ``"auto"``.

    >>> as_dtype("bf16")
    torch.bfloat16
    """
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(names)} or 'auto'")
    return names[dtype]


def load_causal_lm(
    name_or_path: str | Path, *, trust_remote_code: bool = False, use_safetensors: bool = True,
    dtype: str | torch.dtype | None = None, device_map: Any = None, trainable: bool = False,
) -> PreTrainedModel:
    """Load a causal LM in eval mode (embedded name, hub name or local folder, LoRA adapter folders too).

    Args:
        name_or_path: What to load.
        trust_remote_code: Let transformers run code shipped with a hub model.
        use_safetensors: Refuse pickled weights.
        dtype: Weight dtype (:func:`as_dtype`); None keeps the saved one.
        device_map: Where to place the weights (``"auto"``, ``"cuda:0"``, a dict; accelerate's format).
        trainable: For an adapter folder, load its adapters trainable (to resume training); the base
            stays frozen.
    """
    folder = resolve(name_or_path)
    adapter = Path(folder) / "adapter_config.json"
    if adapter.is_file():
        return _load_adapters(Path(folder), trust_remote_code=trust_remote_code, dtype=dtype, device_map=device_map,
                              trainable=trainable)
    with no_progress_bars():
        model = AutoModelForCausalLM.from_pretrained(
            folder, trust_remote_code=trust_remote_code, use_safetensors=use_safetensors, dtype=as_dtype(dtype),
            device_map=device_map,
        )
    model.name_or_path = str(name_or_path)  # the name it was asked for, not this machine's path to it
    return model.eval()


def _load_adapters(folder: Path, **kwargs: Any) -> PreTrainedModel:
    try:
        from peft import PeftModel
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"{folder} holds LoRA adapters: install peft (pip install 'textgym[peft]')") from None
    base_name = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
    trainable = kwargs.pop("trainable")
    beside = folder / base_name  # a base recorded relative to the adapters' folder travels with it
    base = load_causal_lm(beside if base_name.startswith(".") and beside.is_dir() else base_name, **kwargs)
    with no_progress_bars():
        model = PeftModel.from_pretrained(base, str(folder), is_trainable=trainable)
    return model.train(False) if not trainable else model


def load_classifier(
    name_or_path: str | Path, *, trust_remote_code: bool = False, use_safetensors: bool = True,
    dtype: str | torch.dtype | None = None, device_map: Any = None,
) -> PreTrainedModel:
    """Load a sequence classifier in eval mode (embedded name, hub name or local folder)."""
    with no_progress_bars():
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve(name_or_path), trust_remote_code=trust_remote_code, use_safetensors=use_safetensors,
            dtype=as_dtype(dtype), device_map=device_map,
        )
    model.name_or_path = str(name_or_path)
    return model.eval()


#: ``tokenizer_class`` values of tokenizers saved as a plain ``tokenizers`` pipeline.
GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(name_or_path: str | Path, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load the tokenizer saved with a model (embedded name, hub name or local folder)."""
    folder = resolve(name_or_path)
    adapter = Path(folder) / "adapter_config.json"
    if adapter.is_file() and not (Path(folder) / "tokenizer_config.json").is_file():
        folder = resolve(json.loads(adapter.read_text())["base_model_name_or_path"])
    config = Path(folder) / "tokenizer_config.json"
    saved_class = json.loads(config.read_text()).get("tokenizer_class") if config.is_file() else None
    if saved_class in GENERIC_TOKENIZERS and (Path(folder) / "tokenizer.json").is_file():
        # A tokenizer saved as a plain tokenizers pipeline (a word-level one, say) loads as saved: transformers
        # would otherwise pick the class of the model's type and rebuild its own pre-tokenizer around the vocabulary.
        return PreTrainedTokenizerFast.from_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Set every dropout of ``model`` to 0 (as TRL's trainers do by default); returns ``model``.

    RL must act and learn with the same policy, and a reward model learns fine distinctions (which
    tips fit which question) far faster without the noise.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (CPU for a model with neither).

    With weights spread over devices (``device_map``), this is where its inputs go: the first
    parameter is the input embedding.
    """
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def native_half(device: torch.device | str, dtype: torch.dtype) -> bool:
    """Whether ``device`` multiplies ``dtype`` matrices in hardware (always, for a half dtype off the CPU).

    A CPU without bf16 instructions (AVX512-BF16 or AMX) emulates bf16 matrix products, many times
    slower than fp32 (8x for a Qwen2-0.5B projection on an AVX2 CPU, 100x for the backward's
    ``grad @ weight`` layout); with them, bf16 is 2-3x faster than fp32. fp16 needs AMX-FP16.
    """
    if torch.device(device).type != "cpu" or dtype not in (torch.bfloat16, torch.float16):
        return True
    cpu = torch.cpu
    if dtype == torch.bfloat16:
        return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported",
                                                                        "_is_amx_tile_supported"))
    return getattr(cpu, "_is_amx_fp16_supported", lambda: False)()
