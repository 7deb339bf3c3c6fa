"""The pydantic schema of an experiment: every default lives here, the validated config is frozen.

Relative paths in a config are resolved against the current working directory.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modalign.errors import ConfigError

Kind = Literal["image", "audio", "text", "tabular", "timeseries"]


class _Frozen(BaseModel):
    # NaN/inf are never a setting (an inf lr passes gt=0 and trains NaNs)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ImageTransformConfig(_Frozen):
    """Image loading: Pillow decode, grey or RGB, resize shorter side + centre crop, normalise."""

    size: int = Field(224, gt=0, description="output height and width in pixels")
    channels: Literal[1, 3] = Field(3, description="1 = greyscale, 3 = RGB")
    mean: tuple[float, ...] = Field((0.5,), description="per-channel mean (one value = all)")
    std: tuple[float, ...] = Field((0.5,), description="per-channel std (one value = all)")
    max_pixels: int = Field(64_000_000, gt=0, description="decompression-bomb guard (w*h)")
    interpolation: Literal["bilinear", "bicubic", "nearest"] = Field("bicubic", description="resize filter")
    random_shift: int = Field(0, ge=0, description="training augmentation: max translation in pixels")
    crop_pct: float = Field(
        1.0, gt=0, le=1, description="centre crop keeps this fraction of the resized shorter side (timm's)"
    )

    @model_validator(mode="after")
    def _normalisation_per_channel(self) -> ImageTransformConfig:
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                raise ValueError(f"{name} has {len(values)} values; give 1 or channels={self.channels}")
        if any(v <= 0 for v in self.std):
            raise ValueError(f"std must be > 0, got {list(self.std)}")
        return self


class AudioTransformConfig(_Frozen):
    """Audio loading: soundfile decode, mono mix-down, polyphase resampling, pad/crop, log-mel."""

    sample_rate: int = Field(16000, gt=0, description="the model's sample rate in Hz")
    max_seconds: float = Field(5.0, gt=0, description="longer clips are cropped, shorter padded")
    n_fft: int = Field(400, gt=0, description="STFT window length in samples")
    hop_length: int = Field(160, gt=0, description="STFT hop in samples (one mel frame per hop)")
    n_mels: int = Field(64, gt=0, description="mel bands of the log-mel spectrogram")
    f_min: float = Field(0.0, ge=0, description="lowest mel filter frequency in Hz")
    f_max: float | None = Field(None, gt=0, description="highest mel frequency in Hz; null = sample_rate / 2")

    @model_validator(mode="after")
    def _mel_filters_are_not_empty(self) -> AudioTransformConfig:
        # at least one FFT window per clip, f_max <= Nyquist, no mel band narrower than the bins
        from modalign.data._audio_settings import audio_settings_problem  # arithmetic, no torch

        problem = audio_settings_problem(
            self.sample_rate,
            self.max_seconds,
            self.n_fft,
            self.hop_length,
            self.n_mels,
            self.f_min,
            self.f_max,
        )
        if problem is not None:
            raise ValueError(problem)
        return self


class TextTransformConfig(_Frozen):
    """Text: a BPE tokenizer trained on the training split with Hugging Face `tokenizers`."""

    vocab_size: int = Field(8000, gt=10, description="upper bound of the learned vocabulary")
    max_length: int = Field(64, gt=1, description="tokens kept per text (longer is truncated)")
    lowercase: bool = Field(True, description="lowercase text before tokenising")
    min_frequency: int = Field(1, ge=1, description="minimum count of a merge in the BPE training")


class TabularTransformConfig(_Frozen):
    """Tabular: numeric columns standardised with training statistics, categorical ones indexed."""

    numeric: tuple[str, ...] = Field((), description="numeric manifest columns")
    categorical: tuple[str, ...] = Field((), description="categorical manifest columns")
    scaling: Literal["standard", "minmax", "none"] = Field(
        "standard",
        description="numeric scaling fitted on the training split: z-score, (x - min) / (max - min), or raw",
    )
    missing_flags: bool = Field(
        True, description="append one 0/1 missing indicator per numeric feature to the encoder input"
    )


class TimeSeriesTransformConfig(_Frozen):
    """Time series: a list of numbers (or of per-step lists), or a .npy/.csv file -> (T, C)."""

    channels: int = Field(1, ge=1, description="channels C per time step")
    max_length: int | None = Field(None, ge=1, description="keep at most this many leading steps")


_TRANSFORMS: dict[str, type[_Frozen]] = {
    "timeseries": TimeSeriesTransformConfig,
    "image": ImageTransformConfig,
    "audio": AudioTransformConfig,
    "text": TextTransformConfig,
    "tabular": TabularTransformConfig,
}
_DEFAULT_ENCODERS = {
    "image": "image_cnn",
    "audio": "audio_cnn",
    "text": "text_transformer",
    "tabular": "tabular_mlp",
    "timeseries": "timeseries_conv",
}


class LastNBlocks(_Frozen):
    last_n_blocks: int = Field(..., ge=1, description="train the encoder's last N blocks and the projector")


class LoraConfig(_Frozen):
    """LoRA adapters on the encoder's linear layers (through peft)."""

    r: int = Field(8, ge=1, description="rank of the low-rank update")
    alpha: float = Field(16.0, gt=0, description="scale alpha (the update is alpha / r * B A)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter's input")
    targets: tuple[str, ...] = Field((), description="linear layer names to adapt; empty = every nn.Linear")


