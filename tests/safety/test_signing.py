"""The signed-pickle protocol: what gets through, what is refused, and why."""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import os
import pickle
import signal
import struct
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tests.helpers import CreatesFile

from flash.runtime import signing
from flash.runtime.protocol import MAX_JSON_DEPTH
from flash.runtime.serialization import deserialize, serialize, serialize_args
from flash.runtime.signing import (
    BAD_MAC,
    CLOCK_SKEW_S,
    DEFAULT_TTL_S,
    EXPIRED,
    MALFORMED,
    MAX_TTL_S,
    MISSING,
    REPLAY_CACHE_FULL,
    REPLAYED,
    TAMPERED,
    UNSUPPORTED,
    WRONG_TARGET,
    ReplayCache,
    SignatureError,
    SigningKeyError,
    check_versions,
    generate_key,
    key_from_text,
    key_to_text,
    load_signing_key,
    local_versions,
    payload_digest,
    sign_request,
    sign_result,
    verify_request,
    verify_result,
)

NOW = 1_750_000_000.0
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def job_fields(**overrides: Any) -> dict[str, Any]:
    args, kwargs = serialize_args([1, "two"], {"three": [3.0]})
    fields: dict[str, Any] = {
        "function_name": "embed",
        "execution_type": "function",
        "args": args,
        "kwargs": kwargs,
        "protocol_version": 1,
    }
    fields.update(overrides)
    return fields


def signed(fields: dict[str, Any], **kw: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "endpoint": "gpu-worker",
        "function": "embed",
        "deadline": NOW + 60,
        "now": NOW,
    }
    options.update(kw)
    return sign_request(KEY, fields=fields, **options)


def verify(
    signature: Any, fields: dict[str, Any], *, replay: ReplayCache | None = None, **kw: Any
) -> None:
    options: dict[str, Any] = {"endpoint": "gpu-worker", "function": "embed", "now": NOW}
    options.update(kw)
    verify_request(
        kw.pop("key", KEY),
        signature,
        fields=fields,
        replay=replay if replay is not None else ReplayCache(),
        **{k: v for k, v in options.items() if k != "key"},
    )


def reason_of(call: Any) -> str:
    with pytest.raises(SignatureError) as info:
        call()
    assert info.value.reason in signing.REASONS
    return info.value.reason


# ---------------------------------------------------------------- keys


def test_key_text_round_trip_and_generation() -> None:
    key = generate_key()
    assert len(key) == 32 and key != generate_key()
    text = key_to_text(key)
    assert text == text.lower() and len(text) == 64
    assert key_from_text(text) == key
    assert load_signing_key({"FLASH_SIGNING_KEY": f"  {text}\n"}) == key
    assert load_signing_key({}) is None
    assert load_signing_key({"FLASH_SIGNING_KEY": ""}) is None


@pytest.mark.parametrize("bad", ["abc123", "zz" * 32, "ab" * 33, "é" * 64])
def test_malformed_key_is_a_clear_error_that_never_echoes_it(bad: str) -> None:
    with pytest.raises(SigningKeyError) as info:
        load_signing_key({"FLASH_SIGNING_KEY": bad})
    message = str(info.value)
    assert "FLASH_SIGNING_KEY" in message and "64 hexadecimal characters" in message
    assert bad not in message


def test_wrong_key_type_is_refused() -> None:
    with pytest.raises(SigningKeyError):
        sign_request(b"short", endpoint="e", function="f", fields={}, deadline=NOW + 1, now=NOW)


# ---------------------------------------------------------------- requests


def test_a_signed_request_verifies_after_a_json_round_trip() -> None:
    fields = job_fields()
    block = signed(fields)
    assert block["v"] == signing.SIGNATURE_VERSION == 4 and block["alg"] == "HMAC-SHA256"
    assert block["caller"] == local_versions()
    assert len(block["nonce"]) == 32 and len(block["mac"]) == 64
    # The job travels as JSON: what the worker sees is what json.loads gives back.
    job = json.loads(json.dumps({**fields, "signature": block}))
    verify(job.pop("signature"), job)


def test_class_calls_sign_their_method_fields() -> None:
    args, kwargs = serialize_args([2], {"scale": 0.5})
    fields = job_fields(
        function_name="Model",
        execution_type="class",
        method_name="predict",
        method_args=args,
        method_kwargs=kwargs,
    )
    block = signed(fields, function="Model")
    verify(block, fields, function="Model")
    tampered = {**fields, "method_name": "train"}
    assert reason_of(lambda: verify(block, tampered, function="Model")) == TAMPERED


