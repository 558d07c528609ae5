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

Bad input is named before transformers sees it: a local folder without ``config.json``, with a
``config.json`` that is not JSON, or with weights missing or cut short is an error naming the file and
what to do. A hub name is checked with one short request (huggingface_hub's ``model_info``, with
its ``HF_HUB_ETAG_TIMEOUT``): when the hub cannot be reached, or ``HF_HUB_OFFLINE`` is set, the
model loads from the Hugging Face cache if it is there, and otherwise the error says at once that
the hub is unreachable and which name was tried (transformers alone retries for about a minute).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import huggingface_hub
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from safetensors import SafetensorError, safe_open
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


def locate(name_or_path: str | Path) -> str:
    """:func:`resolve`, and for a hub name, the hub or, when it cannot be reached, the Hugging Face cache.

    A hub name is returned unchanged when the hub answers (even with "no such model": transformers
    says so). When it does not answer, or ``HF_HUB_OFFLINE`` is set, the name's folder in the cache
    (``HF_HUB_CACHE``) is returned if the model was downloaded before.

    Raises:
        FileNotFoundError: At once, for a hub name that is not cached while the hub is unreachable,
            naming the name tried and the hub; and as :func:`resolve` does.
    """
    name = resolve(name_or_path)
    if Path(name).exists():
        return name
    if hub_constants.is_offline_mode():
        why = "offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)"
    else:
        try:
            huggingface_hub.HfApi(endpoint=hub_constants.ENDPOINT).model_info(
                name, timeout=hub_constants.HF_HUB_ETAG_TIMEOUT)
            return name
        except HFValidationError:
            raise FileNotFoundError(f"{name!r} is neither a local folder nor a hub name (owner/name); pass an "
                                    "existing folder written by save_pretrained, a hub name, or an embedded name "
                                    "such as 'textgym/tiny-lm'") from None
        except HfHubHTTPError:
            return name  # the hub answered: transformers reports a missing, gated or private model in its words
        except Exception as err:  # no connection, a timeout, a proxy refusing: the hub is out of reach
            why = f"the hub at {hub_constants.ENDPOINT} is unreachable ({type(err).__name__}: {err})"
    try:
        return huggingface_hub.snapshot_download(name, local_files_only=True)
    except (FileNotFoundError, HFValidationError):
        raise FileNotFoundError(
            f"cannot load {name!r}: it is not a local folder, {why}, and it is not in the Hugging Face cache "
            f"({hub_constants.HF_HUB_CACHE}); pass a local folder written by save_pretrained or an embedded name "
            "such as 'textgym/tiny-lm', or download the model once while online") from None


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; a file that is not one is an error naming it.

    Raises:
        ValueError: For a file that is not JSON, or JSON that is not an object.
    """
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): the file is damaged or was cut short; copy it again, "
                         "or save the model again with save_pretrained") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not the object save_pretrained writes; "
                         "copy it again, or save the model again")
    return value


#: The weight files ``save_pretrained`` writes, in the order transformers looks for them: (safetensors, pickled).
WEIGHT_FILES = (("model.safetensors", "model.safetensors.index.json"),
                ("pytorch_model.bin", "pytorch_model.bin.index.json"))


def check_model_folder(folder: str | Path, *, use_safetensors: bool = True) -> None:
    """Check that a local model folder holds a readable ``config.json`` and whole weights; no-op for a hub name.

    Safetensors files are checked by reading their header (cheap: the weights stay on disk), which
    finds a file cut short or one that is not safetensors at all. Sharded weights are checked shard
    by shard, as their index names them.

    Raises:
        FileNotFoundError: For a missing ``config.json`` or missing weights (the message names the file).
        ValueError: For a ``config.json`` that is not JSON or names no ``model_type``, damaged weights, or
            only pickled weights while ``use_safetensors`` is on.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    config = folder / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config} is missing: {folder} is not a whole model folder (save_pretrained writes "
                                "config.json beside the weights); copy the whole folder, or save the model again")
    if "model_type" not in read_json(config):
        raise ValueError(f"{config} names no model_type, so transformers cannot tell the architecture; copy it "
                         "again, or save the model again with save_pretrained")
    safetensors, pickled = ([f for f in files if (folder / f).is_file()] for files in WEIGHT_FILES)
    if not safetensors:
        if pickled and not use_safetensors:
            return
        if pickled:
            raise ValueError(f"{folder} holds pickled weights ({pickled[0]}) and no model.safetensors; pickled "
                             "weights can run code when loaded, so textgym refuses them: load with "
                             "use_safetensors=False if you trust the file, or save the model again as safetensors")
        raise FileNotFoundError(f"{folder / 'model.safetensors'} is missing: {folder} holds a config.json but no "
                                "weights; copy the whole folder, or save the model again with save_pretrained")
    if safetensors[0].endswith(".index.json"):
        shards = sorted(set(read_json(folder / safetensors[0]).get("weight_map", {}).values()))
    else:
        shards = [safetensors[0]]
    for shard in shards:
        _check_safetensors(folder / shard)


