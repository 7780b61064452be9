"""A non-recursive outline of a push body: where each mutation and each of its fields lies.

msgspec decodes a push in one strict pass (the fast path, ``push.decode_request``). When that
pass fails inside one mutation (a field out of bounds, invalid UTF-8, nesting deeper than
Python's recursion limit), push falls back to this outline so that the one mutation is
``rejected`` and the rest of the batch goes on (SPEC 3.1, no poison pill): it cuts the body into
the byte spans of the envelope's values, of each element of ``mutations`` and of each field of
those elements, and says how deeply each span nests. Each span is then decoded on its own.

The outline never recurses (loops with a level count) and never trusts a length in the body to
allocate anything. Inside a mutation's field it only counts containers, in a tight loop, so
4 MiB of ``[`` or of msgpack ``0x91`` costs one pass over the bytes (well under a second; the
worst bodies, e.g. 4 MiB of ``[1,``, take about a second on the development machine). It checks
no more of the syntax than it needs: whatever it accepts is decoded by msgspec afterwards, which
judges the rest. It answers ``None`` for a body it cannot outline (not a map at the top,
truncated, ...): push then refuses the body as a whole, as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MUTATIONS = "mutations"


@dataclass(slots=True)
class Span:
    """``body[start:end]`` is one complete value; ``depth`` is how many containers nest in it
    (0 for a scalar, 1 for ``[1, 2]``)."""

    start: int
    end: int
    depth: int = 0
    # For a mutation (an element of ``mutations`` that is a map): its fields by name.
    fields: dict[str, Span] | None = None


@dataclass(slots=True)
class Outline:
    """The top-level map's values by key, and the elements of its ``mutations`` array."""

    top: dict[str, Span] = field(default_factory=dict)
    mutations: list[Span] | None = None


class TooManyMutations(Exception):
    """``mutations`` has more elements than the caller allows (counted while outlining, so a
    body of a million tiny elements does not build a million spans)."""

    def __init__(self, count: int):
        super().__init__(count)
        self.count = count


def outline(body: bytes, fmt: str, max_mutations: int) -> Outline | None:
    if fmt == "msgpack":
        return _MsgpackOutliner(body, max_mutations).run()
    return _JsonOutliner(body, max_mutations).run()


# Three containers are *followed* (their values get spans): the top-level map, its mutations
# array and each mutation map. Any other container is only counted, for the depth of the value
# of a followed one that holds it.
_FOLLOWED = {("top", True), ("mutations", False), ("mutation", True)}  # (kind, is a map)


class _Frame:
    __slots__ = ("child", "inner", "is_map", "key", "kind", "left", "on_key", "spans")

    def __init__(self, is_map: bool, kind: str, left: int = 0):
        self.is_map = is_map
        self.kind = kind  # "top", "mutations" or "mutation"
        self.spans: dict[str, Span] | list[Span] = {} if is_map else []
        self.child: Span | None = None  # the value being read
        self.key: str | None = None  # its key, in a map
        self.inner = 0  # the depth of the deepest value read
        self.left = left  # msgpack: items still to read (a map's keys and values both count)
        self.on_key = is_map  # msgpack: the next item of a map is a key


class _Builder:
    """What both formats share: the stack of followed containers and the value each reads."""

    def __init__(self, max_mutations: int):
        self.max_mutations = max_mutations
        self.stack: list[_Frame] = []
        self.result = Outline()
        self.root_closed = False

    def follows(self, is_map: bool) -> bool:
        """Whether a container opening here is followed."""
        if not self.stack:
            kind = "top"
        else:
            parent = self.stack[-1]
            if parent.kind == "top":
                kind = "mutations" if parent.key == MUTATIONS else ""
            else:
                kind = "mutation" if parent.kind == "mutations" else ""
        return (kind, is_map) in _FOLLOWED

    def open_followed(self, is_map: bool, left: int = 0) -> None:
        if not self.stack:
            kind = "top"
        else:
            kind = "mutations" if self.stack[-1].kind == "top" else "mutation"
        self.stack.append(_Frame(is_map, kind, left))

    def nested(self, depth: int) -> None:
        """The value being read holds containers ``depth`` deep."""
        child = self.stack[-1].child
        if child is not None and depth > child.depth:
            child.depth = depth

    def start_value(self, pos: int) -> None:
        self.stack[-1].child = Span(pos, pos)

    def end_value(self, end: int) -> None:
        """The value read by the innermost followed container ends at ``end``."""
        frame = self.stack[-1]
        child = frame.child
        frame.child = None
        if child is None or end <= child.start:
            return  # no value (an empty container)
        child.end = end
        frame.inner = max(frame.inner, child.depth)
        spans = frame.spans
        if isinstance(spans, list):
            if frame.kind == "mutations" and len(spans) >= self.max_mutations:
                raise TooManyMutations(len(spans) + 1)
            spans.append(child)
        elif frame.key is not None:
            spans[frame.key] = child
            frame.key = None

    def close_followed(self) -> None:
        frame = self.stack.pop()
        spans = frame.spans
        if frame.kind == "top":
            assert isinstance(spans, dict)  # the top of a followed body is a map (_FOLLOWED)
            self.result.top = spans
            self.root_closed = True
            return
        if frame.kind == "mutations":
            assert isinstance(spans, list)  # followed only as an array
            self.result.mutations = spans
        else:
            mutation = self.stack[-1].child
            assert mutation is not None and isinstance(spans, dict)  # a map, read as a value
            mutation.fields = spans
        self.nested(frame.inner + 1)