class ModalityConfig(_Frozen):
    """One named modality: where it is in the manifest, how it is read and encoded."""

    kind: Kind = Field(
        ..., description="image, audio, text, tabular or timeseries: picks transform and default encoder"
    )
    column: str | None = Field(None, description="manifest column; defaults to the modality name")
    encoder: str | None = Field(None, description="registered encoder; default per kind")
    preset: Literal["tiny", "small"] = Field("tiny", description="encoder size; encoder_params override it")
    encoder_params: dict[str, Any] = Field(default_factory=dict, description="override preset")
    transform: Any = Field(
        default_factory=dict,
        description="kind-specific transform settings; a pretrained encoder brings its own processor "
        "(tokenizer, size, normalisation) and only the settings written here override it",
    )
    trainable: Literal["all", "projector", "none"] | LastNBlocks = Field(
        "all",
        description="what trains: all, projector (frozen encoder), none (frozen tower) or "
        "{last_n_blocks: N} (the projector and the encoder's last N blocks)",
    )
    lora: LoraConfig | None = Field(None, description="LoRA adapters on the encoder's linear layers")
    lr_scale: float = Field(1.0, ge=0, description="this tower's learning rate = trainer.lr * lr_scale")

    @model_validator(mode="before")
    @classmethod
    def _typed_transform(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("kind"), str) and data["kind"] in _TRANSFORMS:
            t = data.get("transform")
            t = {} if t is None else t
            if isinstance(t, dict):
                data = {**data, "transform": _TRANSFORMS[data["kind"]].model_validate(t)}
            elif not isinstance(t, _TRANSFORMS[data["kind"]]):
                raise ValueError(f"transform must be a mapping of {data['kind']} settings, got {t!r}")
        return data

    @property
    def encoder_name(self) -> str:
        return self.encoder if self.encoder is not None else _DEFAULT_ENCODERS[self.kind]