def _check_safetensors(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing (the weights' index names it); copy the whole folder, or save "
                                "the model again")
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except SafetensorError as err:
        raise ValueError(f"{path} is damaged ({err}): it is not a whole safetensors file (a copy or download cut "
                         "short?); copy it again, or save the model again with save_pretrained") from None


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
    folder = locate(name_or_path)
    adapter = Path(folder) / "adapter_config.json"
    if adapter.is_file():
        return _load_adapters(Path(folder), trust_remote_code=trust_remote_code, dtype=dtype, device_map=device_map,
                              trainable=trainable)
    check_model_folder(folder, use_safetensors=use_safetensors)
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
    base_name = read_json(folder / "adapter_config.json").get("base_model_name_or_path")
    if not isinstance(base_name, str):
        raise ValueError(f"{folder / 'adapter_config.json'} names no base_model_name_or_path, the model the adapters "
                         "belong to; copy it again, or save the adapters again with save_pretrained")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file() and not (folder / "adapter_model.bin").is_file():
        raise FileNotFoundError(f"{weights} is missing: {folder} holds an adapter_config.json but no adapter "
                                "weights; copy the whole folder, or save the adapters again")
    if weights.is_file():
        _check_safetensors(weights)
    trainable = kwargs.pop("trainable")
    beside = folder / base_name  # a base recorded relative to the adapters' folder travels with it
    base = load_causal_lm(beside if base_name.startswith(".") and beside.is_dir() else base_name, **kwargs)
    with no_progress_bars():
        model = PeftModel.from_pretrained(base, str(folder), is_trainable=trainable)
    # peft's wrapper stands in for the model it wraps: it forwards every attribute it lacks to it
    return cast(PreTrainedModel, model.train(False) if not trainable else model)


def load_classifier(
    name_or_path: str | Path, *, trust_remote_code: bool = False, use_safetensors: bool = True,
    dtype: str | torch.dtype | None = None, device_map: Any = None,
) -> PreTrainedModel:
    """Load a sequence classifier in eval mode (embedded name, hub name or local folder)."""
    folder = locate(name_or_path)
    check_model_folder(folder, use_safetensors=use_safetensors)
    with no_progress_bars():
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, trust_remote_code=trust_remote_code, use_safetensors=use_safetensors,
            dtype=as_dtype(dtype), device_map=device_map,
        )
    model.name_or_path = str(name_or_path)
    return model.eval()


#: ``tokenizer_class`` values of tokenizers saved as a plain ``tokenizers`` pipeline.
GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(name_or_path: str | Path, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load the tokenizer saved with a model (embedded name, hub name or local folder)."""
    folder = locate(name_or_path)
    adapter = Path(folder) / "adapter_config.json"
    if adapter.is_file() and not (Path(folder) / "tokenizer_config.json").is_file():
        folder = locate(read_json(adapter)["base_model_name_or_path"])
    config = Path(folder) / "tokenizer_config.json"
    saved_class = read_json(config).get("tokenizer_class") if config.is_file() else None
    try:
        return _load_tokenizer(folder, saved_class, trust_remote_code)
    except Exception:
        if (Path(folder) / "tokenizer.json").is_file():
            read_json(Path(folder) / "tokenizer.json")  # a damaged file is named, not a parse error deep in tokenizers
        raise


def decode(tokenizer: PreTrainedTokenizerBase, ids: list[int], *, skip_special_tokens: bool = False) -> str:
    """The text of one sequence of token ids: ``tokenizer.decode``, typed for the one-sequence case.

    >>> decode(load_tokenizer("textgym/tiny-lm"), [40, 73])
    'Hi'
    """
    return cast(str, tokenizer.decode(ids, skip_special_tokens=skip_special_tokens))  # one sequence: one string


def _load_tokenizer(folder: str, saved_class: str | None, trust_remote_code: bool) -> PreTrainedTokenizerBase:
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