@pytest.mark.parametrize(
    "tamper",
    [
        lambda f: f["args"].__setitem__(0, serialize(666)),
        lambda f: f["args"].append(serialize(4)),
        lambda f: f["kwargs"].__setitem__("three", serialize("x")),
        lambda f: f["kwargs"].__setitem__("extra", serialize(1)),
        lambda f: f.__setitem__("function_name", "other"),
        lambda f: f.__setitem__("execution_type", "class"),
        lambda f: f.__setitem__("method_name", "__call__"),
        lambda f: f.__setitem__("method_args", [serialize(1)]),
        lambda f: f.__setitem__("method_kwargs", {"a": serialize(1)}),
        lambda f: f.__setitem__("args", []),
        lambda f: f.pop("kwargs"),
    ],
    ids=[
        "args-item",
        "args-added",
        "kwargs-value",
        "kwargs-added",
        "function_name",
        "execution_type",
        "method_name-added",
        "method_args-added",
        "method_kwargs-added",
        "args-emptied",
        "kwargs-removed",
    ],
)
def test_tampering_with_any_pickle_carrying_field_is_detected(tamper: Any) -> None:
    fields = job_fields()
    block = signed(fields)
    tampered = copy.deepcopy(fields)
    tamper(tampered)
    assert reason_of(lambda: verify(block, tampered)) == TAMPERED


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("endpoint", "cpu-worker"),
        ("function", "other"),
        ("digest", "0" * 64),
        ("deadline", NOW + 61),
        ("nonce", "f" * 32),
        ("mac", "0" * 64),
        ("caller", {"python": "3.99", "cloudpickle": "3.1.3"}),
        ("caller", {"python": "3.11", "cloudpickle": "9.0.0"}),
        ("caller", {**local_versions(), "extra": "1"}),
    ],
)
def test_tampering_with_any_signed_field_is_detected(field: str, value: Any) -> None:
    fields = job_fields()
    block = {**signed(fields), field: value}
    # Verify at the target the forged block names, so only the MAC can catch it.
    target = {"endpoint": block["endpoint"], "function": block["function"]}
    assert reason_of(lambda: verify(block, fields, **target)) == BAD_MAC


def test_a_signature_for_another_endpoint_or_function_is_refused() -> None:
    fields = job_fields()
    block = signed(fields)
    with pytest.raises(SignatureError) as info:
        verify(block, fields, endpoint="cpu-worker")
    assert info.value.reason == WRONG_TARGET
    assert "'gpu-worker'" in info.value.message and "'cpu-worker'" in info.value.message
    assert reason_of(lambda: verify(block, fields, function="train")) == WRONG_TARGET


def test_wrong_key_is_refused_and_says_to_check_the_key() -> None:
    fields = job_fields()
    block = signed(fields)
    with pytest.raises(SignatureError) as info:
        verify(block, fields, key=OTHER_KEY)
    assert info.value.reason == BAD_MAC and "FLASH_SIGNING_KEY" in info.value.message


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, MISSING),
        ("signed", MALFORMED),
        ([], MALFORMED),
        ({}, UNSUPPORTED),
        ({"v": 2}, UNSUPPORTED),
        ({"v": True}, UNSUPPORTED),
        ({"v": 1, "alg": "HMAC-SHA256"}, UNSUPPORTED),
        ({"v": 2, "alg": "HMAC-MD5"}, UNSUPPORTED),
    ],
)
def test_missing_and_unsupported_signatures(signature: Any, reason: str) -> None:
    assert reason_of(lambda: verify(signature, job_fields())) == reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("endpoint", ""),
        ("endpoint", 5),
        ("function", None),
        ("digest", "ABC"),
        ("digest", "g" * 64),
        ("mac", "é" * 64),
        ("nonce", "0" * 31),
        ("nonce", None),
        ("deadline", "tomorrow"),
        ("deadline", True),
        ("deadline", float("inf")),
        ("caller", "3.11"),
        ("caller", {"python": 3.11}),
        ("caller", {f"k{i}": "v" for i in range(20)}),
    ],
)
def test_malformed_blocks_are_refused(field: str, value: Any) -> None:
    fields = job_fields()
    block = {**signed(fields), field: value}
    assert reason_of(lambda: verify(block, fields)) == MALFORMED


def test_expiry_allows_clock_skew_and_no_more() -> None:
    fields = job_fields()
    block = signed(fields, deadline=NOW + 10)
    verify(block, fields, now=NOW + 10 + CLOCK_SKEW_S - 1)
    with pytest.raises(SignatureError) as info:
        verify(block, fields, now=NOW + 10 + CLOCK_SKEW_S + 5)
    assert info.value.reason == EXPIRED and "expired" in info.value.message


def test_deadlines_too_far_ahead_are_refused_both_ways() -> None:
    with pytest.raises(ValueError, match="ahead"):
        signed(job_fields(), deadline=NOW + MAX_TTL_S + 1)
    with pytest.raises(ValueError, match="passed"):
        signed(job_fields(), deadline=NOW - 1)
    fields = job_fields()
    block = signed(fields, deadline=NOW + 60)
    # A worker whose clock is far behind sees a deadline too far ahead.
    assert reason_of(lambda: verify(block, fields, now=NOW - MAX_TTL_S)) == MALFORMED


