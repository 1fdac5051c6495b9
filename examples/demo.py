"""The demo: build the starter project, serve it on this machine, call every endpoint.

    make demo        (or: .venv/bin/python examples/demo.py)

Calls go through the official `runpod` client (plain JSON, streaming) and through Flash's
own client (`await fn(...)`: a class endpoint and a call from one endpoint to another).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import runpod

from flash.cli.init import write_starter
from flash.platform import serve_project

PROJECT = Path(__file__).resolve().parent.parent / "demo-project"


def show(label: str, value: object) -> None:
    print(f"  {label:<52} {value}")


def call_with_runpod_client(url: str) -> None:
    print("\nThe official runpod client (JSON in, JSON out):")
    runpod.api_key = "local"
    runpod.endpoint_url_base = f"{url}/v2"
    cpu = runpod.Endpoint("cpu-worker")
    answer = cpu.run_sync(
        {"function": "preprocess", "kwargs": {"texts": ["  hello   world ", ""]}}, timeout=60
    )
    show("cpu-worker preprocess(['  hello   world ', ''])", answer["result"])
    gpu = runpod.Endpoint("gpu-worker")
    job = gpu.run({"function": "generate", "kwargs": {"prompt": "flash streams every token"}})
    tokens = [chunk["result"] for chunk in job.stream()]
    show("gpu-worker generate(...) streamed", tokens)
    classifier = runpod.Endpoint("classifier")
    for text in ("flash is fast", "so great"):
        answer = classifier.run_sync(
            {
                "function": "Classifier",
                "init": {"positive": ["great", "fast"]},
                "method": "predict",
                "kwargs": {"text": text},
            },
            timeout=60,
        )
        show(f"classifier Classifier(...).predict({text!r})", answer["result"])
    print(f"  health of gpu-worker: {gpu.health()['jobs']}")


async def call_with_flash_client() -> None:
    print("\nFlash's client (await fn(...): typed JSON as the types allow, else signed pickles):")
    from workers.classifier import Classifier
    from workers.cpu_worker import embed_documents
    from workers.gpu_worker import embed

    show("gpu-worker embed(['flash'])[0][:6]", (await embed(["flash"]))[0][:6])
    documents = await embed_documents(["a b", " c  d "])  # cpu-worker calls gpu-worker
    show("cpu-worker embed_documents (-> gpu-worker)", list(documents))
    model = Classifier(["great", "fast"])
    # A class's calls go as signed pickles from a client with the app's key: one handle,
    # one instance, whichever of its methods are typed.
    show("classifier predict('so fast') (signed pickle)", await model.predict("so fast"))


def main() -> None:
    # Written afresh each time (its .flash/ state kept): an older demo's copy of the starter
    # could lack what the calls below need.
    write_starter(PROJECT, force=True)
    print(f"Building {PROJECT} ...")
    # Build, serve on this machine, and send this process's @remote calls there.
    with serve_project(PROJECT, progress=lambda stage, detail: show(stage, detail)) as platform:
        print(f"Serving {len(platform.endpoints())} endpoints on {platform.url}")
        for endpoint in platform.endpoints():
            print(f"  {endpoint['url']}  {', '.join(endpoint['functions'])}")
        call_with_runpod_client(platform.url)
        sys.path.insert(0, str(PROJECT))
        asyncio.run(call_with_flash_client())
    print("\nDone: every call above ran in a worker process of the local platform.")


if __name__ == "__main__":
    main()
