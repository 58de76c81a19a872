"""A production-style Triton client for models tritongen built: gRPC (async) and HTTP.

- reads each model's config from the server (names, dtypes, max_batch_size) instead of hard-coding;
- splits large batches into chunks of max_batch_size and sends them concurrently (bounded);
- per-request timeouts; retries with exponential backoff on UNAVAILABLE (server restarting,
  model loading), never on errors that would fail again (bad shape, unknown model);
- image bytes for `<model>__ensemble` are sent one encoded file per BYTES element (sizes may differ), or as
  uint8 rows zero-padded per request where the ensemble declares TYPE_UINT8 (preprocess.image.dtype: uint8).

Run it:
    python examples/client.py --url 127.0.0.1:8001 --model vit_b16__ensemble --image cat.jpg
    python examples/client.py --url 127.0.0.1:8001 --model vit_b16__onnx --random 8
    python examples/client.py --url 127.0.0.1:8001 --model vit_b16__onnx --load 200 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRITON_TO_NUMPY = {
    "FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32,
    "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_,
}
RETRYABLE = ("UNAVAILABLE", "StatusCode.UNAVAILABLE", "Connection refused", "failed to connect")


@dataclass
class TensorInfo:
    name: str
    datatype: str  # KServe name: FP32, INT64, UINT8...
    shape: list  # without the batch dim


@dataclass
class ModelInfo:
    name: str
    max_batch_size: int
    inputs: list
    outputs: list


def pad_images(images: list[bytes]) -> np.ndarray:
    """Encoded images as one uint8 array [n, longest], zero-padded (decoders ignore the tail)."""
    width = max(len(b) for b in images)
    out = np.zeros((len(images), width), dtype=np.uint8)
    for i, b in enumerate(images):
        out[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    return out


def image_feed(images: list[bytes], datatype: str = "BYTES") -> np.ndarray:
    """Encoded images for an ensemble's ``image`` input: [n, 1] BYTES elements, or padded uint8 rows."""
    if datatype == "UINT8":
        return pad_images(images)
    out = np.empty((len(images), 1), dtype=object)
    for i, b in enumerate(images):
        out[i, 0] = bytes(b)
    return out


def _retryable(exc: Exception) -> bool:
    text = f"{getattr(exc, 'status', lambda: '')()} {exc}"
    return any(r in text for r in RETRYABLE)