@pytest.mark.parametrize("deadline", [10**400, float("inf"), True, "1e9"])
def test_a_deadline_that_is_no_finite_number_is_refused_saying_so(deadline: Any) -> None:
    # An integer no float holds raised OverflowError from the check itself.
    with pytest.raises(ValueError, match="finite number of epoch seconds"):
        signed(job_fields(), deadline=deadline)


def test_a_replayed_request_is_refused() -> None:
    fields = job_fields()
    block = signed(fields)
    replay = ReplayCache()
    verify(block, fields, replay=replay)
    with pytest.raises(SignatureError) as info:
        verify(block, fields, replay=replay)
    assert info.value.reason == REPLAYED
    # Long after the deadline the nonce is forgotten, and the request is refused as expired.
    assert reason_of(lambda: verify(block, fields, replay=replay, now=NOW + 3600)) == EXPIRED


def test_a_refused_request_does_not_burn_its_nonce() -> None:
    fields = job_fields()
    block = signed(fields)
    replay = ReplayCache()
    tampered = {**fields, "function_name": "x"}
    assert reason_of(lambda: verify(block, tampered, replay=replay)) == TAMPERED
    assert reason_of(lambda: verify(block, fields, replay=replay, key=OTHER_KEY)) == BAD_MAC
    assert len(replay) == 0
    verify(block, fields, replay=replay)


def test_a_full_replay_cache_forgets_the_soonest_and_refuses_what_it_forgot() -> None:
    cache = ReplayCache(max_entries=2)
    cache.remember("a" * 32, NOW + 10, now=NOW)
    cache.remember("b" * 32, NOW + 100, now=NOW)
    # Full: a fresh request is still accepted; the nonce expiring soonest is forgotten ...
    cache.remember("c" * 32, NOW + 200, now=NOW + 1)
    assert len(cache) == 2
    # ... and neither it nor anything expiring as soon can get through any more.
    for nonce, deadline in (("a" * 32, NOW + 10), ("d" * 32, NOW + 5)):
        with pytest.raises(SignatureError) as info:
            cache.remember(nonce, deadline, now=NOW + 2)
        assert info.value.reason == REPLAY_CACHE_FULL
        assert "send it again" in info.value.message
    # The nonces it kept are still refused as replays.
    for nonce, deadline in (("b" * 32, NOW + 100), ("c" * 32, NOW + 200)):
        with pytest.raises(SignatureError) as again:
            cache.remember(nonce, deadline, now=NOW + 3)
        assert again.value.reason == REPLAYED


def test_expired_nonces_leave_the_replay_cache() -> None:
    cache = ReplayCache(max_entries=10)
    for i in range(5):
        cache.remember(f"{i:032x}", NOW + 10, now=NOW)
    cache.remember("f" * 32, NOW + 1000, now=NOW)
    assert len(cache) == 6
    cache.remember("e" * 32, NOW + 1000, now=NOW + 10 + CLOCK_SKEW_S + 10)
    assert len(cache) == 2


def test_a_busy_worker_keeps_accepting_fresh_requests() -> None:
    # More signed calls within one deadline window than the cache holds: none is refused.
    cache = ReplayCache(max_entries=1000)
    for i in range(20_000):
        now = NOW + i * 0.01
        cache.remember(f"{i:032x}", now + DEFAULT_TTL_S, now=now)
    assert len(cache) <= 1000


def test_concurrent_replays_let_exactly_one_through() -> None:
    fields = job_fields()
    block = signed(fields)
    replay = ReplayCache()
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            verify(block, fields, replay=replay)
            outcomes.append("ok")
        except SignatureError as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + [REPLAYED] * 7


def test_deeply_nested_fields_are_malformed_not_a_crash() -> None:
    deep: Any = "x"
    for _ in range(10_000):
        deep = [deep]
    fields = job_fields()
    block = signed(fields)
    assert reason_of(lambda: verify(block, {**fields, "args": deep})) == MALFORMED
    with pytest.raises(ValueError, match="nested deeper"):
        payload_digest({"args": deep})
    assert reason_of(lambda: verify(block, {**fields, "kwargs": {1: "x"}})) == MALFORMED


# ---------------------------------------------------------------- the pickle gate


def _gate(signature: Any, fields: dict[str, Any], replay: ReplayCache, **kw: Any) -> Any:
    """What a worker does: verify first, unpickle only what got through."""
    verify(signature, fields, replay=replay, **kw)
    return [deserialize(a) for a in fields["args"]]


