"""Stage 1: turn a spec's ``source`` into an eval-mode ``torch.nn.Module``.

Checkpoints load with ``torch.load(weights_only=True)``; a full pickle loads only when the spec
says ``pickle: {path, trust: true}``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from generator.errors import UserError
from generator.spec import ModelSpec, Source


def _module_file(name: str, root: Path) -> Path | None:
    base = root.joinpath(*name.split("."))
    for cand in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def local_sources(module_name: str, root: Path) -> list[Path]:
    """The ``.py`` files under ``root`` that ``module_name`` is made of: the module, its packages'
    ``__init__.py`` and, transitively, every module under ``root`` it imports (anywhere in the file, also
    inside functions). Found by reading the files with ``ast``; nothing is imported (no torch)."""
    import ast

    seen: dict[Path, None] = {}
    todo = [module_name]
    done: set[str] = set()
    while todo:
        name = todo.pop()
        if name in done or not name:
            continue
        done.add(name)
        parts = name.split(".")
        for i in range(1, len(parts)):  # parent packages run their __init__.py
            init = root.joinpath(*parts[:i]) / "__init__.py"
            if init.is_file():
                seen.setdefault(init)
        path = _module_file(name, root)
        if path is None:
            continue
        seen.setdefault(path)
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # importing it will say what is wrong
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".") if package else []
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                todo.append(mod)
                todo += [f"{mod}.{a.name}" if mod else a.name for a in node.names if a.name != "*"]
    return sorted(seen, key=str)


def weights_fingerprint(module) -> str:
    """A cheap fingerprint of a module's weights (names, shapes, dtypes and up to 256 strided values of each): it
    tells whether two loads of one source gave the same weights. "" for a module without a state_dict."""
    import hashlib

    import torch

    if not hasattr(module, "state_dict"):
        return ""
    h = hashlib.sha1()
    try:
        with torch.no_grad():
            for name, t in module.state_dict().items():
                if not isinstance(t, torch.Tensor):
                    continue
                h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
                flat = (t.dequantize() if t.is_quantized else t).detach().reshape(-1)
                if flat.numel():
                    h.update(flat[:: max(1, flat.numel() // 256)].to("cpu", torch.float64).numpy().tobytes())
    except Exception:  # a tensor kind with no plain values (meta, sparse layouts): no fingerprint, no check
        return ""
    return h.hexdigest()


def load_module(model: ModelSpec, root: Path):
    """The model as an eval-mode module on CPU."""
    src = model.source
    where = f"{model.where}.source"
    for p in src.files():
        if not p.is_file():
            field = "checkpoint" if p == src.checkpoint else src.kind
            what = "is a folder, not a file" if p.is_dir() else "not found"
            raise UserError(f"{where}.{field}: file '{p}' {what}; check the path (relative to the spec file)")
    if src.kind == "factory":
        module = _from_factory(src, where, root, model.name)
        if src.checkpoint is not None:
            state = load_state_dict(src, where)
            apply_state_dict(module, state, where)
    elif src.kind == "torchscript":
        module = _torch_call(lambda: _torch().jit.load(str(src.path), map_location="cpu"), where, "torchscript", src.path)
    elif src.kind == "huggingface":  # a local folder, loaded by transformers (generator/loading/hf.py)
        from generator.loading.hf import load

        module = load(model, root)
    elif src.kind == "exported_program":
        ep = _torch_call(lambda: _torch().export.load(str(src.path)), where, "exported_program", src.path)
        module = ep.module()
    else:  # pickle, trusted (checked in the spec)
        module = _torch_call(
            lambda: _torch().load(str(src.path), map_location="cpu", weights_only=False), where, "pickle.path", src.path
        )
        if not isinstance(module, _torch().nn.Module):
            raise UserError(f"{where}.pickle.path: '{src.path.name}' holds a {type(module).__name__}, not a torch.nn.Module")
    if src.kind != "exported_program":  # an ExportedProgram's module is already in inference form
        module.eval()
    return module


def _torch():
    import torch

    return torch


def _short(e: BaseException) -> str:
    """An exception's first sentence, without terminal escape codes or torch's long advice."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    first = (text.splitlines() or [type(e).__name__])[0]
    first = first.split(". This is an internal")[0].split(". If you are seeing")[0]
    return (first if len(first) <= 160 else first[:157] + "...") or type(e).__name__


