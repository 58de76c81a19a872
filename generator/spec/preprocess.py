"""``preprocess:`` — CPU preprocessing in front of the model, served as an ensemble: image bytes
(``image:``: decode, resize, normalise) or strings (``text:``: the fast tokenizer). The spec's sections
are read into one flat result (``ImagePreprocess`` / ``TextPreprocess``) once the model's inputs are known."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import Field

from .base import Mapping, PosInt, Str, fail, spec_type
from .hf_folder import PADDINGS, max_positions, read_config, resolve_folder

_RGB = Annotated[tuple[Annotated[float, Field(strict=False)], ...], Field(min_length=1, max_length=3)]


@spec_type
class ImageSection(Mapping):
    size: Annotated[tuple[PosInt, ...], Field(min_length=2, max_length=2)] = Field(description="[height, width].")
    mean: _RGB = Field(default=(0.485, 0.456, 0.406), description="Per-channel mean: 3 values (RGB), or 1 for a "
                                                                "grayscale model (images converted to L).")
    std: _RGB = Field(default=(0.229, 0.224, 0.225), description="Per-channel std, as many values as mean.")
    layout: Literal["NCHW", "NHWC"] = Field(default="NCHW", description="Tensor layout.")
    input: Optional[Str] = Field(default=None, description="The model input it feeds (default: the first).")
    dtype: Literal["string", "uint8"] = Field(
        default="string", description="The ensemble's image input: string (TYPE_STRING [1], one encoded image per "
                                      "element, a batch may mix sizes) or uint8 (TYPE_UINT8 [-1], raw bytes).")


@spec_type
class TextSection(Mapping):
    tokenizer: Optional[Str] = Field(default=None, description="Folder with tokenizer.json (default: the "
                                                               "huggingface source folder).")
    max_length: Optional[PosInt] = Field(default=None, description="Truncate to this many tokens (<= the "
                                                                   "model's positions).")
    padding: Literal["longest", "max_length"] = Field(default="longest", description="longest: per request; "
                                                      "max_length: always max_length tokens.")
    execution_env: Optional[Str] = Field(default=None, description="EXECUTION_ENV_PATH for the NGC target's "
                                         "tokenizer (numpy<2 + tokenizers), e.g. $$TRITON_MODEL_DIRECTORY/env.tar.gz.")


@spec_type
class PreprocessSection(Mapping):
    image: Optional[ImageSection] = Field(default=None, description="Image bytes -> the model's image input "
                                                                    "(decode, resize, normalise).")
    text: Optional[TextSection] = Field(default=None, description="Strings -> the model's input_ids / "
                                                                  "attention_mask / token_type_ids.")
    variant: Optional[Str] = Field(default=None, description="The variant the ensemble feeds (default: the model's "
                                                             "preferred_variant).")
    instances: Optional[PosInt] = Field(default=None, description="Preprocessing instances (KIND_CPU; default 2 "
                                                                  "for images, 1 for text).")


@spec_type
class ImagePreprocess:
    """CPU image preprocessing: decode JPEG/PNG bytes, RGB, resize, scale to [0,1], normalise."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    layout: str = "NCHW"
    input: str = ""  # the model input it feeds (the first input by default)
    variant: Optional[str] = None  # the variant the ensemble feeds (default: the model's preferred_variant)
    dtype: str = "string"  # the ensemble's image input: string (TYPE_STRING [1]) | uint8 (TYPE_UINT8 [-1])
    instances: int = 2  # preprocessing instances (KIND_CPU)