def test_a_malicious_pickle_never_runs_without_a_valid_signature(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    fields = job_fields(args=[serialize(CreatesFile(str(marker)))])
    block = signed(fields, deadline=NOW + 10)
    replay = ReplayCache()
    attempts = {
        "missing": lambda: _gate(None, fields, replay),
        "wrong key": lambda: _gate(
            sign_request(
                OTHER_KEY,
                endpoint="gpu-worker",
                function="embed",
                fields=fields,
                deadline=NOW + 10,
                now=NOW,
            ),
            fields,
            replay,
        ),
        "stale": lambda: _gate(block, fields, replay, now=NOW + 10 + CLOCK_SKEW_S + 1),
        "other payload": lambda: _gate(signed(job_fields()), fields, replay),
    }
    for label, attempt in attempts.items():
        with pytest.raises(SignatureError):
            attempt()
        assert not marker.exists(), label
    # The same pickle with a valid signature does run: the gate is what stopped it.
    _gate(block, fields, replay)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(SignatureError):
        _gate(block, fields, replay)  # replayed
    assert not marker.exists()


# ---------------------------------------------------------------- versions


def test_matching_versions_pass() -> None:
    assert check_versions(local_versions()) is None
    mine = local_versions()
    patch = {**mine, "cloudpickle": mine["cloudpickle"].split(".")[0] + ".99.0"}
    assert check_versions(patch) is None
    assert check_versions({"python": "unknown", "cloudpickle": "unknown"}) is None
    assert check_versions({}) is None


def test_python_minor_mismatch_is_explained() -> None:
    ours = f"{sys.version_info[0]}.{sys.version_info[1]}"
    theirs = "3.12" if ours != "3.12" else "3.11"
    cp_minor = ".".join(cloudpickle.__version__.split(".")[:2])
    message = check_versions({"python": f"{theirs}", "cloudpickle": cloudpickle.__version__})
    assert message == (
        f"caller runs Python {theirs} with cloudpickle {cp_minor}, this worker Python "
        f"{ours} with cloudpickle {cp_minor}: pickled calls need the same Python minor "
        f"version; use the JSON path or build for {theirs}"
    )


def test_cloudpickle_major_mismatch_is_explained() -> None:
    message = check_versions(
        {"python": "3.11", "cloudpickle": "2.2.1"},
        local={"python": "3.11", "cloudpickle": "3.1.3"},
    )
    assert message is not None
    assert "cloudpickle 2.2" in message and "cloudpickle 3.1" in message
    assert "same cloudpickle major version" in message and "cloudpickle==2.2.1" in message


# ---------------------------------------------------------------- results


def test_results_are_bound_to_the_request_nonce() -> None:
    result = {"success": True, "result": serialize({"x": 1})}
    mac = sign_result(KEY, nonce="a" * 32, result_fields=result)
    verify_result(KEY, mac, nonce="a" * 32, result_fields=json.loads(json.dumps(result)))
    checks = {
        "altered": lambda: verify_result(
            KEY, mac, nonce="a" * 32, result_fields={**result, "result": serialize(2)}
        ),
        "flag": lambda: verify_result(
            KEY, mac, nonce="a" * 32, result_fields={**result, "success": False}
        ),
        "other request": lambda: verify_result(KEY, mac, nonce="b" * 32, result_fields=result),
        "other key": lambda: verify_result(OTHER_KEY, mac, nonce="a" * 32, result_fields=result),
    }
    for label, check in checks.items():
        assert reason_of(check) == BAD_MAC, label
    assert reason_of(lambda: verify_result(KEY, None, nonce="a", result_fields=result)) == MISSING
    assert reason_of(lambda: verify_result(KEY, "xyz", nonce="a", result_fields=result)) == (
        MALFORMED
    )


# ---------------------------------------------------------------- the digest


def test_digest_is_sorted_key_compact_json_for_plain_strings() -> None:
    fields = job_fields(method_name=None)
    subset = {k: v for k, v in fields.items() if k in signing.SIGNED_FIELDS and v is not None}
    canonical = json.dumps(subset, sort_keys=True, separators=(",", ":"))
    assert payload_digest(fields) == hashlib.sha256(canonical.encode()).hexdigest()
    # None counts as absent; fields outside the signed set are ignored.
    assert payload_digest(fields) == payload_digest({**subset, "method_name": None})
    assert payload_digest(fields) != payload_digest({**subset, "method_name": "x"})


def _bytes_digest(text: str) -> str:
    """The documented form of a big pickle, written out independently: ``#`` and the
    SHA-256 of its decoded bytes."""
    return "#" + hashlib.sha256(base64.b64decode(text, validate=True)).hexdigest()


def test_a_megabyte_pickle_is_hashed_as_its_decoded_bytes() -> None:
    big = serialize(os.urandom(1 << 20))
    fields = {"function_name": "f", "args": [big], "kwargs": {}, "protocol_version": 1}
    canonical = '{"args":[' + _bytes_digest(big) + '],"function_name":"f","kwargs":{}}'
    assert payload_digest(fields) == hashlib.sha256(canonical.encode()).hexdigest()


def test_the_signer_hashes_its_own_bytes_and_the_verifier_agrees() -> None:
    # serialize keeps the digest of the bytes it encodes, so signing never decodes its own
    # output; the worker decodes and hashes, and hands the bytes on to be unpickled.
    value = os.urandom(700_000)
    digests: signing.Digests = {}
    args, kwargs = serialize_args([value, 1], {"k": value}, digests=digests)
    raw = base64.b64decode(args[0])
    assert digests == {
        id(args[0]): (args[0], hashlib.sha256(raw).hexdigest()),
        id(kwargs["k"]): (kwargs["k"], hashlib.sha256(raw).hexdigest()),
    }
    fields = job_fields(args=args, kwargs=kwargs)
    block = signed(fields, digests=digests)
    assert digests == {}  # each used once, then let go
    wire = json.loads(json.dumps(fields))  # new strings, as a worker receives them
    decoded: dict[int, bytes] = {}
    verify(block, wire, decoded=decoded)
    assert decoded == {id(wire["args"][0]): raw, id(wire["kwargs"]["k"]): raw}
    assert deserialize(wire["args"][0], decoded) == value
    assert id(wire["args"][0]) not in decoded  # let go once unpickled


def test_a_verifier_keeps_decoded_bytes_only_within_its_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A big map job must not hold every item's bytes at once: past the budget, bytes are
    # decoded again when unpickled, from the text the signature covered.
    monkeypatch.setattr(signing, "_DECODED_BUDGET", 600_000)
    values = [os.urandom(400_000) for _ in range(3)]
    fields = job_fields(args=[serialize(v) for v in values])
    block = signed(fields)
    decoded: dict[int, bytes] = {}
    verify(block, fields, decoded=decoded)
    assert list(decoded) == [id(fields["args"][0]), id(fields["args"][1])]
    assert [deserialize(a, decoded) for a in fields["args"]] == values


def test_every_big_pickle_and_only_those_get_their_digest_kept() -> None:
    # Around the threshold: a pickle whose base64 reaches BIG_TEXT characters has its digest
    # kept (or signing would decode it again); the digest is the one a verifier computes.
    for size in range(49_120, 49_160):
        digests: signing.Digests = {}
        text = serialize(os.urandom(size), digests=digests)
        assert (id(text) in digests) == (len(text) >= signing.BIG_TEXT), size
        fields = job_fields(args=[text])
        digest = signed(fields, digests=digests)["digest"]
        assert digest == payload_digest(json.loads(json.dumps(fields)))


def test_a_worker_hashes_the_bytes_it_got_not_the_digest_the_signer_kept(
    tmp_path: Path,
) -> None:
    # A signer misled about a payload's digest signs that digest; the worker computes its
    # own from what it decodes, so the payload is refused and never unpickled.
    marker = tmp_path / "pwned"
    honest = serialize(os.urandom(100_000))
    evil = serialize((CreatesFile(str(marker)), os.urandom(100_000)))
    claimed = hashlib.sha256(base64.b64decode(honest)).hexdigest()
    fields = job_fields(args=[evil])
    block = signed(fields, digests={id(evil): (evil, claimed)})
    replay = ReplayCache()
    assert reason_of(lambda: _gate(block, json.loads(json.dumps(fields)), replay)) == TAMPERED
    assert not marker.exists()


@pytest.mark.parametrize("where", [0, (1 << 16) - 1, 1 << 16, 400_000, 667_000, -1])
def test_one_changed_character_anywhere_in_a_big_payload_is_tampering(where: int) -> None:
    big = serialize(os.urandom(600_000))
    fields = job_fields(args=[big])
    block = signed(fields)
    changed = "B" if big[where] == "A" else "A"
    altered = big[:where] + changed + (big[where + 1 :] if where != -1 else "")
    assert len(altered) == len(big) and altered != big
    assert reason_of(lambda: verify(block, {**fields, "args": [altered]})) == TAMPERED
    assert reason_of(lambda: verify(block, {**fields, "args": [big + "A"]})) == TAMPERED
    assert reason_of(lambda: verify(block, {**fields, "args": [big[:-4]]})) == TAMPERED
    verify(block, fields)


def test_strings_around_the_big_threshold_stay_distinct() -> None:
    edge = signing.BIG_TEXT
    texts = ["a" * (edge - 1), "a" * edge, "a" * (edge + 1), "a" * (edge - 1) + "b"]
    digests = {payload_digest({"args": [t]}) for t in texts}
    assert len(digests) == len(texts)
    # A short string can never pose as a big one's digest: digests are written unquoted.
    digest = _bytes_digest("a" * edge)
    assert payload_digest({"args": [digest]}) != payload_digest({"args": ["a" * edge]})
    # Nor can a big text pose as the bytes it would decode to, or the other way round.
    text = "a" * edge + "!"
    assert payload_digest({"args": [text]}) != payload_digest({"args": ["a" * edge]})


BASE = base64.b64encode(os.urandom(300_000)).decode()  # no padding: 300,000 is 3 * 100,000
CUT = signing._head_length(len(BASE))  # where a big text is split to be decoded


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(BASE, id="plain"),
        pytest.param(BASE[:-4] + "QQ==", id="padded"),
        pytest.param(BASE[:-4] + "QR==", id="unused-bits"),
        pytest.param(BASE[: CUT - 4] + "QQ==" + BASE[CUT:], id="padding-at-the-split"),
        pytest.param(BASE[:CUT] + "====" + BASE[CUT + 4 :], id="padding-after-the-split"),
        pytest.param(BASE[:100] + "*" + BASE[101:], id="bad-character-in-the-head"),
        pytest.param(BASE[:-100] + "\n" + BASE[-99:], id="newline-in-the-tail"),
        pytest.param(BASE + "QQ", id="unpadded"),
        pytest.param(BASE[:-4] + "Q===", id="three-pads"),
        pytest.param(BASE[:-1] + "é", id="non-ascii"),
        pytest.param(BASE[:2000], id="small"),
    ],
)
@pytest.mark.skipif(sys.version_info < (3, 11), reason="strict_mode, the reference, is 3.11+")
def test_big_base64_is_read_as_strictly_as_python_does(text: str) -> None:
    # The split decode accepts exactly what one strict decode accepts, and hashes the same
    # bytes: caller and worker must classify texts alike.
    try:
        expected: bytes | None = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        expected = None
    found = signing._decode_and_hash(text)
    if expected is None or base64.b64encode(expected).decode() != text:
        assert found is None  # not base64, or not its bytes' one encoding: hashed as text
    else:
        assert found == (expected, hashlib.sha256(expected).hexdigest())