class DataConfig(_Frozen):
    manifest: Path = Field(
        ...,
        description="JSONL, CSV or Parquet manifest, one row per sample, or a Hugging Face dataset "
        "directory written by save_to_disk",
    )
    archive: Path | None = Field(
        None, description="tar(.gz) extracted next to itself when the manifest does not exist yet"
    )
    id_column: str = Field("id", description="column holding the sample id")
    split_column: str = Field("split", description="column naming each row's split")
    train_split: str = Field("train", description="split the model and the transforms are fitted on")
    val_split: str | None = Field("val", description="split of the validation loss; null = none")
    test_split: str | None = Field("test", description="split evaluated after training; null = none")
    label_column: str | None = Field(None, description="class label, used by zero-shot evaluation")
    on_error: Literal["skip", "fail"] = Field(
        "skip", description="skip (and count) bad rows, or fail with a DataError"
    )
    source: Literal["auto", "memory", "stream", "shards"] = Field(
        "auto",
        description="training rows preprocessed in memory, streamed from the manifest by DataLoader "
        "workers (bounded memory, same batches), or from data.shards; auto streams above "
        "data.stream_above rows",
    )
    shards: Path | None = Field(
        None, description="directory of `modalign data pack` shards of the manifest (data.source: shards)"
    )
    shuffle_buffer: int = Field(1000, ge=1, description="records each shard reader shuffles among")
    stream_above: int = Field(50_000, ge=0, description="training rows above which data.source=auto streams")
    workers: int = Field(2, ge=0, description="DataLoader worker processes of a streamed source (0 = none)")


class ObjectiveConfig(_Frozen):
    name: str = Field("clip", description="registered objective name")
    weight: float = Field(1.0, description="weight of this objective in the sum")
    params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the objective")


class TaskConfig(_Frozen):
    """A prediction task on the fused representation."""

    name: str = Field(..., description="task name (key of metrics and predictions)")
    kind: Literal["multiclass", "multilabel", "regression"] = Field("multiclass", description="output type")
    column: str | None = Field(None, description="label column; defaults to the task name")
    classes: tuple[Any, ...] | None = Field(
        None, description="class values in output order; null = the training split's labels, sorted"
    )
    weight: float = Field(1.0, ge=0, description="loss weight")

    @property
    def label_column(self) -> str:
        return self.column if self.column is not None else self.name


class FusionConfig(_Frozen):
    """Fusion of the modality embeddings into task predictions (robust to missing modalities)."""

    name: str = Field("concat", description="registered fusion: concat, attention, multimodn, lego")
    params: dict[str, Any] = Field(default_factory=dict, description="fusion keyword arguments")
    tasks: tuple[TaskConfig, ...] = Field(..., min_length=1, description="prediction tasks (label columns)")
    input: Literal["embedding", "features"] = Field(
        "embedding",
        description="what is fused: the unit-norm embeddings, or the towers' unnormalised features",
    )
    head_hidden: int | None = Field(None, gt=0, description="hidden width of task heads; null = linear")
    head_depth: int = Field(
        1,
        ge=1,
        description="hidden layers per task head (2 = M3CoL's Linear-ReLU-Dropout-Linear-ReLU-Linear)",
    )
    head_dropout: float = Field(0.0, ge=0, lt=1, description="dropout after the first hidden layer of heads")
    aux_heads: bool = Field(False, description="unimodal auxiliary heads (M3CoL recipe)")
    aux_weight: float = Field(1.0, ge=0, description="loss weight of every unimodal auxiliary head")
    prediction: Literal["fused", "ensemble"] = Field(
        "fused",
        description="fused: the fusion head; ensemble: per row, the mean of the fusion head's and the "
        "present modalities' auxiliary heads' probabilities (needs aux_heads)",
    )
    modality_dropout: dict[str, float] = Field(
        default_factory=dict, description="training-time drop rate per modality"
    )