# -- JSON -----------------------------------------------------------------------------------------

# Strings whole (brackets inside them do not count), runs of openers or closers as one token
# (4 MiB of "[" is one token), and the punctuation between values. Inside a counted container
# the punctuation does not matter.
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[{]+|[\]}]+|[:,]')
_JSON_NESTING = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[{]+|[\]}]+')
_WS = b" \t\r\n"


class _JsonOutliner(_Builder):
    def __init__(self, body: bytes, max_mutations: int):
        super().__init__(max_mutations)
        self.body = body

    def _end(self, pos: int) -> int:
        """Where a value that stops before ``pos`` ends (blanks stripped)."""
        while pos > 0 and self.body[pos - 1] in _WS:
            pos -= 1
        return pos

    def _start(self, pos: int) -> None:
        """A value may start at ``pos`` (after ``[``, ``:`` or ``,``): blanks skipped."""
        body = self.body
        while pos < len(body) and body[pos] in _WS:
            pos += 1
        self.start_value(pos)

    def _skip(self, pos: int, level: int) -> int:
        """Past the counted containers open at ``pos`` (``level`` of them): the position just
        after the closer of the outermost, or -1 when the body ends first."""
        body = self.body
        search = _JSON_NESTING.search
        peak = level
        while True:
            match = search(body, pos)
            if match is None:
                return -1
            token = match.group()
            first = token[0]
            if first == 0x5B or first == 0x7B:
                level += len(token)
                if level > peak:
                    peak = level
            elif first != 0x22:  # closers
                if len(token) >= level:
                    self.nested(peak)
                    return match.start() + level
                level -= len(token)
            pos = match.end()

    def run(self) -> Outline | None:
        body = self.body
        search = _JSON_TOKENS.search
        key: str | None = None  # the last string read at a followed level
        pos = 0
        while True:
            match = search(body, pos)
            if match is None:
                break
            if self.root_closed:
                return None  # something after the top-level value
            token = match.group()
            pos = match.end()
            first = token[0]
            if first == 0x22:  # a string
                try:
                    key = token[1:-1].decode()
                except UnicodeDecodeError:
                    key = None
                continue
            if first == 0x5B or first == 0x7B:  # [ {
                for i, opener in enumerate(token):
                    is_map = opener == 0x7B
                    if not self.follows(is_map):
                        if not self.stack:
                            return None  # the body must be a map
                        pos = self._skip(match.end(), len(token) - i)
                        if pos < 0:
                            return None
                        break
                    self.open_followed(is_map)
                    if not is_map:
                        self._start(match.start() + i + 1)
                continue
            if first == 0x5D or first == 0x7D:  # ] }: each closes a followed container
                for i in range(len(token)):
                    if not self.stack:
                        return None
                    self.end_value(self._end(match.start() + i))
                    self.close_followed()  # its parent's value ends at the next , or closer
                continue
            if not self.stack:
                return None
            frame = self.stack[-1]
            if token == b":":
                if frame.is_map:
                    frame.key = key
                    self._start(pos)
            else:  # ","
                self.end_value(self._end(match.start()))
                if not frame.is_map:
                    self._start(pos)
        return self.result if self.root_closed else None


# -- MessagePack ----------------------------------------------------------------------------------

# Header byte -> (bytes of a length that follows, fixed bytes after it) for the scalars whose
# size the header gives; fix-sized families and containers are decoded in ``_header``.
_SIZED = {
    0xC0: (0, 0), 0xC2: (0, 0), 0xC3: (0, 0),  # nil, false, true
    0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0),  # bin 8/16/32
    0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1),  # ext 8/16/32 (+ the type byte)
    0xCA: (0, 4), 0xCB: (0, 8),  # float 32/64
    0xCC: (0, 1), 0xCD: (0, 2), 0xCE: (0, 4), 0xCF: (0, 8),  # uint 8..64
    0xD0: (0, 1), 0xD1: (0, 2), 0xD2: (0, 4), 0xD3: (0, 8),  # int 8..64
    0xD4: (0, 2), 0xD5: (0, 3), 0xD6: (0, 5), 0xD7: (0, 9), 0xD8: (0, 17),  # fixext
    0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0),  # str 8/16/32
}  # fmt: skip
_CONTAINERS = {0xDC: (2, 1), 0xDD: (4, 1), 0xDE: (2, 2), 0xDF: (4, 2)}  # (width, items per)
_RUN_OF_ONES = re.compile(rb"\x91+")  # nested one-element arrays: the cheapest deep body


