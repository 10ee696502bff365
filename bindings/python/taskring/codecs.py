"""Codecs turn Python objects into payload and result bytes and back.

Payloads and results are bytes by default (anything with the buffer
protocol is accepted without a copy). A client or a task given a codec
encodes what it sends and decodes what it receives. Pickle is only used when
asked for by name, since unpickling runs code chosen by whoever wrote the
bytes.
"""

from __future__ import annotations

import json as _json
import pickle as _pickle
from typing import Any, Union


class Codec:
    """Encodes objects to bytes and decodes them back. Subclass it for your own format."""

    name = "bytes"

    def encode(self, obj: Any) -> Any:
        """Returns a bytes-like object for `obj`."""
        return obj

    def decode(self, data: bytes) -> Any:
        """Returns the object `data` encodes."""
        return data

    def __repr__(self) -> str:
        return f"taskring.codecs.{type(self).__name__}()"


class BytesCodec(Codec):
    """No encoding: payloads and results are bytes-like objects (the default)."""


class JsonCodec(Codec):
    """JSON in UTF-8 (compact separators)."""

    name = "json"

    def encode(self, obj: Any) -> bytes:
        return _json.dumps(obj, separators=(",", ":")).encode()

    def decode(self, data: bytes) -> Any:
        return _json.loads(data)


class MsgpackCodec(Codec):
    """MessagePack; needs the msgpack package (pip install taskring[msgpack])."""

    name = "msgpack"

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("the msgpack codec needs the msgpack package: pip install msgpack") from e
        self._msgpack = msgpack

    def encode(self, obj: Any) -> bytes:
        return self._msgpack.packb(obj, use_bin_type=True)

    def decode(self, data: bytes) -> Any:
        return self._msgpack.unpackb(data, raw=False)


class PickleCodec(Codec):
    """Pickle: any picklable object. Only for bytes you trust."""

    name = "pickle"

    def encode(self, obj: Any) -> bytes:
        return _pickle.dumps(obj, protocol=_pickle.HIGHEST_PROTOCOL)

    def decode(self, data: bytes) -> Any:
        return _pickle.loads(data)


BYTES = BytesCodec()
JSON = JsonCodec()

_BY_NAME = {"bytes": lambda: BYTES, "json": lambda: JSON, "msgpack": MsgpackCodec, "pickle": PickleCodec}

CodecLike = Union[None, str, Codec]


def get(codec: CodecLike) -> Codec:
    """Returns the codec for `codec`: None (bytes), a name or a Codec instance.

    Raises ValueError for an unknown name.
    """
    if codec is None:
        return BYTES
    if isinstance(codec, Codec):
        return codec
    if isinstance(codec, str) and codec in _BY_NAME:
        return _BY_NAME[codec]()
    raise ValueError(f"codec {codec!r}: must be one of {', '.join(sorted(_BY_NAME))} or a taskring.codecs.Codec")
