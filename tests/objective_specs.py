"""How the tests parametrised over every registered objective build each one: shared by the
contract tests (tests/objectives) and the distributed ones, so a new objective is set up once."""

from __future__ import annotations

D = 6  # student embedding width; teacher rows have width 4 unless SAME_DIM_TEACHER
PAIR = ["image", "text"]
# Objective name -> (modalities, params, extra embedding keys of dim 4 that carry no mask);
# a name not listed takes (PAIR, {}, []).
SPECS: dict[str, tuple[list[str], dict, list[str]]] = {
    "symile": (["image", "text", "audio"], {"negatives": "n_squared"}, []),
    "affinity_distillation": (
        PAIR,
        {"alpha": 0.5, "learn_temperature": True},
        ["image.teacher", "text.teacher"],
    ),
    "feature_distillation": (PAIR, {}, ["image.teacher", "text.teacher"]),
    "momentum_itc": (PAIR, {"queue_size": 4, "embed_dim": D}, []),
}
SAME_DIM_TEACHER = {"feature_distillation"}  # the others take teacher rows of another dim (4)