class RobustnessConfig(_Frozen):
    """Missing-modality evaluation of prediction tasks."""

    enabled: bool = Field(True, description="evaluate modality subsets, MCAR and MNAR")
    max_subsets: int = Field(64, gt=0, description="modality subsets evaluated (sampled beyond)")
    mcar_rates: tuple[float, ...] = Field(
        (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), description="missing-at-random rates of the curve"
    )
    mnar_drop: dict[str, dict[Any, float]] = Field(
        default_factory=dict,
        description="MNAR scenario: modality -> {label value: drop probability} at test time",
    )
    explain_samples: int = Field(3, ge=0, description="samples whose per-step predictions are reported")

    @model_validator(mode="after")
    def _probabilities(self) -> RobustnessConfig:
        probs = [*self.mcar_rates, *(p for d in self.mnar_drop.values() for p in d.values())]
        if any(not 0 <= p <= 1 for p in probs):
            raise ValueError(f"mcar_rates and mnar_drop hold probabilities in [0, 1], got {probs}")
        return self


class InheritConfig(_Frozen):
    """TinyCLIP weight inheritance from model.teacher (training/inherit.py)."""

    every_k_layers: int = Field(1, ge=1, description="student layer i starts as teacher layer i * k")
    layers: tuple[int, ...] | None = Field(
        None, description="explicit teacher layer of each student layer (overrides every_k_layers)"
    )


class ModelConfig(_Frozen):
    embed_dim: int = Field(256, gt=0, description="shared embedding dimension D")
    head: Literal["linear", "mlp", "none"] = Field(
        "linear",
        description="projection from encoder features to D: linear, mlp (Linear-GELU-Linear) or none "
        "(the encoder's output is the embedding before normalisation; its width must be embed_dim)",
    )
    teacher: Path | None = Field(
        None,
        description="saved model whose embeddings distillation objectives mimic ({name}.teacher)",
    )
    inherit: InheritConfig | None = Field(
        None,
        description="initialise the student from model.teacher: kept layers and leading slices of its "
        "widths (the student's shapes must be no larger, its text tokenizers the same)",
    )
    teacher_on_augmented: bool = Field(
        False,
        description="run model.teacher on every (augmented) training batch instead of embedding each "
        "sample once unaugmented; needs the student's transforms to equal the teacher's",
    )
    cache_frozen_features: bool = Field(
        True,
        description="compute the outputs of frozen, non-augmented encoders once per sample and train "
        "only what follows them",
    )
    feature_cache_dir: Path | None = Field(
        None, description="keep those features on disk here, reused by later runs; null = this run only"
    )


class TrainerConfig(_Frozen):
    max_steps: int = Field(1000, gt=0, description="optimizer steps")
    batch_size: int | Literal["full"] = Field(
        128, description="rows per step; 'full' (or any size >= the training set) = one batch in data order"
    )
    optimizer: Literal["adamw", "adam"] = Field(
        "adamw",
        description="adamw: decoupled decay on matrices only; adam: L2 decay on every parameter "
        "(torch.optim.Adam, as the M3CoL reference)",
    )
    ema_decay: float | None = Field(
        None, ge=0, lt=1, description="keep an EMA of the weights (avg = d*avg + (1-d)*w) and save it"
    )
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.1, ge=0, description="weight decay (see optimizer)")
    betas: tuple[float, float] = Field((0.9, 0.98), description="Adam betas, each in [0, 1)")
    eps: float = Field(1e-6, gt=0, description="Adam epsilon")
    warmup_steps: int = Field(100, ge=0, description="linear warm-up steps before the cosine decay")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="cosine floor as a fraction of lr")
    grad_clip: float | None = Field(1.0, gt=0, description="max global grad norm; null disables")
    seed: int = Field(0, description="seeds model init, data order, dropout and augmentation")
    checkpoint_every: int = Field(200, gt=0, description="steps between checkpoints (and at the end)")
    keep_checkpoints: int = Field(2, gt=0, description="newest checkpoints kept")
    val_every: int = Field(200, gt=0, description="steps between validation losses (and at the end)")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; null = torch default")
    select_best: bool = Field(
        False, description="save the weights with the lowest validation loss as the model"
    )
    accumulation: Literal["none", "cached"] = Field(
        "none",
        description="cached: exact large-batch gradients from micro-batches (GradCache with RNG replay)",
    )
    micro_batch_size: int | None = Field(
        None, gt=0, description="rows per encoder pass with accumulation=cached"
    )
    device: str = Field(
        "auto",
        description="auto (cuda if available, else mps if available, else cpu), cpu, cuda, cuda:N or mps",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="fp32, or autocast of forward passes and losses to bf16 / fp16 (fp16 adds loss "
        "scaling and needs a GPU)",
    )
    max_nonfinite_steps: int | None = Field(
        None,
        gt=0,
        description="stop with an error after this many steps in a row with a non-finite loss or "
        "gradient (each is skipped, never applied to the weights); null = 1, or 16 with "
        "precision=fp16, whose loss scaler skips overflowing steps while halving its scale from 2**16",
    )

    @field_validator("batch_size")
    @classmethod
    def _batch_of_two(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 2:
            raise ValueError("batch_size must be >= 2 (contrastive losses need negatives) or 'full'")
        return v

    @field_validator("betas")
    @classmethod
    def _betas_below_one(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"Adam betas must each be in [0, 1), got {list(v)}")
        return v

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        # resolved (auto) and checked against the machine by training/devices.py: no torch here
        if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) is None:
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {v!r}")
        return v

    @model_validator(mode="after")
    def _accumulation_needs_micro_batches(self) -> TrainerConfig:
        if self.accumulation == "cached" and self.micro_batch_size is None:
            raise ValueError("trainer.accumulation=cached needs trainer.micro_batch_size")
        return self

    @model_validator(mode="after")
    def _fp16_needs_a_gpu(self) -> TrainerConfig:
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError(
                "trainer.precision=fp16 needs a GPU but trainer.device=cpu; "
                "use trainer.precision=bf16 (or fp32) on a CPU"
            )
        return self


