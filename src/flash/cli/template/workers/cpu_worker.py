"""A sync function on a CPU endpoint, and a function that calls another endpoint."""

from flash import CpuLiveServerless, remote
from workers.gpu_worker import embed

cpu = CpuLiveServerless(name="cpu-worker", workersMax=2)


@remote(resource_config=cpu)
def preprocess(texts: list[str]) -> list[str]:
    return [" ".join(text.split()).strip() for text in texts if text.strip()]


@remote(resource_config=cpu)
async def embed_documents(texts: list[str]) -> dict[str, list[float]]:
    """Clean on this endpoint, then embed on the GPU endpoint."""
    cleaned = await preprocess(texts)
    vectors = await embed(cleaned)
    return dict(zip(cleaned, vectors, strict=True))