@pytest.mark.parametrize("size", [70_000, 300_000], ids=["small-path", "split-path"])
def test_a_big_text_cannot_be_swapped_for_another_encoding_of_its_bytes(size: int) -> None:
    # "QQ==" and "QR==" decode alike; a JSON argument is used as the text itself, so the
    # digest of a non-canonical text covers its characters.
    canonical = "A" * size + "QQ=="
    assert payload_digest({"kwargs": {"w": canonical}}) != payload_digest(
        {"kwargs": {"w": "A" * size + "QR=="}}
    )
    assert payload_digest({"kwargs": {"w": "A" * size + "QUE="}}) != payload_digest(
        {"kwargs": {"w": "A" * size + "QUF="}}
    )


def test_json_arguments_as_deep_as_a_worker_takes_can_be_signed() -> None:
    deep: object = 1
    for _ in range(MAX_JSON_DEPTH + 2):  # as deep as a worker takes JSON arguments
        deep = [deep]
    fields = job_fields(kwargs={"x": deep})
    verify(signed(fields), fields)
    for _ in range(30):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper"):
        signed(job_fields(kwargs={"x": deep}))


def test_big_strings_with_escapes_or_lone_surrogates_are_hashed() -> None:
    plain = "x" * 100_000
    variants = [plain, plain + '"', plain + "\\", plain + "é", plain + "\ud800", plain + "\udc00"]
    digests = [payload_digest({"method_name": v}) for v in variants]
    assert len(set(digests)) == len(variants)
    fields = job_fields(method_name=variants[4])
    verify(signed(fields), json.loads(json.dumps(fields)))


