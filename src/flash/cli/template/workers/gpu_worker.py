"""An async function on a GPU endpoint."""

from flash import LiveServerless, remote

gpu = LiveServerless(name="gpu-worker", workersMax=3, idleTimeout=30)


@remote(resource_config=gpu)
async def embed(texts: list[str]) -> list[list[float]]:
    """A toy embedding: letter frequencies. Swap in a real model here."""
    vectors = []
    for text in texts:
        counts = [0.0] * 26
        for char in text.lower():
            if "a" <= char <= "z":
                counts[ord(char) - ord("a")] += 1
        total = sum(counts) or 1.0
        vectors.append([round(c / total, 4) for c in counts])
    return vectors