def _torch_call(fn, where: str, field: str, path: Path):
    import logging

    _torch()  # importing torch sets its loggers' levels: quieten them after that
    quiet = [logging.getLogger(n) for n in ("torch.export", "torch._export", "torch.export.pt2_archive._package")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:  # torch logs its own traceback for a file it cannot read: the one line below says it
        lg.setLevel(logging.ERROR + 10)
    try:
        return fn()
    except Exception as e:  # torch raises many kinds for a bad file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "check the warnings above" in msg:  # the cause torch only logged (and we silenced)
            msg = "not a torch.export archive"
        hint = " (torch.export.save writes a .pt2)" if field == "exported_program" else ""
        raise UserError(f"{where}.{field}: cannot load '{path.name}' ({msg[:200]}); is it the right kind of file?{hint}")
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


_IMPORTED: dict[str, tuple] = {}  # module name -> (file, size, mtime_ns) of the spec-folder modules we loaded


def _under(path: str, root: Path) -> bool:
    import os

    # some modules carry a relative or made-up __file__ ('_ops.py'): only real absolute paths count
    return isinstance(path, str) and os.path.isabs(path) and path.startswith(str(root) + os.sep) \
        and "site-packages" not in path and "dist-packages" not in path and os.path.isfile(path)


def _forget_changed_local_modules() -> None:
    """Python caches imported modules: when a spec-folder module tritongen loaded has changed on disk since,
    drop all of them so the factory runs the code as it is now (a long-lived process, the tests)."""
    import os

    def stamp(f):
        try:
            st = os.stat(f)
            return (f, st.st_size, st.st_mtime_ns)
        except OSError:
            return None

    if any(stamp(v[0]) != v for v in _IMPORTED.values()):
        for name in _IMPORTED:
            sys.modules.pop(name, None)
        _IMPORTED.clear()
        importlib.invalidate_caches()


def _remember_local_modules(root: Path) -> None:
    import os

    for name, mod in list(sys.modules.items()):
        f = getattr(mod, "__file__", None)
        if f and name not in _IMPORTED and _under(f, root):
            try:
                st = os.stat(f)
            except OSError:
                continue
            _IMPORTED[name] = (f, st.st_size, st.st_mtime_ns)


def _from_factory(src: Source, where: str, root: Path, name: str = ""):
    """Import ``module:callable`` from the spec's folder and call it. The folder stays on ``sys.path``
    while the factory runs (imports inside the function work); an exception in the user's code is one
    line naming the callable, the exception and the user's file:line."""
    mod_name, fn_name = src.factory.split(":")
    root_s = str(root)
    added = root_s not in sys.path
    if added:
        sys.path.insert(0, root_s)
    _forget_changed_local_modules()
    try:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            at = user_location(e, root)
            if getattr(e, "name", None) and e.name != mod_name and not mod_name.startswith(f"{e.name}."):
                raise UserError(f"{where}.factory: importing '{mod_name}' failed: {type(e).__name__}: "
                                f"{_first(e)}{at}; install it or make it importable from {root}")
            raise UserError(
                f"{where}.factory: cannot import module '{mod_name}' ({_first(e)}){at}; it must be importable from {root}"
            )
        except Exception as e:
            raise UserError(f"{where}.factory: model '{name}': importing '{mod_name}' failed: {type(e).__name__}: "
                            f"{_first(e)}{user_location(e, root)}; fix the module")
        fn = getattr(mod, fn_name, None)
        if not callable(fn):
            raise UserError(f"{where}.factory: module '{mod_name}' has no callable '{fn_name}'")
        try:
            module = fn(**src.kwargs)
        except UserError:
            raise
        except TypeError as e:
            if e.__traceback__ is not None and e.__traceback__.tb_next is None:  # the call itself: bad kwargs
                raise UserError(f"{where}.kwargs: {src.factory} rejected them ({e}); fix kwargs")
            raise UserError(f"{where}.factory: model '{name}': {src.factory} raised {type(e).__name__}: "
                            f"{_first(e)}{user_location(e, root)}; fix the factory")
        except Exception as e:  # the user's code: one line, no traceback
            raise UserError(f"{where}.factory: model '{name}': {src.factory} raised {type(e).__name__}: "
                            f"{_first(e)}{user_location(e, root)}; fix the factory")
    finally:
        _remember_local_modules(root)
        if added and root_s in sys.path:
            sys.path.remove(root_s)
    import torch

    if not isinstance(module, torch.nn.Module):
        raise UserError(f"{where}.factory: {src.factory} returned a {type(module).__name__}, not a torch.nn.Module")
    return module


def _first(e: BaseException) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:200]


def user_location(e: BaseException, root: Path | None) -> str:
    """`` (at file.py:12)`` for the deepest frame of ``e``'s traceback in the user's code, or ''."""
    from generator.loading.inputs import user_frame

    at = user_frame(e, root) or (user_frame(e) if root is not None else None)
    return f" (at {at})" if at else ""