class GrpcClient:
    """Async gRPC client. Use as ``async with GrpcClient(url) as c: out = await c.infer(model, feeds)``."""

    def __init__(self, url: str, timeout_s: float = 30.0, retries: int = 4, backoff_s: float = 0.2,
                 max_in_flight: int = 8):
        import tritonclient.grpc.aio as grpcclient

        self._mod = grpcclient
        self.client = grpcclient.InferenceServerClient(url=url)
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self._sem = asyncio.Semaphore(max_in_flight)
        self._models: dict[str, ModelInfo] = {}

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.client.close()

    async def _retry(self, fn):
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return await fn()
            except Exception as e:  # tritonclient raises InferenceServerException
                if attempt == self.retries or not _retryable(e):
                    raise
                await asyncio.sleep(delay * (1 + random.random() * 0.2))
                delay *= 2

    async def model(self, name: str) -> ModelInfo:
        if name not in self._models:
            cfg = (await self._retry(lambda: self.client.get_model_config(name, as_json=True)))["config"]
            meta = await self._retry(lambda: self.client.get_model_metadata(name, as_json=True))
            mbs = int(cfg.get("max_batch_size", 0))

            def tensors(entries):
                return [TensorInfo(t["name"], t["datatype"], [int(d) for d in t["shape"]][1 if mbs > 0 else 0:])
                        for t in entries]

            self._models[name] = ModelInfo(name, mbs, tensors(meta["inputs"]), tensors(meta.get("outputs", [])))
        return self._models[name]

    async def _infer_once(self, info: ModelInfo, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs = []
        for t in info.inputs:
            arr = np.ascontiguousarray(feeds[t.name])
            inp = self._mod.InferInput(t.name, list(arr.shape), t.datatype)
            inp.set_data_from_numpy(arr)
            inputs.append(inp)
        outputs = [self._mod.InferRequestedOutput(t.name) for t in info.outputs]
        async with self._sem:
            result = await self._retry(lambda: self.client.infer(info.name, inputs, outputs=outputs,
                                                                  client_timeout=self.timeout_s))
        return {t.name: result.as_numpy(t.name) for t in info.outputs}

    async def infer(self, model: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Any batch size: split into max_batch_size chunks, sent concurrently, joined in order."""
        info = await self.model(model)
        n = len(next(iter(feeds.values()))) if info.max_batch_size > 0 else 0
        if info.max_batch_size == 0 or n <= info.max_batch_size:
            return await self._infer_once(info, feeds)
        step = info.max_batch_size
        parts = await asyncio.gather(*[
            self._infer_once(info, {k: v[i:i + step] for k, v in feeds.items()}) for i in range(0, n, step)])
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    async def classify_images(self, model: str, images: list[bytes]) -> dict[str, np.ndarray]:
        """Send encoded JPEG/PNG files to an ensemble (`<model>__ensemble`)."""
        info = await self.model(model)
        if info.max_batch_size and len(images) > info.max_batch_size:
            step = info.max_batch_size
            parts = [await self.classify_images(model, images[i:i + step]) for i in range(0, len(images), step)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        kind = next((t.datatype for t in info.inputs if t.name == "image"), "BYTES")
        return await self._infer_once(info, {"image": image_feed(images, kind)})


class HttpClient:
    """Blocking HTTP client with the same contract (for scripts and languages without gRPC)."""

    def __init__(self, url: str, timeout_s: float = 30.0, retries: int = 4, backoff_s: float = 0.2):
        import tritonclient.http as httpclient

        self._mod = httpclient
        self.client = httpclient.InferenceServerClient(url=url, network_timeout=timeout_s,
                                                       connection_timeout=timeout_s)
        self.retries, self.backoff_s = retries, backoff_s

    def close(self):
        self.client.close()

    def infer(self, model: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        meta = self.client.get_model_metadata(model)
        inputs = []
        for t in meta["inputs"]:
            arr = np.ascontiguousarray(feeds[t["name"]])
            inp = self._mod.InferInput(t["name"], list(arr.shape), t["datatype"])
            inp.set_data_from_numpy(arr, binary_data=True)
            inputs.append(inp)
        outputs = [self._mod.InferRequestedOutput(t["name"], binary_data=True) for t in meta["outputs"]]
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                result = self.client.infer(model, inputs, outputs=outputs)
                return {t["name"]: result.as_numpy(t["name"]) for t in meta["outputs"]}
            except Exception as e:
                if attempt == self.retries or not _retryable(e):
                    raise
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")


def random_feeds(info: ModelInfo, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for t in info.inputs:
        shape = ([batch] if info.max_batch_size > 0 else []) + [d if d > 0 else 8 for d in t.shape]
        dt = TRITON_TO_NUMPY[t.datatype]
        feeds[t.name] = rng.standard_normal(shape).astype(dt) if np.issubdtype(dt, np.floating) \
            else rng.integers(0, 2, shape).astype(dt)
    return feeds


async def load(url: str, model: str, requests: int, concurrency: int, batch: int = 1) -> dict:
    """A bounded load: `requests` requests with `concurrency` in flight; returns req/s and latencies."""
    async with GrpcClient(url, max_in_flight=concurrency) as c:
        info = await c.model(model)
        feeds = random_feeds(info, batch)
        await c.infer(model, feeds)  # warm-up
        latencies = []

        async def one():
            t = time.perf_counter()
            await c.infer(model, feeds)
            latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*[one() for _ in range(requests)])
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"requests": requests, "concurrency": concurrency, "req_per_s": requests / wall,
            "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="127.0.0.1:8001", help="gRPC host:port")
    ap.add_argument("--model", required=True)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--image", nargs="+", type=Path, help="JPEG/PNG files for an ensemble model")
    g.add_argument("--random", type=int, metavar="BATCH", help="send random inputs of this batch size")
    g.add_argument("--load", type=int, metavar="REQUESTS", help="bounded load test: this many requests")
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args(argv)

    async def run():
        if args.load:
            print(await load(args.url, args.model, args.load, args.concurrency))
            return
        async with GrpcClient(args.url) as c:
            if args.image:
                out = await c.classify_images(args.model, [p.read_bytes() for p in args.image])
            else:
                out = await c.infer(args.model, random_feeds(await c.model(args.model), args.random))
        for k, v in out.items():
            top = np.argsort(v, axis=-1)[..., ::-1][..., :5] if v.ndim == 2 else None
            print(f"{k}: shape {list(v.shape)} {v.dtype}" + (f" top-5 {top.tolist()}" if top is not None else ""))

    asyncio.run(run())


if __name__ == "__main__":
    main()