def _header(body: bytes, pos: int) -> tuple[int, int, bool]:
    """(where the content starts, its items if a container else -1, is a map); for a scalar,
    (where it ends, -1, False). (-1, -1, False) when the bytes cannot be a value."""
    b = body[pos]
    if b <= 0x7F or b >= 0xE0:
        return pos + 1, -1, False
    if b <= 0x8F:
        return pos + 1, (b & 0x0F) * 2, True
    if b <= 0x9F:
        return pos + 1, b & 0x0F, False
    if b <= 0xBF:
        return pos + 1 + (b & 0x1F), -1, False
    container = _CONTAINERS.get(b)
    if container is not None:
        width, per = container
        if pos + 1 + width > len(body):
            return -1, -1, False
        return pos + 1 + width, int.from_bytes(body[pos + 1 : pos + 1 + width]) * per, per == 2
    sized = _SIZED.get(b)
    if sized is None:
        return -1, -1, False  # 0xC1 is never used
    width, fixed = sized
    if pos + 1 + width > len(body):
        return -1, -1, False
    length = int.from_bytes(body[pos + 1 : pos + 1 + width]) if width else 0
    return pos + 1 + width + fixed + length, -1, False


class _MsgpackOutliner(_Builder):
    def __init__(self, body: bytes, max_mutations: int):
        super().__init__(max_mutations)
        self.body = body

    def _key(self, pos: int, end: int) -> str | None:
        b = self.body[pos]
        if 0xA0 <= b <= 0xBF:
            raw = self.body[pos + 1 : end]
        elif 0xD9 <= b <= 0xDB:
            raw = self.body[pos + 1 + (1 << (b - 0xD9)) : end]  # after a 1, 2 or 4 byte length
        else:
            return None
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return None

    def _skip(self, pos: int, items: int) -> int:
        """Past a counted container whose ``items`` start at ``pos``: where it ends, or -1.
        Open containers are kept as [items left, how many]: nested containers of one item each
        share one entry, so 4 MiB of 0x91 is one regex match."""
        body = self.body
        size = len(body)
        open_: list[list[int]] = [[items, 1]]
        level = peak = 1
        run_of_ones = _RUN_OF_ONES.match
        while open_:
            if pos >= size:
                return -1
            if body[pos] == 0x91:
                run = run_of_ones(body, pos)
                assert run is not None
                n = run.end() - pos
                pos = run.end()
                level += n
                if level > peak:
                    peak = level
                if open_[-1][0] == 1:
                    open_[-1][1] += n
                else:
                    open_.append([1, n])
                continue
            b = body[pos]
            # the frequent headers inline (a call per element doubles the time), the rest
            # through _header
            if b <= 0x7F or b >= 0xE0 or b == 0xC0 or b == 0xC2 or b == 0xC3:
                pos += 1
                count = -1
            elif 0x90 <= b <= 0x9F:
                pos += 1
                count = b & 0x0F
            elif 0x80 <= b <= 0x8F:
                pos += 1
                count = (b & 0x0F) * 2
            elif 0xA0 <= b <= 0xBF:
                pos += 1 + (b & 0x1F)
                count = -1
            else:
                pos, count, _ = _header(body, pos)
                if pos < 0:
                    return -1
            if count > 0:
                level += 1
                if level > peak:
                    peak = level
                if count == 1 and open_[-1][0] == 1:
                    open_[-1][1] += 1
                else:
                    open_.append([count, 1])
                continue
            if count == 0 and level + 1 > peak:  # an empty container
                peak = level + 1
            # one item done, and the containers it completes
            while open_:
                entry = open_[-1]
                if entry[0] > 1:
                    entry[0] -= 1
                    break
                open_.pop()
                level -= entry[1]
        if pos > size:
            return -1
        self.nested(peak)
        return pos

    def _item_done(self, end: int) -> None:
        """An item of the innermost followed container (a scalar, or a container now complete)
        ends at ``end``; close the followed containers it completes."""
        while self.stack:
            frame = self.stack[-1]
            if frame.is_map and frame.on_key:
                frame.on_key = False
            else:
                self.end_value(end)
                frame.on_key = frame.is_map
            frame.left -= 1
            if frame.left > 0:
                return
            self.close_followed()

    def run(self) -> Outline | None:
        body = self.body
        size = len(body)
        pos = 0
        while not self.root_closed:
            if pos >= size:
                return None  # truncated
            after, items, is_map = _header(body, pos)
            if after < 0 or after > size:
                return None
            if not self.stack:
                if not is_map:
                    return None  # the body must be a map
            elif self.stack[-1].on_key:
                if items >= 0:
                    return None  # a container as a key: not a push
                self.stack[-1].key = self._key(pos, after)
                pos = after
                self._item_done(pos)
                continue
            else:
                self.start_value(pos)
            if items < 0:  # a scalar
                pos = after
                self._item_done(pos)
                continue
            if self.follows(is_map):
                self.open_followed(is_map, items)
                pos = after
                if items == 0:  # empty: complete at once
                    self.close_followed()
                    self._item_done(pos)
                continue
            pos = self._skip(after, items) if items else after
            if pos < 0:
                return None
            self.nested(1)
            self._item_done(pos)
        return self.result if pos == size else None