def load_state_dict(src: Source, where: str) -> dict:
    path = src.checkpoint
    field = f"{where}.checkpoint"
    if path.name.endswith(".index.json"):  # a sharded checkpoint (save_pretrained / save_torch_state_dict)
        from generator.spec.models import checkpoint_shards

        try:
            shards = checkpoint_shards(path)
        except ValueError as e:
            raise UserError(f"{field}: {e}") from None
        state = {}
        for shard in shards:
            state.update(_load_file(shard, field, src.trust))
    else:
        state = _load_file(path, field, src.trust)
    if src.state_dict_key:
        if not isinstance(state, dict) or src.state_dict_key not in state:
            keys = ", ".join(list(state)[:8]) if isinstance(state, dict) else type(state).__name__
            raise UserError(
                f"{where}.state_dict_key: '{src.state_dict_key}' is not in '{path.name}' (top-level keys: {keys})"
            )
        state = state[src.state_dict_key]
    if not isinstance(state, dict):
        raise UserError(f"{field}: '{path.name}' does not hold a state_dict (got {type(state).__name__})")
    nested = [k for k, v in state.items() if isinstance(v, dict)]
    if nested and not any(hasattr(v, "shape") for v in state.values()):
        raise UserError(
            f"{field}: '{path.name}' is a dict of dicts ({', '.join(nested[:5])}); set state_dict_key to the one holding weights"
        )
    if src.strip_prefix:
        p = src.strip_prefix
        state = {k[len(p):] if k.startswith(p) else k: v for k, v in state.items()}
    return state


def _load_file(path: Path, field: str, trust: bool = False):
    """One checkpoint file's contents: safetensors, or torch.save's zip with weights_only=True (``trust``: False,
    unpickling whatever Python objects it holds: the spec's explicit ``source.trust``)."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        except Exception as e:
            raise UserError(f"{field}: '{path.name}' is not a readable safetensors file ({str(e)[:150]})")
    import pickle

    import torch

    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head.startswith(b"PK") and not head.startswith(b"\x80"):  # torch.save: a zip (or an old raw pickle)
        raise UserError(f"{field}: '{path.name}' is not a torch checkpoint (it starts with {head!r}, a torch.save "
                        "file is a zip archive); save one with torch.save(model.state_dict(), path)")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            import re

            blocked = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
            what = f"a pickled {blocked.group(1)}" if blocked else "pickled Python objects"
            raise UserError(
                f"{field}: '{path.name}' holds {what}, not only tensors (weights_only=True refuses it); save "
                "model.state_dict() instead, or set source.trust: true for a file you made yourself (it runs the "
                "pickled code)"
            ) from None
        raise UserError(f"{field}: '{path.name}' is not a torch checkpoint (unpickling failed: "
                        f"{_short(e)}); save one with torch.save(model.state_dict(), path)") from None
    except Exception as e:
        raise UserError(f"{field}: '{path.name}' is corrupt or not a torch checkpoint ({_short(e)}); save one "
                        "with torch.save(model.state_dict(), path)") from None


def apply_state_dict(module, state: dict, where: str) -> None:
    """Strict loading with a readable diff of missing/unexpected keys and shape mismatches."""
    expected = module.state_dict()
    filled = _filled_by_torch(module, state)
    missing = [k for k in expected if k not in state and k not in filled]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected:
        hint = _prefix_hint(missing, unexpected)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise UserError(f"{where}.checkpoint: state_dict keys do not match the model: {'; '.join(parts)}; {hint}")
    if shapes:
        raise UserError(
            f"{where}.checkpoint: {len(shapes)} tensor shape(s) differ: {'; '.join(shapes[:3])}; check source.kwargs"
        )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:  # what torch still refuses after the checks above: its own first line
        raise UserError(f"{where}.checkpoint: PyTorch refused the state_dict: {str(e).strip().splitlines()[0][:300]}; "
                        "check source.factory/kwargs match the checkpoint") from None


def _filled_by_torch(module, state: dict) -> set[str]:
    """Keys torch's strict ``load_state_dict`` fills in itself: a BatchNorm's ``num_batches_tracked``, absent from
    checkpoints written before PyTorch 0.4.1 and from many converted ones (safetensors, other frameworks), when the
    state_dict carries no version metadata saying it should be there (``_BatchNorm._load_from_state_dict``)."""
    import torch

    meta = getattr(state, "_metadata", None) or {}
    filled = set()
    for name, sub in module.named_modules():
        if isinstance(sub, torch.nn.modules.batchnorm._NormBase) and sub.track_running_stats:
            version = (meta.get(name) or {}).get("version")
            if version is None or version < 2:
                filled.add(f"{name}.num_batches_tracked" if name else "num_batches_tracked")
    return filled


def _prefix_hint(missing: list[str], unexpected: list[str]) -> str:
    if unexpected and missing:
        for k in unexpected:
            for m in missing:
                if k.endswith(m) and k != m:
                    return f"set source.strip_prefix: \"{k[: len(k) - len(m)]}\""
            break
    if unexpected and not missing and all("." in k for k in unexpected):
        return "the checkpoint has extra weights: is it the right model or kwargs?"
    return "check source.factory/kwargs match the checkpoint"