def test_an_altered_big_result_fails_its_mac() -> None:
    big = serialize(os.urandom(1 << 20))
    result = {"success": True, "result": big}
    mac = sign_result(KEY, nonce="a" * 32, result_fields=result)
    verify_result(KEY, mac, nonce="a" * 32, result_fields=json.loads(json.dumps(result)))
    altered = {
        **result,
        "result": big[:500_000] + ("A" if big[500_000] != "A" else "B") + big[500_001:],
    }
    assert (
        reason_of(lambda: verify_result(KEY, mac, nonce="a" * 32, result_fields=altered)) == BAD_MAC
    )


def test_base64_that_fails_on_the_helper_thread_fails_the_caller() -> None:
    # Signing must never go on with part of an encoding (nor verifying with part of a decoding).
    def failing(data: bytes) -> bytes:
        raise MemoryError("no room")

    with pytest.raises(MemoryError, match="no room"):
        signing._HELPER.run(failing, b"x" * 100).result()
    data = os.urandom(1 << 19)  # the helper goes on serving
    assert signing.encode_and_hash(data) == (
        base64.b64encode(data),
        hashlib.sha256(data).hexdigest(),
    )


def test_a_job_the_helper_has_not_started_is_run_by_the_thread_that_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On a busy machine the helper thread may not run for milliseconds: the caller, done
    # with its own share, does the job itself rather than wait for it.
    helper = signing._Helper()
    monkeypatch.setattr(signing, "_HELPER", helper)
    release = threading.Event()
    held = helper.run(lambda _: release.wait(60), None)  # the helper is held up
    ran_in: list[threading.Thread] = []
    job = helper.run(lambda x: ran_in.append(threading.current_thread()) or 2 * x, 21)
    assert job.result() == 42 and ran_in == [threading.current_thread()]
    release.set()
    assert held.result() is True
    # Free again, the helper comes to that job (skipped: it ran here) and to the next one.
    after = helper.run(lambda _: threading.current_thread(), None)
    assert after.done.acquire(timeout=60)  # waited for, not claimed here
    assert after.value is not threading.current_thread()  # the helper ran it
    assert ran_in == [threading.current_thread()]  # and the job it skipped ran once