@spec_type
class TextPreprocess:
    """CPU tokenisation (python backend, the fast tokenizer): strings -> the model's token inputs."""

    tokenizer: Path  # the folder holding tokenizer.json (or files AutoTokenizer reads)
    max_length: int
    padding: str = "longest"  # longest (per request) | max_length
    outputs: tuple = ()  # model inputs the tokenizer feeds: ((input name, "ids"|"attention_mask"|"type_ids"), ...)
    variant: Optional[str] = None
    instances: int = 1
    execution_env: Optional[str] = None  # EXECUTION_ENV_PATH for the NGC target


ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def resolve(sec: PreprocessSection, inputs, source, root: Path | None, where: str = "model"):
    """The flat result of a ``preprocess:`` section for a model with these inputs and source (errors ``fail``
    at paths relative to ``preprocess``)."""
    if sec.image is not None and sec.text is not None:
        raise fail("give image or text, not both", at="text")
    if sec.text is not None:
        return _text(sec, inputs, source, root, where)
    if sec.image is None:
        raise fail("missing; add it", at="image.size")
    img = sec.image
    if any(x == 0 for x in img.std):
        raise fail("must not contain 0", at="image.std")
    if len(img.mean) not in (1, 3):
        raise fail(f"give 3 values (RGB) or 1 (grayscale), got {len(img.mean)}", at="image.mean")
    if len(img.std) != len(img.mean):
        raise fail(f"give as many values as mean ({len(img.mean)}), got {len(img.std)}", at="image.std")
    name = img.input or inputs[0].name
    target = next((t for t in inputs if t.name == name), None)
    if target is None:
        raise fail(f"'{name}' is not a declared input", at="image.input")
    ch = len(img.mean)
    kind = "grayscale: 1 mean/std value" if ch == 1 else "RGB: 3 mean/std values"
    want = (ch, *img.size) if img.layout == "NCHW" else (*img.size, ch)
    if tuple(target.shape) != want or not target.dtype.is_float:
        raise fail(f"input '{name}' is {list(target.shape)} {target.dtype.name} but {img.layout} preprocessing to "
                   f"{list(img.size)} makes {list(want)} float32 ({kind}); make them agree", at="image")
    return ImagePreprocess(size=tuple(img.size), mean=tuple(float(x) for x in img.mean),
                           std=tuple(float(x) for x in img.std), layout=img.layout, input=name, variant=sec.variant,
                           instances=sec.instances or 2, dtype=img.dtype)


def _text(sec: PreprocessSection, inputs, source, root: Path | None, where: str) -> TextPreprocess:
    t = sec.text
    model_folder = source.path if source is not None and source.kind == "huggingface" else None
    cfg = read_config(model_folder, "source.huggingface") if model_folder is not None else None
    if t.tokenizer is None:
        if model_folder is None:
            raise fail("missing; give the folder holding tokenizer.json", at="text.tokenizer")
        tok_folder = model_folder
    else:
        tok_folder = resolve_folder(t.tokenizer, f"{where}.preprocess.text.tokenizer", root or Path("."), "a tokenizer folder")
    feeds = [(i.name, ENCODING_FIELDS[i.name]) for i in inputs if i.name in ENCODING_FIELDS]
    if not any(n == "input_ids" for n, _ in feeds):
        raise fail("the model has no input named input_ids; text preprocessing feeds "
                   "input_ids/attention_mask/token_type_ids", at="text")
    ids = next(i for i in inputs if i.name == "input_ids")
    if ids.dtype.is_float:
        raise fail(f"input_ids is {ids.dtype.name}; token ids are integers (int64)", at="text")
    seq = ids.shape[-1] if ids.shape else None
    limit = max_positions(cfg) if cfg else None
    if isinstance(seq, int):
        limit = seq if limit is None else min(limit, seq)
    max_length = t.max_length
    if max_length is None:
        if limit is None:
            raise fail("missing; set the longest token sequence to send the model", at="text.max_length")
        max_length = limit
    if limit is not None and max_length > limit:
        raise fail(f"{max_length} is above the model's position limit {limit}; lower it to {limit} or less",
                   at="text.max_length")
    if isinstance(seq, int) and t.padding != "max_length":
        raise fail(f"input_ids has a fixed length {seq}; use padding: max_length", at="text.padding")
    assert t.padding in PADDINGS
    return TextPreprocess(tokenizer=tok_folder, max_length=max_length, padding=t.padding, outputs=tuple(feeds),
                          variant=sec.variant, instances=sec.instances or 1, execution_env=t.execution_env)