class EvalConfig(_Frozen):
    """Evaluation after training, on ``data.test_split``."""

    match_on: str | None = Field(None, description="positives share this column's value; null = same id")
    ks: tuple[int, ...] = Field(
        (1, 5, 10), min_length=1, description="k of the Recall@k retrieval metrics (each >= 1)"
    )
    zeroshot_text: str | None = Field(
        None, description="text modality giving class prototypes; null = the first text modality"
    )
    batch_size: int = Field(256, gt=0, description="rows per forward pass when embedding for evaluation")
    robustness: RobustnessConfig = Field(RobustnessConfig(), description="missing-modality evaluation")

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 for k in v):
            raise ValueError(f"every k of Recall@k must be >= 1, got {list(v)}")
        return v


class ExperimentConfig(_Frozen):
    """A whole experiment: data, modalities, model, objectives, trainer and evaluation."""

    data: DataConfig = Field(..., description="the manifest and its splits")
    modalities: dict[str, ModalityConfig] = Field(
        ..., description="modality name -> how it is read and encoded"
    )
    model: ModelConfig = Field(ModelConfig(), description="shared embedding space and projection")
    objectives: tuple[ObjectiveConfig, ...] = Field(
        (ObjectiveConfig(),), description="weighted objectives over the embeddings; [] with fusion only"
    )
    fusion: FusionConfig | None = Field(None, description="fusion + task heads for prediction")
    trainer: TrainerConfig = Field(TrainerConfig(), description="optimisation, checkpoints, devices")
    eval: EvalConfig = Field(EvalConfig(), description="evaluation after training")

    @field_validator("modalities")
    @classmethod
    def _some_modalities(cls, v: dict[str, ModalityConfig]) -> dict[str, ModalityConfig]:
        if len(v) < 1:
            raise ValueError("at least one modality is required")
        return v

    @field_validator("objectives")
    @classmethod
    def _unique_objectives(cls, v: tuple[ObjectiveConfig, ...]) -> tuple[ObjectiveConfig, ...]:
        names = [o.name for o in v]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        from modalign.registry import check_name  # names only: imports no model code

        if not self.objectives and self.fusion is None:
            raise ValueError("objectives is empty and there is no fusion: nothing to train")
        for o in self.objectives:
            check_name("objective", o.name)  # unknown names fail here, with close matches
        if self.fusion is not None:
            check_name("fusion", self.fusion.name)
            unknown = set(self.fusion.modality_dropout) - set(self.modalities)
            if unknown:
                raise ValueError(
                    f"fusion.modality_dropout names {sorted(unknown)}, "
                    f"not in modalities {list(self.modalities)}"
                )
            if self.fusion.prediction == "ensemble" and not self.fusion.aux_heads:
                raise ValueError(
                    "fusion.prediction=ensemble averages the auxiliary heads: set fusion.aux_heads"
                )
            if self.trainer.accumulation == "cached":
                raise ValueError(
                    "trainer.accumulation=cached is for contrastive objectives only; with fusion "
                    "tasks (per-sample losses) use a smaller trainer.batch_size instead"
                )
        if self.model.teacher is None and (self.model.inherit is not None or self.model.teacher_on_augmented):
            raise ValueError("model.inherit and model.teacher_on_augmented need model.teacher")
        if self.trainer.accumulation == "cached" and self.model.teacher is not None:
            # GradCache replays only the objectives over the model's embeddings; the teacher's
            # precomputed rows would silently drop out of the loss, so refuse instead.
            raise ValueError(
                "trainer.accumulation=cached does not carry model.teacher's embeddings through its "
                "micro-batches; distil with accumulation=none (a smaller batch_size) instead"
            )
        for m in self.modalities.values():
            check_name("encoder", m.encoder_name)
        if self.eval.zeroshot_text is not None:
            text = self.modalities.get(self.eval.zeroshot_text)
            if text is None or text.kind != "text":
                raise ValueError(
                    f"eval.zeroshot_text={self.eval.zeroshot_text!r} must name a text modality "
                    f"in modalities ({list(self.modalities)})"
                )
        return self

    def column(self, modality: str) -> str:
        m = self.modalities[modality]
        return m.column if m.column is not None else modality


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a raw config dict in place.

    A number addresses an item of a list (``objectives.0.weight=0.5``); one past the end appends
    one. A list the config leaves out starts from the schema's default (``objectives.0.name=siglip``
    replaces the default ``clip``). A number that is an integer key of a mapping stays an integer
    (``eval.robustness.mnar_drop.worst.0=0.8``).
    """
    if "=" not in assignment:
        raise ConfigError(f"--set expects KEY=VALUE, got {assignment!r}")
    key, value = assignment.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if "" in parts:
        raise ConfigError(f"--set {key}: empty field name; write a.b.c=value")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"--set {assignment}: the value is not valid YAML ({problem}); quote it") from None
    node: Any = raw
    for depth, part in enumerate(parts):
        where, last = ".".join(parts[:depth]), depth == len(parts) - 1
        if isinstance(node, list):
            slot: Any = _list_index(node, part, key, where)
            if slot == len(node):
                node.append(parsed if last else {})
        elif isinstance(node, dict):
            slot = int(part) if part not in node and _is_int(part) and int(part) in node else part
            if not last and node.get(slot) is None:
                node[slot] = _seed(parts[: depth + 1], _is_int(parts[depth + 1]))
        else:
            raise ConfigError(f"--set {key}: {where} is {node!r}, not a section or a list")
        if last:
            node[slot] = parsed
            return
        node = node[slot]


def _is_int(part: str) -> bool:
    return part.lstrip("-").isdigit()


def _list_index(items: list[Any], part: str, key: str, where: str) -> int:
    span = f"from 0 to {len(items)} ({len(items)} appends one)"
    if not _is_int(part):
        raise ConfigError(
            f"--set {key}: {where} is a list; address its items by index {span}, e.g. {where}.0"
        )
    i = int(part)
    if not 0 <= i <= len(items):
        raise ConfigError(f"--set {key}: {where} has {len(items)} item(s); use an index {span}")
    return i


def _seed(parts: list[str], list_next: bool) -> Any:
    """A section that ``--set`` creates: the schema's default when it is a list, else empty."""
    owner: Any = ExperimentConfig
    for part in parts[:-1]:
        owner = _field_type(owner, part)
    fields = getattr(owner, "model_fields", {})
    if list_next and parts[-1] in fields:
        default = fields[parts[-1]].get_default(call_default_factory=True)
        if isinstance(default, (tuple, list)):
            return [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in default]
    return [] if list_next else {}


