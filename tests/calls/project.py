"""A project whose endpoints call each other, written as users write them.

Package ``callsapp`` (unique name: the test process imports it as a client).
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.projects import write_files

FILES = {
    "pyproject.toml": """
        [project]
        name = "callsapp"
        version = "0.1.0"
        dependencies = []
    """,
    "callsapp/__init__.py": "",
    "callsapp/config.py": """
        from flash import CpuLiveServerless

        # FLASH_MAX_CALL_DEPTH is low so the recursion test needs few workers.
        LIMITS = {"FLASH_MAX_CALL_DEPTH": "3"}
        a = CpuLiveServerless(name="svc-a", workersMax=2, concurrency=4, env=LIMITS)
        b = CpuLiveServerless(name="svc-b", workersMax=2, concurrency=4, env=LIMITS)
        c = CpuLiveServerless(name="svc-c", workersMax=2, concurrency=4, env=LIMITS)
        # Deep enough for an error to cross many hops (each hop once held its traceback
        # twice over); one worker each, with a slot for every hop of the chain.
        DEEP = {"FLASH_MAX_CALL_DEPTH": "10"}
        d = CpuLiveServerless(name="svc-d", workersMax=1, concurrency=6, env=DEEP)
        e = CpuLiveServerless(name="svc-e", workersMax=1, concurrency=6, env=DEEP)
    """,
    "callsapp/errors.py": """
        class QuotaError(Exception):
            pass


        class OverQuota(Exception):  # as users write them: __init__ takes other than its args
            def __init__(self, user: str, used: int) -> None:
                super().__init__(f"user {user} over quota: {used}")
                self.user = user
                self.used = used
    """,
    "callsapp/chain.py": """
        import asyncio
        import os
        import threading
        from pathlib import Path
        from typing import Any

        from flash import remote

        from callsapp.config import a, b, c, d, e
        from callsapp.errors import OverQuota, QuotaError


        @remote(c)
        async def add_through(tally, x: int) -> int:  # a handle made by its caller
            return await tally.add(x)


        @remote(c)
        async def leaf(x: int) -> dict:
            return {"value": x * 10, "endpoint": os.environ.get("FLASH_RESOURCE_NAME")}


        @remote(b)
        async def middle(x: int) -> dict:
            below = await leaf(x + 1)
            return {"value": below["value"] + 1, "path": ["svc-b", below["endpoint"]]}


        @remote(a)
        async def top(x: int) -> dict:
            below = await middle(x)
            return {"value": below["value"], "path": ["svc-a", *below["path"]]}


        @remote(a)
        def helper(x: int) -> int:
            return x + 1


        @remote(a)
        async def uses_helper(x: int) -> list:
            # Same endpoint: runs in this worker, no job.
            return [await helper(x), os.getpid()]


        @remote(a)
        def kind(x: Any) -> str:
            return type(x).__name__


        @remote(a)
        def same_bytes(b: bytes) -> bytes:
            return b


        @remote(a)
        def noop(x):
            return x


        @remote(a)
        def power(base, exponent=2):
            return base**exponent


        @remote(a)
        def wrong_return(x: int) -> int:
            return "not a number"  # breaks its own annotation


        @remote(a)
        def maybe_fail(x):
            if x % 3 == 0:
                raise ValueError(f"bad item {x}")
            return x


        @remote(b)
        def fails(kind: str) -> None:
            if kind == "quota":
                raise QuotaError("monthly quota used up")
            if kind == "over":
                error = OverQuota("bob", 7)
                error.add_note("plan: free")
                raise error from LookupError("no paid plan for bob")

            class Unpicklable(Exception):
                def __init__(self, message):
                    super().__init__(message)
                    self.lock = threading.Lock()  # cannot travel back as itself

            raise Unpicklable("holds a lock")


        @remote(a)
        async def fails_below(kind: str) -> None:  # its caller gets what fails raised
            await fails(kind)


        @remote(b)
        async def sleepy(seconds: float, marker: str = "") -> str:
            if marker:
                Path(marker + ".started").write_text("1")
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                if marker:
                    Path(marker + ".cancelled").write_text("1")
                raise
            return "woke"


        @remote(a)
        async def calls_sleepy(seconds: float) -> str:
            return await sleepy(seconds)


        @remote(c)
        def crash_once(marker: str) -> str:
            path = Path(marker)
            if not path.exists():
                path.write_text("crashed")
                os._exit(3)
            return f"recovered after {path.read_text()}"


        @remote(a)
        async def ping_pong(n: int) -> int:
            return await pong(n + 1)


        @remote(b)
        async def pong(n: int) -> int:
            return await ping_pong(n + 1)


        @remote(d)
        async def deep_ping(n: int) -> int:
            return await deep_pong(n + 1)


        @remote(e)
        async def deep_pong(n: int) -> int:
            return await deep_ping(n + 1)


        @remote(c)
        async def ticks(n: int, gate: str):
            for i in range(n):
                yield i
                # The next item waits for the caller to have seen this one: the test
                # deadlocks unless items really arrive as they are produced.
                while i == 0 and not Path(gate).exists():
                    await asyncio.sleep(0.01)
    """,
    "callsapp/model.py": """
        import functools

        from flash import remote

        from callsapp.config import b


        def logged(method):  # a decorator without functools.wraps: (*args, **kwargs)
            def wrapper(*args, **kwargs):
                return method(*args, **kwargs)

            return wrapper


        def with_session(fn):  # fills in its first argument, as dependency injection does
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                return fn("session", *args, **kwargs)

            return wrapper


        @remote(b)
        class Tally:
            def __init__(self, start: int) -> None:
                self.total = start

            def add(self, x: int) -> int:
                self.total += x
                return self.total

            async def get(self) -> int:
                return self.total

            def scaled(self, factor: float) -> float:
                return self.total * factor

            def peek(self):  # untyped: takes pickled calls only
                return self.total


        @remote(b)
        class Classifier:  # as flash init writes it: predict's result is loose (object)
            def __init__(self, positive: list[str]) -> None:
                self.positive = set(positive)

            def predict(self, text: str, threshold: int = 1) -> dict[str, object]:
                hits = sum(word in self.positive for word in text.split())
                return {"label": "positive" if hits >= threshold else "neutral"}


        @remote(b)
        class Doubler:  # a callable model: handle(x) calls __call__ on the endpoint
            def __init__(self, factor: int) -> None:
                self.factor = factor

            def __call__(self, x: int) -> list[int]:
                return [x * self.factor, id(self)]


        @remote(b)
        class Packed:
            def __init__(self, *args, **kwargs):
                self.packed = [list(args), kwargs]

            def unpack(self):
                return self.packed


        @remote(b)
        class Decorated:
            @logged
            def logged(self, x):
                return ["logged", x]

            @functools.cache
            def cached(self, x):
                return ["cached", x]

            @with_session
            def injected(session, self, x):
                return [session, x]

            @staticmethod
            def static(x):
                return ["static", x]

            @classmethod
            def of_class(cls, x):
                return [cls.__name__, x]
    """,
}


def write_project(root: Path) -> Path:
    return write_files(root, FILES)
