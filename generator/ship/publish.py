"""Publish a model repository to S3 (or an S3-compatible store: MinIO, moto, Ceph) for a Triton fleet.

    publish(Path("model_repository"), "s3://bucket/prefix", endpoint_url=None)

**Content-addressed and incremental.** Every file is hashed (sha256). The remote prefix holds a manifest
object, ``<prefix>/tritongen-publish.json``, recording per model the published version number and the hash
of every file; every object also carries its hash as metadata (``x-amz-meta-sha256``). A file whose hash is
already there is not uploaded again: unchanged files are skipped, files that move into a new version folder
are copied server-side (``CopyObject``, no bytes through this machine). Re-publishing an unchanged
repository writes nothing.

**Atomic for readers: each model's config.pbtxt is its pointer.** A server in ``--model-control-mode=poll``
re-reads a model whenever any of its objects changes, and S3 has no multi-object transactions, so files are
never replaced in place. When a model's artifacts change, they are written into a *new* version folder
``<model>/<N+1>/`` while the published ``config.pbtxt`` still pins ``version_policy { specific { versions:
[N] } }``; a poll during the upload reloads version N, unchanged. Then ``config.pbtxt`` is written last, in
one PUT, pinning N+1: the next poll loads the complete N+1 and retires N. A server therefore only ever
loads a model whole, old or new. The previous version folder is kept (a server may still be loading it) and
deleted by the next publish that changes the model. A config-only change (tuned instance counts, batching)
is that single PUT. Models removed from the repository lose their config.pbtxt first, then their files.

The published config.pbtxt is the local one with that ``version_policy`` (protobuf text form, checked with
Triton's schema); the local repository keeps its ``1/`` folder.

Credentials, region and endpoint come from boto3's standard chain: ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` (or
``endpoint_url=``). Retries use botocore's standard mode (exponential backoff with jitter).

One publisher per prefix at a time: nothing locks a prefix across machines.

Only ``s3://`` is implemented. Triton also reads ``gs://`` and ``as://``: sync a repository there with
``gcloud storage rsync`` / ``az storage blob sync`` (not atomic for polling servers; restart or use explicit
model control).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from generator.errors import UserError

MANIFEST = "tritongen-publish.json"
META_SHA = "sha256"
KEEP = ".tritongen-keep"  # S3 has no empty folders: an empty version folder (ensembles) gets this object
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


# ------------------------------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class S3Url:
    bucket: str
    prefix: str  # "" or "a/b" (no leading or trailing slash)

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def parse_url(url: str) -> S3Url:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise UserError(f"{url}: not a URL; give s3://BUCKET/PREFIX")
    if scheme in ("gs", "as"):
        raise UserError(f"{url}: {scheme}:// is not implemented by tritongen publish; copy the repository with "
                        f"{'gcloud storage rsync' if scheme == 'gs' else 'az storage blob sync'} (see README), "
                        "or publish to s3://")
    if scheme != "s3":
        raise UserError(f"{url}: unknown scheme '{scheme}://'; give s3://BUCKET/PREFIX")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket):
        raise UserError(f"{url}: bucket '{bucket}' is not a valid bucket name (3-63 characters of a-z, 0-9, '.', '-')")
    return S3Url(bucket, prefix.strip("/"))


def resolve_endpoint(endpoint_url: str | None) -> str | None:
    """The option, else boto3's own variables (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``), else AWS."""
    from urllib.parse import urlsplit

    for value, where in ((endpoint_url, "--endpoint-url"), (os.environ.get("AWS_ENDPOINT_URL_S3"), "AWS_ENDPOINT_URL_S3"),
                         (os.environ.get("AWS_ENDPOINT_URL"), "AWS_ENDPOINT_URL")):
        if value:
            try:
                ok = urlsplit(value).scheme in ("http", "https") and bool(urlsplit(value).netloc)
            except ValueError:
                ok = False
            if not ok:
                raise UserError(f"{where} {value!r}: not an endpoint URL; give one like http://127.0.0.1:9000 or "
                                "https://s3.example.com")
            return value
    return None