def _field_type(tp: Any, part: Any) -> Any:
    """The type of item ``part`` of a value of type ``tp`` (a model, dict, tuple or optional)."""
    if get_origin(tp) in (Union, UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        tp = inner[0] if len(inner) == 1 else None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(str(part))
        return None if field is None else field.annotation
    args = get_args(tp)
    if get_origin(tp) is dict and len(args) == 2:
        return args[1]
    if get_origin(tp) in (tuple, list) and args:
        return args[0]
    return None


def _message(err: Mapping[str, Any], root: Any, prefix: tuple[Any, ...] = ()) -> str:
    """pydantic's message; an unknown key gets "did you mean" (or the fields its section accepts)."""
    loc = tuple(err["loc"])
    if err.get("type") != "extra_forbidden" or not loc:
        return str(err["msg"])
    owner = root
    for part in loc[:-1]:
        owner = _field_type(owner, part)
    fields = list(getattr(owner, "model_fields", {}))
    section = ".".join(str(p) for p in prefix + loc[:-1])
    if not fields:
        return "unknown field"
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean {section + '.' if section else ''}{close[0]}?"
    return f"unknown field; {section or 'the config'} accepts: {', '.join(fields)}"


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    raw: dict[str, Any] | None = None,
) -> ExperimentConfig:
    """Read a YAML config (or a raw dict), apply ``--set`` overrides and validate it.

    Raises:
        ConfigError: unreadable file or a field that fails validation (the message names it).
    """
    if raw is None:
        if path is None:
            raise ConfigError("a config path or a raw dict is required")
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, ValueError, RecursionError, yaml.YAMLError) as e:  # ValueError: not UTF-8
            raise ConfigError(f"cannot read config {path}: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    for assignment in overrides or []:
        apply_override(raw, assignment)
    lines = _transform_errors(raw)
    if not lines:
        try:
            return ExperimentConfig.model_validate(raw)
        except ValidationError as e:
            lines = [_line(err["loc"], _message(err, ExperimentConfig)) for err in e.errors()]
    raise ConfigError(f"invalid config {path or ''}:\n" + "\n".join(lines))


def _line(loc: tuple[Any, ...] | list[Any], msg: str) -> str:
    where = ".".join(str(p) for p in loc)
    return f"  {where}: {msg}" if where else f"  {msg}"


def _transform_errors(raw: dict[str, Any]) -> list[str]:
    # Transform settings are validated by the schema of the modality's kind; doing it here keeps
    # the full dotted path (modalities.NAME.transform.FIELD) in the message.
    modalities = raw.get("modalities")
    if not isinstance(modalities, dict):
        return []
    lines = []
    for name, m in modalities.items():
        if not isinstance(m, dict) or not isinstance(m.get("kind"), str) or m["kind"] not in _TRANSFORMS:
            continue
        if m.get("transform") is None:
            continue
        if not isinstance(m["transform"], dict):
            where = ("modalities", name, "transform")
            lines.append(_line(where, f"must be a mapping of {m['kind']} settings, got {m['transform']!r}"))
            continue
        try:
            _TRANSFORMS[m["kind"]].model_validate(m["transform"])
        except ValidationError as e:
            where = ("modalities", name, "transform")
            lines += [
                _line((*where, *err["loc"]), _message(err, _TRANSFORMS[m["kind"]], where))
                for err in e.errors()
            ]
    return lines
