"""Submit one task, read its result: bytes through C++ and Python handlers,
the payload types accepted, and the codecs."""

import array

import pytest

import taskring
from conftest import WAIT

# Around the engine's inline limits (payloads up to 56 bytes and results up
# to 40 live in the slot, longer ones in the payload area) and up to the
# test segment's max_payload of 64 KiB.
SIZES = [0, 1, 39, 40, 41, 55, 56, 57, 1000, 4096, 65536]


def test_bytes_round_trip_through_cpp_builtin_echo(client, workers, rng):
    workers.start(workers.new(builtins=True))
    payloads = [rng.randbytes(n) for n in SIZES]
    for p in payloads:
        assert client.submit("echo", p).result(timeout=WAIT) == p, f"{len(p)} bytes"


def test_bytes_round_trip_through_python_handler(client, workers, rng):
    w = workers.new()

    @w.task("tag_and_reverse")
    def tag_and_reverse(payload):
        # The handler gets bytes (not a view that dies with the task).
        return type(payload).__name__.encode() + b":" + payload[::-1]

    workers.start(w)
    for n in SIZES[:-1]:  # the result is 6 bytes longer than the payload
        p = rng.randbytes(n)
        assert client.submit("tag_and_reverse", p).result(timeout=WAIT) == b"bytes:" + p[::-1], f"{n} bytes"


@pytest.mark.parametrize("make", [bytearray, memoryview, lambda b: memoryview(b"..." + b + b"...")[3:-3],
                                  lambda b: array.array("B", b)],
                         ids=["bytearray", "memoryview", "memoryview-slice", "array"])
def test_buffer_protocol_payloads_are_accepted(client, workers, make):
    workers.start()
    assert client.submit("echo", make(b"payload bytes")).result(timeout=WAIT) == b"payload bytes"


def test_non_contiguous_memoryview_payload_raises_type_error_naming_payload(client):
    with pytest.raises(TypeError, match="payload"):
        client.submit("echo", memoryview(b"abcdef")[::2])


def test_str_payload_without_codec_raises_type_error_naming_payload(client):
    with pytest.raises(TypeError, match=r"^payload: .*got str"):
        client.submit("echo", "text")


def test_python_handler_result_that_is_not_bytes_fails_the_task(client, workers):
    w = workers.new()

    @w.task("returns_int")
    def returns_int(payload):
        return 5

    workers.start(w)
    with pytest.raises(taskring.TaskFailed, match="handler result: expected a bytes-like object.*got int"):
        client.submit("returns_int", b"", max_attempts=1).result(timeout=WAIT)


def test_handler_returning_none_gives_an_empty_result(client, workers):
    w = workers.new()

    @w.task("nothing")
    def nothing(payload):
        return None

    workers.start(w)
    h = client.submit("nothing", b"x")
    assert h.result(timeout=WAIT) == b""
    assert h.outcome().state == "succeeded"


def test_json_codec_encodes_payload_and_decodes_result(segment, workers):
    w = workers.new()

    @w.task("add", codec="json")
    def add(args):
        return {"sum": args["a"] + args["b"], "echo": args}

    workers.start(w)
    with taskring.Client(segment, codec="json") as c:
        args = {"a": 2, "b": 40, "text": "h\u00e9llo", "list": [1, None, True]}
        assert c.submit("add", args).result(timeout=WAIT) == {"sum": 42, "echo": args}


def test_msgpack_codec_round_trips_binary_values(segment, workers):
    pytest.importorskip("msgpack")
    w = workers.new()

    @w.task("swap", codec="msgpack")
    def swap(obj):
        return [obj[1], obj[0]]

    workers.start(w)
    with taskring.Client(segment, codec="msgpack") as c:
        assert c.submit("swap", [b"\x00\xffraw", {"k": 1.5}]).result(timeout=WAIT) == [{"k": 1.5}, b"\x00\xffraw"]


def test_pickle_codec_round_trips_what_json_cannot(segment, workers):
    w = workers.new()

    @w.task("sorted_set", codec="pickle")
    def sorted_set(obj):
        return (tuple(sorted(obj)), frozenset(obj))

    workers.start(w)
    with taskring.Client(segment, codec="pickle") as c:
        assert c.submit("sorted_set", {3, 1, 2}).result(timeout=WAIT) == ((1, 2, 3), frozenset({1, 2, 3}))


@pytest.mark.parametrize("codec", [None, "json"])
def test_objects_are_never_pickled_unless_asked(segment, codec):
    # A set is neither bytes nor JSON: the default and the json codec refuse
    # it instead of falling back to pickle.
    with taskring.Client(segment, codec=codec) as c:
        with pytest.raises(TypeError):
            c.submit("echo", {1, 2})


def test_unknown_codec_name_raises_value_error_naming_codec(segment):
    with pytest.raises(ValueError, match=r"codec 'yaml': must be one of bytes, json, msgpack, pickle"):
        taskring.Client(segment, codec="yaml")


def test_result_is_decoded_by_the_clients_codec(segment, workers):
    # The handler speaks bytes; the client's json codec encodes the payload
    # and decodes whatever bytes come back.
    w = workers.new()

    @w.task("wrap")
    def wrap(payload):
        return b'{"got": ' + payload + b"}"

    workers.start(w)
    with taskring.Client(segment, codec="json") as c:
        assert c.submit("wrap", [1, "two"]).result(timeout=WAIT) == {"got": [1, "two"]}


def test_codec_of_one_submit_overrides_the_clients(segment, workers):
    workers.start()
    with taskring.Client(segment, codec="json") as c:
        h = c.submit("echo", b"not json", codec="bytes")
        assert h.result(timeout=WAIT) == b"not json"


def test_task_def_submit_uses_the_tasks_codec(client, workers):
    w = workers.new()

    @w.task("double", codec="json")
    def double(n):
        return n * 2

    workers.start(w)
    assert double(4) == 8  # calling the TaskDef calls the function
    assert double.submit(client, 21).result(timeout=WAIT) == 42