def test_nothing_is_decoded_for_a_request_whose_mac_or_deadline_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Decoding runs no code, but a caller without the key must not make a worker do it.
    fields = job_fields(args=[serialize(os.urandom(300_000))])
    block, expired = signed(fields), signed(fields, deadline=NOW - 3600, now=NOW - 4000)
    decoded: list[str] = []
    real = signing._decode_and_hash
    monkeypatch.setattr(signing, "_decode_and_hash", lambda t: decoded.append(t) or real(t))
    assert reason_of(lambda: verify(block, fields, key=OTHER_KEY)) == BAD_MAC
    assert reason_of(lambda: verify(expired, fields)) == EXPIRED
    assert decoded == []
    verify(block, fields)
    assert decoded == fields["args"]


def test_a_replayed_big_request_is_refused_before_it_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A captured request sent again must not cost the worker a decode and a hash per copy;
    # a full cache that cannot tell refuses it as early.
    fields = job_fields(args=[serialize(os.urandom(300_000))])
    block, fresh = signed(fields), signed(fields)
    replay = ReplayCache()
    verify(block, fields, replay=replay)
    decoded: list[str] = []
    real = signing._decode_and_hash
    monkeypatch.setattr(signing, "_decode_and_hash", lambda t: decoded.append(t) or real(t))
    assert reason_of(lambda: verify(block, fields, replay=replay)) == REPLAYED
    assert decoded == []
    full = ReplayCache(max_entries=1)
    full.remember("b" * 32, NOW + 900, now=NOW)  # forces out the bucket of the next one
    full.remember("c" * 32, NOW + 1800, now=NOW)
    assert reason_of(lambda: verify(block, fields, replay=full)) == REPLAY_CACHE_FULL
    assert decoded == []
    # A fresh request still passes: the early look records nothing.
    verify(fresh, fields, replay=replay)
    assert decoded == fields["args"]


def test_big_payloads_are_hashed_even_when_no_thread_can_be_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Under a process limit (or while the interpreter exits) starting the helper fails:
    # base64 then runs in the calling thread instead of waiting for a helper forever.
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    helper = signing._Helper()
    monkeypatch.setattr(signing, "_HELPER", helper)
    monkeypatch.setattr(threading.Thread, "start", refuse)
    data = os.urandom(1 << 19)
    for _ in range(2):
        encoded, digest = signing.encode_and_hash(data)
        assert encoded == base64.b64encode(data)
        assert digest == hashlib.sha256(data).hexdigest()
    monkeypatch.undo()


def test_big_payloads_hash_in_a_forked_child(tmp_path: Path) -> None:
    # The helper thread does not survive fork(), nor does a thread that held the helper's
    # lock at that moment: a child must start its own helper, not wait forever.
    big = serialize(os.urandom(1 << 20))
    expected = payload_digest({"args": [big]})  # the parent's helper thread now runs
    out = tmp_path / "digest"
    lock = signing._HELPER._lock
    lock.acquire()  # as if another thread were starting the helper when fork() ran
    with warnings.catch_warnings():  # 3.12+ warns about fork() in a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            out.write_text(payload_digest({"args": [big]}))
        finally:
            os._exit(0)
    lock.release()
    waiter = threading.Thread(target=os.waitpid, args=(pid, 0))
    waiter.start()
    waiter.join(30)
    if waiter.is_alive():
        os.kill(pid, signal.SIGKILL)
        waiter.join()
        pytest.fail("the forked child hung while hashing")
    assert out.read_text() == expected


