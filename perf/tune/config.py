"""A candidate applied to a variant's config.pbtxt: parsed with Triton's schema, changed, checked with
tritongen's validator (the same text round trip the server reads)."""

from __future__ import annotations

from generator.errors import UserError

from .space import THREAD_KEYS, Candidate

def apply_candidate(base_cfg, c: Candidate):
    """A copy of ``base_cfg`` (a ModelConfig) with the candidate's values; warm-up follows max_batch_size."""
    from tritonclient.grpc import model_config_pb2 as pb

    from generator.config.validate import engine_of

    cfg = pb.ModelConfig()
    cfg.CopyFrom(base_cfg)
    cfg.max_batch_size = c.max_batch_size
    if c.queue_delay_us is None or c.max_batch_size == 0:
        cfg.ClearField("dynamic_batching")
    else:
        keep_order = cfg.dynamic_batching.preserve_ordering if base_cfg.HasField("dynamic_batching") else False
        cfg.ClearField("dynamic_batching")
        cfg.dynamic_batching.preferred_batch_size.extend([p for p in c.preferred if p <= c.max_batch_size])
        cfg.dynamic_batching.max_queue_delay_microseconds = c.queue_delay_us
        if keep_order:
            cfg.dynamic_batching.preserve_ordering = True
    if c.instances is None:
        cfg.ClearField("instance_group")
    else:
        kind = base_cfg.instance_group[0].kind if base_cfg.instance_group else pb.ModelInstanceGroup.KIND_CPU
        gpus = list(base_cfg.instance_group[0].gpus) if base_cfg.instance_group else []
        profiles = list(base_cfg.instance_group[0].profile) if base_cfg.instance_group else []
        cfg.ClearField("instance_group")
        g = cfg.instance_group.add()
        g.count, g.kind = c.instances, kind
        g.gpus.extend(gpus)
        g.profile.extend(profiles)
    engine = engine_of(base_cfg)
    keys = [k for k in set(THREAD_KEYS.values()) if k in cfg.parameters]
    if not keys and engine in THREAD_KEYS:
        keys = [THREAD_KEYS[engine]]
    for k in keys:
        if c.threads:
            cfg.parameters[k].string_value = str(c.threads)
        elif k in cfg.parameters:
            del cfg.parameters[k]
    # warm-up follows max_batch_size: batch 1 and the largest preferred size, never above the new max
    warm = [w for w in cfg.model_warmup]
    cfg.ClearField("model_warmup")
    seen = set()
    top = max(c.preferred) if c.preferred else 1
    for w in warm:
        b = w.batch_size if c.max_batch_size == 0 or w.batch_size <= c.max_batch_size else top
        b = min(b, max(c.max_batch_size, 1))
        if b in seen:
            continue
        seen.add(b)
        nw = cfg.model_warmup.add()
        nw.CopyFrom(w)
        nw.batch_size = b
        if c.max_batch_size > 0:
            nw.name = f"warmup_batch_{b}"
    return cfg


def config_text(cfg, header: str = "") -> str:
    from google.protobuf import text_format

    return (header + "\n" if header else "") + text_format.MessageToString(cfg)


def check_candidate(cfg, name: str) -> list[str]:
    """Triton's schema and tritongen's validator on a candidate config (text round trip, as the server reads it)."""
    from generator.config.validate import check_config, parse_config

    text = config_text(cfg)
    parsed, problem = parse_config(text, f"{name}/config.pbtxt")
    if problem:
        return [problem]
    return check_config(parsed, "max_batch_size: x\n" + text, f"{name}/config.pbtxt", name)



def base_config(target):
    """The variant's built config.pbtxt as a ModelConfig (a user error when it does not parse)."""
    from generator.config.validate import parse_config

    p = target.dir / "config.pbtxt"
    cfg, problem = parse_config(p.read_text(), f"{target.name}/config.pbtxt")
    if problem:
        raise UserError(problem)
    return cfg