def triton_url(url: S3Url, endpoint_url: str | None) -> str:
    """What to give ``tritonserver --model-repository``: Triton names a non-AWS endpoint inside the URL
    (``s3://http://host:port/bucket/prefix``, path-style)."""
    if endpoint_url and "amazonaws.com" not in endpoint_url:
        return f"s3://{endpoint_url.rstrip('/')}/{url.bucket}/{url.prefix}".rstrip("/")
    return str(url)


# ------------------------------------------------------------------------------------------- local side


@dataclass
class LocalModel:
    name: str
    config_text: str  # what will be published: pinned to ``version`` by publish()
    local_version: str  # the version folder on disk, e.g. "1"
    version_files: dict[str, tuple[str, int]]  # path inside the version folder -> (sha256, bytes)
    model_files: dict[str, tuple[str, int]]  # other files in the model folder (manifest.json), not the config
    is_ensemble: bool = False


def _hash(path: Path) -> tuple[str, int]:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest(), path.stat().st_size


def _sha_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _files(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` but Python's bytecode caches (a server running the python backend on
    this repository writes ``__pycache__/`` into it: not part of the model, and never the same twice)."""
    return {p.relative_to(folder).as_posix(): _hash(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.relative_to(folder).parts and p.suffix != ".pyc"}


def scan_repository(repo: Path) -> tuple[list[LocalModel], dict[str, tuple[str, int]]]:
    """Models (each with exactly one version folder) and top-level files (README.md), hidden ones skipped."""
    from generator.config.validate import parse_config

    repo = Path(repo)
    if not repo.is_dir():
        raise UserError(f"{repo}: not a folder; build a repository first (`tritongen build SPEC -o {repo}`)")
    models, root_files = [], {}
    for entry in sorted(repo.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            root_files[entry.name] = _hash(entry)
            continue
        cfg_path = entry / "config.pbtxt"
        if not cfg_path.is_file():
            raise UserError(f"{cfg_path}: missing; every model folder needs its config.pbtxt (rebuild the repository)")
        text = cfg_path.read_text()
        cfg, problem = parse_config(text, str(cfg_path))
        if problem:
            raise UserError(f"{problem}; fix it (`tritongen validate {repo}`) before publishing")
        versions = [d for d in entry.iterdir() if d.is_dir() and d.name.isdigit()]
        if len(versions) != 1:
            raise UserError(f"{entry}: publish needs exactly one version folder per model, found "
                            f"{len(versions)} ({', '.join(sorted(d.name for d in versions)) or 'none'}); keep one")
        vdir = versions[0]
        vfiles = _files(vdir) or {KEEP: (_sha_bytes(b""), 0)}
        mfiles = {k: v for k, v in _files(entry).items()
                  if k != "config.pbtxt" and not k.startswith(f"{vdir.name}/")}
        models.append(LocalModel(entry.name, text, vdir.name, vfiles, mfiles, cfg.platform == "ensemble"))
    if not models:
        raise UserError(f"{repo}: no model folders (with a config.pbtxt); build the repository first")
    models.sort(key=lambda m: (m.is_ensemble, m.name))  # composing models before the ensembles that call them
    return models, root_files


def pinned_config(text: str, version: int, where: str) -> str:
    """The config with ``version_policy { specific { versions: [version] } }``, in protobuf text form."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    cfg = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as e:
        raise UserError(f"{where}: {e}; fix the config before publishing") from None
    cfg.ClearField("version_policy")
    cfg.version_policy.specific.versions.append(version)
    return f"# published by tritongen: version {version} (see tritongen-publish.json)\n" + \
        text_format.MessageToString(cfg)


# ------------------------------------------------------------------------------------------- plan


@dataclass
class Op:
    kind: str  # upload | copy | delete
    key: str
    bytes: int = 0
    source: str = ""  # local file (upload) or remote key (copy)
    body: bytes | None = None  # upload from memory (configs, manifest)
    sha256: str = ""


@dataclass
class PublishReport:
    url: str  # s3://bucket/prefix
    triton_url: str  # what tritonserver --model-repository takes
    dry_run: bool
    ops: list[Op] = field(default_factory=list)  # in the order they were (or would be) applied
    versions: dict[str, int] = field(default_factory=dict)  # model -> published version
    unchanged: list[str] = field(default_factory=list)  # models with nothing to write

    def count(self, kind: str) -> int:
        return sum(1 for o in self.ops if o.kind == kind)

    @property
    def uploaded_bytes(self) -> int:
        return sum(o.bytes for o in self.ops if o.kind == "upload")


class Progress:
    """What publish tells the outside world (the CLI draws it with rich)."""

    def start(self, total_bytes: int, n_ops: int) -> None: ...

    def op(self, op: Op) -> None: ...

    def advance(self, nbytes: int) -> None: ...


def _plan_model(m: LocalModel, repo: Path, url: S3Url, remote: dict | None, listed: dict[str, dict],
                report: PublishReport) -> tuple[list[Op], dict]:
    """Ops for one model, ordered: version files, model files, config.pbtxt last, then retired versions."""
    ops: list[Op] = []
    base = url.key(m.name)
    local_v = {k: v[0] for k, v in m.version_files.items()}
    remote_versions = {int(k[len(base) + 1:].split("/", 1)[0]) for k in listed
                       if k.startswith(base + "/") and k[len(base) + 1:].split("/", 1)[0].isdigit()}
    if remote and remote.get("files") == local_v and remote["version"] in remote_versions:
        version, previous = remote["version"], remote.get("previous")
    else:
        version = max([remote["version"] if remote else 0, *remote_versions]) + 1
        previous = remote["version"] if remote else None
        # content-addressed: a hash already stored anywhere in this model is copied server-side
        have = {}
        for k, meta in listed.items():
            if k.startswith(base + "/") and meta.get("sha256"):
                have.setdefault(meta["sha256"], k)
        if remote:
            for rel, sha in remote.get("files", {}).items():
                have.setdefault(sha, f"{base}/{remote['version']}/{rel}")
        for rel, (sha, size) in m.version_files.items():
            key = f"{base}/{version}/{rel}"
            src = have.get(sha)
            if src is not None:
                ops.append(Op("copy", key, size, source=src, sha256=sha))
            elif rel == KEEP:
                ops.append(Op("upload", key, 0, body=b"", sha256=sha))
            else:
                ops.append(Op("upload", key, size, source=str(repo / m.name / m.local_version / rel), sha256=sha))
    remote_mfiles = (remote or {}).get("model_files", {})
    for rel, (sha, size) in m.model_files.items():
        if remote_mfiles.get(rel) != sha:
            ops.append(Op("upload", f"{base}/{rel}", size, source=str(repo / m.name / rel), sha256=sha))
    config = pinned_config(m.config_text, version, f"{m.name}/config.pbtxt").encode()
    config_sha = _sha_bytes(config)
    if (remote or {}).get("config_sha256") != config_sha or f"{base}/config.pbtxt" not in listed:
        ops.append(Op("upload", f"{base}/config.pbtxt", len(config), body=config, sha256=config_sha))
    # after the pointer moved: versions older than the previous one, and model files no longer there
    keep = {version, previous}
    for k in sorted(listed):
        if not k.startswith(base + "/"):
            continue
        head = k[len(base) + 1:].split("/", 1)[0]
        if head.isdigit() and int(head) not in keep:
            ops.append(Op("delete", k))
        elif not head.isdigit() and head != "config.pbtxt" and k[len(base) + 1:] not in m.model_files:
            ops.append(Op("delete", k))
    report.versions[m.name] = version
    if not ops:
        report.unchanged.append(m.name)
    entry = {"version": version, "previous": previous, "files": local_v, "config_sha256": config_sha,
             "model_files": {k: v[0] for k, v in m.model_files.items()}}
    return ops, entry


# ------------------------------------------------------------------------------------------- S3


def s3_client(endpoint_url: str | None = None, retries: int = 5, connect_timeout_s: float = 5.0,
              read_timeout_s: float = 60.0):
    """A boto3 S3 client: standard retry mode (exponential backoff), path-style for custom endpoints."""
    import boto3
    from botocore.config import Config

    cfg = Config(retries={"max_attempts": max(1, retries), "mode": "standard"}, connect_timeout=connect_timeout_s,
                 read_timeout=read_timeout_s, s3={"addressing_style": "path"} if endpoint_url else None)
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=cfg)


@contextlib.contextmanager
def s3_errors(url: S3Url, endpoint: str | None):
    """botocore's failures as one-line UserErrors naming what to fix."""
    from botocore import exceptions as bx

    where = f"{url} at {endpoint or 'AWS'}"
    try:
        yield
    except bx.NoCredentialsError:
        raise UserError(f"{where}: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                        "(or AWS_PROFILE)") from None
    except bx.PartialCredentialsError as e:
        raise UserError(f"{where}: incomplete AWS credentials ({e}); set both AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY") from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError,
            bx.ConnectionClosedError) as e:
        raise UserError(f"{where}: cannot reach the object store ({e}); check the network and "
                        "--endpoint-url / AWS_ENDPOINT_URL") from None
    except bx.ClientError as e:
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket",) or (code in ("404", "NotFound") and e.operation_name == "HeadBucket"):
            raise UserError(f"{where}: bucket '{url.bucket}' does not exist; create it or fix the URL") from None
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId", "ExpiredToken",
                    "InvalidToken", "AuthorizationHeaderMalformed") or (status == 403 and code in ("403", "")):
            raise UserError(f"{where}: credentials rejected or not allowed here ({code}); check "
                            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket's policy") from None
        if code == "AccessDenied":
            raise UserError(f"{where}: access denied; these credentials may not read and write "
                            f"s3://{url.bucket}/{url.prefix}") from None
        raise UserError(f"{where}: {e.operation_name} failed: {code} {err.get('Message', '')}".strip()) from None


def _list(client, url: S3Url) -> dict[str, dict]:
    """Every object under the prefix: key -> {"size", "sha256" (from our manifest later, else "")}."""
    out = {}
    prefix = url.key() + "/" if url.prefix else ""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=url.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = {"size": obj["Size"], "sha256": "", "mtime": obj["LastModified"]}
    return out


def _read_manifest(client, url: S3Url) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        body = client.get_object(Bucket=url.bucket, Key=url.key(MANIFEST))["Body"].read()
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    try:
        data = json.loads(body)
        assert isinstance(data.get("models"), dict)
        return data
    except (ValueError, AssertionError, AttributeError):
        raise UserError(f"{url}/{MANIFEST}: not a manifest tritongen wrote; publish to an empty prefix") from None


def publish(repo: Path, url: str, endpoint_url: str | None = None, dry_run: bool = False, retries: int = 5,
            progress: Progress | None = None, client=None) -> PublishReport:
    """Mirror ``repo`` to ``url`` (s3://bucket/prefix), incrementally and atomically per model (see module doc)."""
    target = parse_url(url)
    repo = Path(repo)
    models, root_files = scan_repository(repo)
    endpoint = resolve_endpoint(endpoint_url)
    progress = progress or Progress()
    report = PublishReport(str(target), triton_url(target, endpoint), dry_run)
    with s3_errors(target, endpoint):
        client = client or s3_client(endpoint, retries=retries)
        client.head_bucket(Bucket=target.bucket)
        listed = _list(client, target)
        manifest = _read_manifest(client, target)
        if manifest is None and listed:
            raise UserError(f"{target}: holds {len(listed)} object(s) tritongen did not publish (no {MANIFEST}); "
                            "publish to an empty prefix or delete them")
        manifest = manifest or {"format": 1, "models": {}, "root_files": {}}
        for name, entry in manifest["models"].items():  # hashes we know, for server-side copies
            for rel, sha in entry.get("files", {}).items():
                k = target.key(name, str(entry["version"]), rel)
                if k in listed:
                    listed[k]["sha256"] = sha
        plans = []
        new_manifest = {"format": 1, "models": {}, "root_files": {}}
        for m in models:
            ops, entry = _plan_model(m, repo, target, manifest["models"].get(m.name), listed, report)
            plans.append((m.name, ops, entry))
        # models no longer in the repository: config.pbtxt first (the model disappears whole), then the rest
        removed = sorted(set(manifest["models"]) - {m.name for m in models})
        removal = [Op("delete", target.key(n, "config.pbtxt")) for n in removed
                   if target.key(n, "config.pbtxt") in listed]
        removal += [Op("delete", k) for n in removed for k in sorted(listed)
                    if k.startswith(target.key(n) + "/") and k != target.key(n, "config.pbtxt")]
        root_ops = [Op("upload", target.key(name), size, source=str(repo / name), sha256=sha)
                    for name, (sha, size) in root_files.items() if manifest["root_files"].get(name) != sha]
        root_ops += [Op("delete", target.key(name)) for name in manifest["root_files"]
                     if name not in root_files and target.key(name) in listed]
        new_manifest["root_files"] = {k: v[0] for k, v in root_files.items()}
        all_ops = [o for _, ops, _ in plans for o in ops] + removal + root_ops
        report.ops = all_ops
        if dry_run:
            return report
        progress.start(sum(o.bytes for o in all_ops if o.kind == "upload"), len(all_ops))
        done_models: dict = {n: e for n, e in manifest["models"].items() if n in removed}
        written = manifest  # the manifest now stored
        for name, ops, entry in plans:
            newest = max([v["mtime"] for k, v in listed.items() if k.startswith(target.key(name) + "/")], default=None)
            for op in ops:
                if op.key == target.key(name, "config.pbtxt") and op.kind == "upload":
                    _put_config(client, target, op, progress, newest)
                    continue
                _apply(client, target, op, progress)
                if op.kind != "delete":
                    newest = _later(newest, client.head_object(Bucket=target.bucket, Key=op.key)["LastModified"])
            done_models[name] = entry
            if ops:  # the manifest always describes what is published, even if a later model fails
                written = {**new_manifest, "models": {**manifest["models"], **done_models}}
                _write_manifest(client, target, written)
        for op in removal + root_ops:
            _apply(client, target, op, progress)
        new_manifest["models"] = {n: e for n, e in done_models.items() if n not in removed}
        if new_manifest != written:
            _write_manifest(client, target, new_manifest)
    return report


def _apply(client, url: S3Url, op: Op, progress: Progress) -> None:
    progress.op(op)
    extra = {"Metadata": {META_SHA: op.sha256}}
    if op.kind == "delete":
        client.delete_object(Bucket=url.bucket, Key=op.key)
    elif op.kind == "copy":
        client.copy_object(Bucket=url.bucket, Key=op.key, CopySource={"Bucket": url.bucket, "Key": op.source},
                           MetadataDirective="REPLACE", **extra)
    elif op.body is not None:
        client.put_object(Bucket=url.bucket, Key=op.key, Body=op.body, **extra)
        progress.advance(len(op.body))
    else:
        client.upload_file(op.source, url.bucket, op.key, ExtraArgs=extra, Callback=progress.advance)


def _later(a, b):
    return b if a is None or b > a else a


def _put_config(client, url: S3Url, op: Op, progress: Progress, newest) -> None:
    """Write the pointer so that its LastModified is *later* than every object of the model.

    Triton's poll reloads a model only when the newest timestamp under it grows, and S3 timestamps have
    one-second resolution: a config written in the same second as the last artifact could go unseen by
    a server that polled in between. Read the timestamp back and rewrite a second later if needed."""
    import time

    progress.op(op)
    for _ in range(5):
        client.put_object(Bucket=url.bucket, Key=op.key, Body=op.body, Metadata={META_SHA: op.sha256})
        progress.advance(len(op.body))
        written = client.head_object(Bucket=url.bucket, Key=op.key)["LastModified"]
        if newest is None or written > newest:
            return
        time.sleep(1.0)
    raise UserError(f"s3://{url.bucket}/{op.key}: the store's LastModified did not advance in 5 s; "
                    "check the object store's clock")


def _write_manifest(client, url: S3Url, manifest: dict) -> None:
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    client.put_object(Bucket=url.bucket, Key=url.key(MANIFEST), Body=body, ContentType="application/json")


# ------------------------------------------------------------------------------------------- helpers for tests


def read_published(url: str, endpoint_url: str | None = None, client=None) -> dict:
    """The manifest a publish left at ``url`` (``{}`` when none)."""
    target = parse_url(url)
    endpoint = resolve_endpoint(endpoint_url)
    with s3_errors(target, endpoint):
        return _read_manifest(client or s3_client(endpoint), target) or {}


def on_progress(fn: Callable[[Op], None]) -> Progress:
    """A Progress that calls ``fn(op)`` for every operation, in order."""
    p = Progress()
    p.op = fn  # type: ignore[method-assign]
    return p
