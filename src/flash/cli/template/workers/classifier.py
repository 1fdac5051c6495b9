"""A class endpoint: the instance is created once per worker and keeps its state."""

from flash import LiveServerless, remote


@remote(resource_config=LiveServerless(name="classifier", workersMax=1))
class Classifier:
    def __init__(self, positive: list[str]) -> None:
        # Load the model once here; every later call reuses this instance.
        self.positive = {word.lower() for word in positive}
        self.calls = 0

    def predict(self, text: str) -> dict[str, object]:
        self.calls += 1
        words = text.lower().split()
        score = sum(word in self.positive for word in words) / max(len(words), 1)
        return {"label": "positive" if score > 0 else "neutral", "calls": self.calls}
