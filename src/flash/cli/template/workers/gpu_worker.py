"""An async function and a streaming generator on a GPU endpoint."""

from collections.abc import AsyncIterator

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


@remote(resource_config=gpu)
async def generate(prompt: str, max_tokens: int = 8) -> AsyncIterator[str]:
    """Stream a reply token by token, as a language model would."""
    for word in prompt.split()[:max_tokens]:
        yield word.upper()