def test_a_forked_child_never_sends_its_parents_nonces(tmp_path: Path) -> None:
    fields = job_fields()
    signed(fields)  # the parent has random nonces in stock now
    out = tmp_path / "nonce"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            out.write_text(signed(fields)["nonce"])
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    parents = {signed(fields)["nonce"] for _ in range(200)}
    assert len(out.read_text()) == 32 and out.read_text() not in parents


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(max_size=12), st.just("gAVLDC4="), st.integers()),
    st.sampled_from([True, False, 1]),
    st.sampled_from([1, 2, True, "1", None]),
)
def test_the_usual_answer_is_signed_as_any_other(result: Any, success: Any, version: Any) -> None:
    # sign_result writes the generic handler's usual answer at once: same MAC as the general
    # canonical form, and a verifier can tell any change.
    from flash.runtime.generic_handler import _success

    answer = {"success": success, "result": result, "protocol_version": version}
    nonce = "ab" * 16
    for fields in (answer, _success(result, "f")):
        general = signing._result_mac(
            KEY, nonce, signing._canonical(fields, 0, signing._big_writer())
        )
        assert sign_result(KEY, nonce=nonce, result_fields=fields) == general
        verify_result(KEY, general, nonce=nonce, result_fields=dict(fields))
        with pytest.raises(SignatureError):
            verify_result(KEY, general, nonce=nonce, result_fields={**fields, "result": [result]})


_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=6)
_field_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
_field_dicts = st.dictionaries(st.sampled_from(signing.SIGNED_FIELDS), _field_values, max_size=4)


def _canonical(fields: dict[str, Any]) -> str:
    subset = {k: v for k, v in fields.items() if v is not None}
    return json.dumps(subset, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=400, deadline=None)
@given(_field_dicts, _field_dicts)
def test_digests_are_equal_exactly_when_the_fields_are(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    assert (payload_digest(a) == payload_digest(b)) == (_canonical(a) == _canonical(b))


class _Float(float):
    """A float subclass (numpy's float64 is one): JSON writes its value."""

    def __repr__(self) -> str:
        return "F"


def test_a_long_list_of_floats_is_hashed_as_its_packed_doubles() -> None:
    # An embedding signs in milliseconds, not float by float: a list of 32 floats or more is
    # written as "%" and the SHA-256 of its little-endian doubles.
    values = [i / 7 for i in range(100)]
    packed = "%" + hashlib.sha256(struct.pack(f"<{len(values)}d", *values)).hexdigest()
    canonical = '{"kwargs":{"v":' + packed + "}}"
    digest = payload_digest({"kwargs": {"v": values}})
    assert digest == hashlib.sha256(canonical.encode()).hexdigest()
    # The worker gets the same floats back from JSON; a subclass signs as its value.
    assert payload_digest(json.loads(json.dumps({"kwargs": {"v": values}}))) == digest
    assert payload_digest({"kwargs": {"v": [_Float(v) for v in values]}}) == digest
    assert payload_digest({"kwargs": {"v": tuple(values)}}) == digest
    # Anything else is written out as JSON: short lists, an int among the floats (1 is not
    # 1.0), and a NaN, whose bits JSON does not keep.
    text_form = [
        values[:31],
        [*values[:40], 1],
        [*values[:40], float("nan")],
        [*values[:40], float("inf"), float("-inf")],
    ]
    for items in text_form:
        written = json.dumps({"kwargs": {"v": items}}, separators=(",", ":"))
        assert (
            payload_digest({"kwargs": {"v": items}}) == hashlib.sha256(written.encode()).hexdigest()
        )
    # The sign of a zero is kept, as JSON keeps it.
    assert payload_digest({"kwargs": {"v": [0.0] * 40}}) != payload_digest(
        {"kwargs": {"v": [-0.0] * 40}}
    )


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False), min_size=30, max_size=34),
    st.integers(-34, 33),  # negative: counted from the end
    st.floats() | st.integers(-3, 3) | st.sampled_from([0.0, -0.0]),
)
@example(a=[1.0] * 32, where=31, value=1)
@example(a=[0.0] * 32, where=5, value=-0.0)
def test_float_lists_digest_equal_exactly_when_their_json_is(
    a: list[float], where: int, value: float
) -> None:
    # One item changed (to another float, an int, the other zero, a NaN): the digests
    # differ exactly when the JSON the worker gets differs.
    b = list(a)
    b[where % len(b)] = value
    assert (payload_digest({"items": a}) == payload_digest({"items": b})) == (
        _canonical({"items": a}) == _canonical({"items": b})
    )
    assert payload_digest({"items": a}) == payload_digest({"items": tuple(a)})


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_strings_with_quotes_and_escapes_never_collide(a: str, b: str) -> None:
    assert payload_digest({"args": [a, b]}) != payload_digest({"args": [a + '","' + b]})
    assert (payload_digest({"method_name": a}) == payload_digest({"method_name": b})) == (a == b)


def test_pickles_in_fields_are_never_loaded_by_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: loads.append(a))
    fields = job_fields()
    verify(signed(fields), fields)
    assert loads == []
