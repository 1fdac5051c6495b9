"""Call the project's functions from a script."""

import asyncio

from workers.classifier import Classifier
from workers.cpu_worker import embed_documents, preprocess
from workers.gpu_worker import embed, generate


async def main() -> None:
    print("preprocess:", await preprocess(["  hello   world ", ""]))
    print("embed:", (await embed(["flash"]))[0][:6])
    print("embed_documents:", list(await embed_documents(["a b", " c  d "])))
    model = Classifier(["great", "fast"])
    print("predict:", await model.predict("flash is fast"))
    print("predict:", await model.predict("so great"))
    print("generate:", [token async for token in generate.stream("flash streams every token")])


if __name__ == "__main__":
    asyncio.run(main())
