"""Applying the winner: into a repository's config.pbtxt (``--apply``), and as the spec snippet ``tuned.yaml``
that the next ``tritongen build`` renders into the same config.

``tuned.yaml`` holds only keys the spec reader accepts, per model: ``max_batch_size``, ``preferred_variant``
(the variant the ensemble feeds) and ``triton:`` (``instance_group``, ``dynamic_batching``,
``intra_op_threads``). Instance groups keep the spec's own: the measured group (the served CPU one) takes the
winner's count; the spec's KIND_GPU groups stay as they are (the embedded server measured CPU only).
Dynamic batching keeps the spec's other keys (``preserve_ordering``, priorities).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

from generator.errors import UserError

from .config import apply_candidate, check_candidate, config_text
from .space import Candidate

TUNED_HEADER = ("# tritongen tune: paste these values into your spec's models (each key replaces yours; under\n"
                "# triton: only the keys given here), or build from tuned-spec.yaml beside it\n")

def apply_to_repository(repo: Path, cand: Candidate, log=print) -> str:
    """Write ``cand`` into ``repo/<variant>/config.pbtxt`` (schema + validator first; atomic; idempotent).

    Returns 'written', 'unchanged' or raises UserError."""
    from generator.config.validate import check_model_dir, parse_config

    mdir = Path(repo) / cand.variant
    path = mdir / "config.pbtxt"
    if not path.is_file():
        raise UserError(f"--apply: {path} not found; build the repository first")
    old = path.read_text()
    base, problem = parse_config(old, f"{cand.variant}/config.pbtxt")
    if problem:
        raise UserError(problem)
    cfg = apply_candidate(base, dataclasses.replace(cand, label=""))
    head = [ln for ln in old.splitlines() if ln.startswith("#") and "tritongen tune" not in ln]
    header = "\n".join(head + [f"# Settings chosen by tritongen tune: {cand.short()}"])
    text = config_text(cfg, header)
    if text == old:
        return "unchanged"
    problems = check_candidate(cfg, cand.variant)
    if problems:
        raise UserError(f"--apply: the tuned config would be invalid: {problems[0]}")
    tmp = path.with_suffix(".pbtxt.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    rep = check_model_dir(mdir)
    if rep.problems:
        path.write_text(old)
        raise UserError(f"--apply: {rep.problems[0]} (the old config was restored)")
    log(f"applied to {path}")
    return "written"



def _tuned_groups(model_spec, cand: Candidate) -> list[dict]:
    """The spec's instance groups with the measured one (its first non-GPU group, else a new KIND_CPU one)
    holding the winner's count; KIND_GPU groups unchanged. Triton's default (no count): the GPU groups only."""
    groups = [{"count": g.count, "kind": g.kind, **({"gpus": list(g.gpus)} if g.gpus else {}),
               **({"profile": list(g.profile)} if g.profile else {})} for g in model_spec.triton.instance_group]
    gpu = [g for g in groups if g["kind"] == "KIND_GPU"]
    if cand.instances is None:
        return gpu
    if groups and len(gpu) == len(groups):
        return groups  # only KIND_GPU groups: what was measured (on CPU) does not apply to them
    measured = next((g for g in groups if g["kind"] != "KIND_GPU"), {"kind": "KIND_CPU"})
    out, placed = [], False
    for g in groups or [measured]:
        if g["kind"] == "KIND_GPU":
            out.append(g)
        elif not placed:
            out.append({**g, "count": cand.instances})
            placed = True
    return out


def spec_snippet(model_spec, variant_key: str, cand: Candidate) -> dict:
    """The winner as the spec's own keys for ``model_spec`` (see the module's docstring)."""
    raw_triton = (getattr(model_spec, "raw", None) or {}).get("triton") or {}
    triton: dict = {"instance_group": _tuned_groups(model_spec, cand), "intra_op_threads": cand.threads}
    if cand.queue_delay_us is None or cand.max_batch_size == 0:
        triton["dynamic_batching"] = False
    else:
        db = raw_triton.get("dynamic_batching")
        db = copy.deepcopy(db) if isinstance(db, dict) else {}
        db.update(preferred_batch_size=list(cand.preferred), max_queue_delay_microseconds=cand.queue_delay_us)
        triton["dynamic_batching"] = db
    return {"name": model_spec.name, "max_batch_size": cand.max_batch_size, "preferred_variant": variant_key,
            "triton": triton}


def merge_snippets(spec_data: dict, snippets: list[dict]) -> dict:
    """``spec_data`` (the spec's YAML mapping) with each snippet pasted into its model: top-level keys replace
    the model's, ``triton:`` keys replace the model's ``triton:`` keys of the same name."""
    out = copy.deepcopy(spec_data)
    by_name = {s["name"]: s for s in snippets}
    for m in out.get("models") or []:
        s = by_name.get(m.get("name"))
        if s is None:
            continue
        for k, v in s.items():
            if k == "triton":
                m["triton"] = {**(m.get("triton") or {}), **copy.deepcopy(v)}
            elif k != "name":
                m[k] = copy.deepcopy(v)
    return out


def write_tuned(out: Path, spec_path: Path, snippets: list[dict]) -> Path:
    """``out/tuned.yaml`` (the snippets) and ``out/tuned-spec.yaml`` (the spec with them pasted in; relative
    paths still resolve when it is copied beside the spec)."""
    import yaml

    (out / "tuned.yaml").write_text(TUNED_HEADER + yaml.safe_dump({"models": snippets}, sort_keys=False))
    data = yaml.safe_load(Path(spec_path).read_text()) or {}
    (out / "tuned-spec.yaml").write_text(
        f"# {Path(spec_path).name} with tritongen tune's winners (tuned.yaml) pasted in; copy it beside the spec\n"
        + yaml.safe_dump(merge_snippets(data, snippets), sort_keys=False))
    return out / "tuned.yaml"
