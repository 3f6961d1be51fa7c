"""Every function of the module: results, return types, the uWSGI names and
aliases, and errors -- each error naming the function, the area and the cause,
and changing nothing in the area."""

from __future__ import annotations

import array
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import sharedarea
from sharedarea import _sharedarea

from conftest import run_python

PAGE = 4096

# ---------------------------------------------------------------- bytes


def test_write_then_read_round_trips_and_returns_bytes(new_area: Any) -> None:
    a = new_area()
    assert sharedarea.sharedarea_write(a, 0, b"hello world") is None
    assert sharedarea.sharedarea_read(a, 0, 11) == b"hello world"
    assert sharedarea.sharedarea_read(a, 6, 5) == b"world"
    assert type(sharedarea.sharedarea_read(a, 0, 1)) is bytes


def test_read_without_len_or_len_zero_reads_to_the_end(new_area: Any) -> None:
    a = new_area()
    assert len(sharedarea.sharedarea_read(a, 0)) == PAGE
    assert len(sharedarea.sharedarea_read(a, 4090)) == 6
    assert len(sharedarea.sharedarea_read(a, 4090, 0)) == 6


def test_read_stops_at_used_when_honoured(new_area: Any) -> None:
    a = new_area()
    sharedarea.set_used(a, 100)
    assert len(sharedarea.sharedarea_read(a, 10)) == 90
    assert len(sharedarea.sharedarea_read(a, 10, 200)) == 200  # an explicit len is not capped
    sharedarea.honour_used(a, False)
    assert len(sharedarea.sharedarea_read(a, 10)) == PAGE - 10
    assert sharedarea.info(a)["used"] == 100


def test_write_accepts_any_buffer_and_str_as_utf8(new_area: Any) -> None:
    a = new_area()
    sharedarea.sharedarea_write(a, 0, bytearray(b"ab"))
    sharedarea.sharedarea_write(a, 2, memoryview(b"xcdx")[1:3])
    sharedarea.sharedarea_write(a, 4, array.array("B", [101, 102]))
    sharedarea.sharedarea_write(a, 6, "\u263a")  # uWSGI writes a str's UTF-8 bytes
    assert sharedarea.sharedarea_read(a, 0, 9) == b"abcdef\xe2\x98\xba"


def test_empty_write_counts_an_update(new_area: Any) -> None:
    a = new_area()
    before = sharedarea.updates(a)
    sharedarea.sharedarea_write(a, PAGE, b"")
    assert sharedarea.updates(a) == before + 1


def test_readinto_fills_bytearray_memoryview_and_array_without_allocating(new_area: Any) -> None:
    a = new_area()
    sharedarea.sharedarea_write(a, 0, bytes(range(16)))
    buf = bytearray(8)
    assert sharedarea.sharedarea_readinto(a, 4, buf) == 8
    assert buf == bytes(range(4, 12))
    big = bytearray(b"\xff" * 20)
    view = memoryview(big)[5:9]
    assert sharedarea.sharedarea_readinto(a, 0, view) == 4
    assert big == b"\xff" * 5 + bytes(range(4)) + b"\xff" * 11
    arr = array.array("q", [0, 0])
    assert sharedarea.sharedarea_readinto(a, 0, arr) == 16
    assert arr.tobytes() == bytes(range(16))


def test_readinto_stops_at_the_end_of_the_area(new_area: Any) -> None:
    a = new_area()
    buf = bytearray(b"\x01" * 10)
    assert sharedarea.sharedarea_readinto(a, PAGE - 4, buf) == 4
    assert buf[4:] == b"\x01" * 6
    assert sharedarea.sharedarea_readinto(a, 0, bytearray()) == 0


def test_readinto_refuses_read_only_and_non_contiguous_buffers(new_area: Any) -> None:
    a = new_area()
    with pytest.raises(TypeError, match=r"sharedarea_readinto: area \d+: the buffer must be a writable"):
        sharedarea.sharedarea_readinto(a, 0, b"12345678")
    with pytest.raises(TypeError, match="writable"):
        sharedarea.sharedarea_readinto(a, 0, memoryview(bytearray(8))[::2])
    with pytest.raises(sharedarea.OutOfRangeError):
        sharedarea.sharedarea_readinto(a, PAGE, bytearray(1))


def test_readinto_fills_a_numpy_array_when_numpy_is_installed(new_area: Any) -> None:
    np = pytest.importorskip("numpy")
    a = new_area()
    sharedarea.sharedarea_write64(a, 0, 7)
    arr = np.zeros(2, dtype=np.int64)
    assert sharedarea.sharedarea_readinto(a, 0, arr) == 16
    assert arr[0] == 7


# ---------------------------------------------------------------- integers

WIDTHS = [(8, "8"), (16, "16"), (32, "32"), (64, "64")]


@pytest.mark.parametrize("bits,suffix", WIDTHS)
def test_integers_are_signed_native_and_unaligned(new_area: Any, bits: int, suffix: str) -> None:
    a = new_area()
    read = getattr(sharedarea, f"sharedarea_read{suffix}")
    write = getattr(sharedarea, f"sharedarea_write{suffix}")
    for pos in (0, 1, 3, PAGE - bits // 8):
        assert write(a, pos, -5) is None
        assert read(a, pos) == -5
        assert sharedarea.sharedarea_read(a, pos, bits // 8) == (-5).to_bytes(bits // 8, sys.byteorder, signed=True)
    top = 2 ** (bits - 1) - 1
    write(a, 0, top)
    assert read(a, 0) == top
    write(a, 0, 2**bits - 1)  # wider than signed: the low bits, as pack does
    assert read(a, 0) == -1
    write(a, 0, -(2**63))
    assert read(a, 0) == (-(2**63) if bits == 64 else 0)
    write(a, 0, 2**64 - 1)
    assert read(a, 0) == -1


@pytest.mark.parametrize("bits,suffix", WIDTHS)
def test_inc_and_dec_return_the_new_value_and_wrap(new_area: Any, bits: int, suffix: str) -> None:
    a = new_area()
    inc = getattr(sharedarea, f"sharedarea_inc{suffix}")
    dec = getattr(sharedarea, f"sharedarea_dec{suffix}")
    write = getattr(sharedarea, f"sharedarea_write{suffix}")
    write(a, 5, 10)
    assert inc(a, 5) == 11
    assert inc(a, 5, 5) == 16
    assert inc(a, 5, -3) == 13
    assert dec(a, 5) == 12
    assert dec(a, 5, 7) == 5
    write(a, 5, 2 ** (bits - 1) - 1)
    assert inc(a, 5) == -(2 ** (bits - 1))
    assert dec(a, 5) == 2 ** (bits - 1) - 1
    assert type(inc(a, 5, 0)) is int


def test_integer_ops_count_updates_and_reads_do_not(new_area: Any) -> None:
    a = new_area()
    u = sharedarea.updates(a)
    sharedarea.sharedarea_write32(a, 0, 1)
    sharedarea.sharedarea_inc64(a, 8)
    sharedarea.sharedarea_dec8(a, 0)
    sharedarea.sharedarea_update(a)
    sharedarea.sharedarea_read64(a, 0)
    sharedarea.sharedarea_read(a, 0, 8)
    assert sharedarea.updates(a) == u + 4


def test_an_exception_from_index_propagates_and_changes_nothing(new_area: Any) -> None:
    class Bad:
        def __index__(self) -> int:
            raise KeyError("from __index__")

    a = new_area()
    before = snapshot(a)
    for call in (lambda: sharedarea.sharedarea_read64(Bad(), 0), lambda: sharedarea.sharedarea_write64(a, Bad(), 1),
                 lambda: sharedarea.sharedarea_inc64(a, 0, Bad())):
        with pytest.raises(KeyError, match="from __index__"):
            call()
    assert snapshot(a) == before


def test_the_older_names_are_id_first_aliases(new_area: Any) -> None:
    a = new_area()
    assert sharedarea.sharedarea_writebyte(a, 3, 255) is None
    assert sharedarea.sharedarea_readbyte(a, 3) == -1 == sharedarea.sharedarea_read8(a, 3)
    assert sharedarea.sharedarea_writelong(a, 8, 41) is None
    assert sharedarea.sharedarea_inclong(a, 8) == 42
    assert sharedarea.sharedarea_inclong(a, 8, 8) == 50
    assert sharedarea.sharedarea_readlong(a, 8) == 50 == sharedarea.sharedarea_read64(a, 8)
    with pytest.raises(sharedarea.OutOfRangeError, match=r"^sharedarea_readlong: area \d+: "):
        sharedarea.sharedarea_readlong(a, PAGE - 4)


def test_index_objects_and_bools_are_integers(new_area: Any) -> None:
    class Idx:
        def __init__(self, v: int) -> None:
            self.v = v

        def __index__(self) -> int:
            return self.v

    a = new_area()
    sharedarea.sharedarea_write64(Idx(a), Idx(8), Idx(99))
    assert sharedarea.sharedarea_read64(a, 8) == 99
    assert sharedarea.sharedarea_inc64(a, Idx(8), Idx(1)) == 100
    assert sharedarea.sharedarea_read(a, True, Idx(2)) == sharedarea.sharedarea_read(a, 1, 2)


# ---------------------------------------------------------------- errors


def snapshot(a: int) -> tuple[bytes, int]:
    return bytes(sharedarea.sharedarea_memoryview(a)), sharedarea.updates(a)


def test_out_of_range_names_function_area_and_cause(new_area: Any) -> None:
    a = new_area()
    with pytest.raises(sharedarea.OutOfRangeError) as e:
        sharedarea.sharedarea_read(a, 4092, 16)
    assert str(e.value) == f"sharedarea_read: area {a}: 16 bytes at 4092 run past the end (4096 bytes)"
    assert e.value.function == "sharedarea_read"
    assert e.value.status == dict((n, c) for n, c, _ in _sharedarea._statuses())["OutOfRange"]
    assert isinstance(e.value, ValueError) and isinstance(e.value, IndexError)


def test_64_bit_inc_and_dec_check_eight_bytes(new_area: Any) -> None:
    a = new_area()
    before = snapshot(a)
    for pos in range(PAGE - 7, PAGE + 1):  # uWSGI accepts 4093..4096-4 here and writes past the end
        for f in (sharedarea.sharedarea_inc64, sharedarea.sharedarea_dec64):
            with pytest.raises(sharedarea.OutOfRangeError):
                f(a, pos)
    assert snapshot(a) == before


BAD_POSITIONS = [-1, -(2**63), 2**63, 2**64, 2**64 + 5, 2**200, -(2**200), 1.0, 0.5, None, "0", b"0", [0]]


@pytest.mark.parametrize("bad", BAD_POSITIONS, ids=repr)
def test_bad_positions_raise_and_change_nothing(new_area: Any, bad: Any) -> None:
    a = new_area()
    sharedarea.sharedarea_write(a, 0, b"keep")
    before = snapshot(a)
    calls = [
        lambda: sharedarea.sharedarea_read(a, bad, 1),
        lambda: sharedarea.sharedarea_read(a, 0, bad),
        lambda: sharedarea.sharedarea_readinto(a, bad, bytearray(1)),
        lambda: sharedarea.sharedarea_write(a, bad, b"x"),
        lambda: sharedarea.sharedarea_read64(a, bad),
        lambda: sharedarea.sharedarea_write8(a, bad, 1),
        lambda: sharedarea.sharedarea_inc32(a, bad),
        lambda: sharedarea.sharedarea_dec16(a, bad, 1),
        lambda: sharedarea.set_used(a, bad),
    ]
    for call in calls:
        with pytest.raises((TypeError, sharedarea.Error)) as e:
            call()
        msg = str(e.value)
        assert re.match(r"^(sharedarea_\w+|set_used): area \d+: ", msg), msg
        if isinstance(bad, int):
            assert isinstance(e.value, sharedarea.OutOfRangeError), msg
            assert ("negative" in msg) == (bad < 0), msg
        else:
            assert type(e.value) is TypeError, msg
            assert "must be an integer" in msg
    assert snapshot(a) == before


BAD_IDS = [-1, -(2**31), 2**31, 2**32 + 1, 2**64, 2**100, 10**6]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_ids_that_do_not_exist_are_never_truncated(new_area: Any, bad: int) -> None:
    a = new_area()
    before = snapshot(a)
    for f, args in [
        (sharedarea.sharedarea_read, (0, 1)),
        (sharedarea.sharedarea_write, (0, b"x")),
        (sharedarea.sharedarea_inc64, (0,)),
        (sharedarea.sharedarea_wait, (0, 1)),
        (sharedarea.sharedarea_rlock, ()),
        (sharedarea.sharedarea_unlock, ()),
        (sharedarea.sharedarea_memoryview, ()),
        (sharedarea.info, ()),
    ]:
        with pytest.raises(sharedarea.NoSuchAreaError, match=rf"^\w+: area {bad}: no such area \(areas are 0\.\.\d+\)$"):
            f(bad, *args)
    assert snapshot(a) == before


@pytest.mark.parametrize("bad", [1.0, None, "0", b"0"], ids=repr)
def test_ids_of_the_wrong_type_raise_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match=r"^sharedarea_read64: the area id must be an integer, not "):
        sharedarea.sharedarea_read64(bad, 0)


@pytest.mark.parametrize("bad", [2**64, -(2**63) - 1, 2**100], ids=repr)
def test_integer_values_outside_64_bits_overflow_and_change_nothing(new_area: Any, bad: int) -> None:
    a = new_area()
    before = snapshot(a)
    for f in (sharedarea.sharedarea_write64, sharedarea.sharedarea_write8, sharedarea.sharedarea_inc64, sharedarea.sharedarea_dec32):
        with pytest.raises(sharedarea.IntegerOverflowError, match=r"does not fit in 64 bits") as e:
            f(a, 0, bad)
        assert isinstance(e.value, OverflowError) and isinstance(e.value, ValueError)
    assert snapshot(a) == before


@pytest.mark.parametrize("bad", [1.5, None, "1", b"1"], ids=repr)
def test_integer_values_of_the_wrong_type_raise_type_error(new_area: Any, bad: Any) -> None:
    a = new_area()
    before = snapshot(a)
    with pytest.raises(TypeError, match=r"sharedarea_write64: area \d+: the value must be an integer"):
        sharedarea.sharedarea_write64(a, 0, bad)
    with pytest.raises(TypeError, match=r"sharedarea_inc64: area \d+: the amount must be an integer"):
        sharedarea.sharedarea_inc64(a, 0, bad)
    assert snapshot(a) == before


@pytest.mark.parametrize("bad", [None, 5, 1.5, ["x"]], ids=repr)
def test_write_data_of_the_wrong_type_raises_type_error(new_area: Any, bad: Any) -> None:
    a = new_area()
    before = snapshot(a)
    with pytest.raises(TypeError, match=r"sharedarea_write: area \d+: the data must be bytes, a buffer or str"):
        sharedarea.sharedarea_write(a, 0, bad)
    assert snapshot(a) == before


def test_write_of_a_str_that_is_not_utf8_raises(new_area: Any) -> None:
    a = new_area()
    before = snapshot(a)
    with pytest.raises(sharedarea.InvalidArgumentError, match="UTF-8"):
        sharedarea.sharedarea_write(a, 0, "\udc80")
    assert snapshot(a) == before


def test_huge_read_lengths_fail_before_allocating(new_area: Any) -> None:
    a = new_area()
    for n in (2**40, 2**63, 2**64 - 1):
        with pytest.raises(sharedarea.OutOfRangeError, match="run past the end"):
            sharedarea.sharedarea_read(a, 0, n)
    with pytest.raises(sharedarea.OutOfRangeError, match="past the end"):
        sharedarea.sharedarea_read(a, 1, 2**64 - 1)  # pos + len wraps 64 bits


def test_wrong_argument_counts_and_keywords_raise_type_error(new_area: Any) -> None:
    a = new_area()
    with pytest.raises(TypeError, match=r"sharedarea_read\(\) takes 2 to 3 positional arguments"):
        sharedarea.sharedarea_read(a)
    with pytest.raises(TypeError, match=r"takes 2 to 3"):
        sharedarea.sharedarea_inc64(a, 0, 1, 2)
    with pytest.raises(TypeError, match="keyword"):
        sharedarea.sharedarea_inc64(a, 0, amount=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"takes 1 positional"):
        sharedarea.sharedarea_update()  # type: ignore[call-arg]


# ---------------------------------------------------------------- locks


def test_lock_calls_nest_and_operations_work_under_the_lock(new_area: Any) -> None:
    a = new_area()
    assert sharedarea.sharedarea_wlock(a) is None
    sharedarea.sharedarea_wlock(a)
    assert sharedarea.sharedarea_inc64(a, 0) == 1
    assert sharedarea.sharedarea_read64(a, 0) == 1
    assert sharedarea.sharedarea_unlock(a) is None
    sharedarea.sharedarea_unlock(a)
    sharedarea.sharedarea_rlock(a)
    assert sharedarea.sharedarea_read64(a, 0) == 1
    with pytest.raises(sharedarea.LockMisuseError, match="read lock"):
        sharedarea.sharedarea_write64(a, 0, 5)
    with pytest.raises(sharedarea.LockMisuseError, match="upgraded"):
        sharedarea.sharedarea_wlock(a)
    sharedarea.sharedarea_unlock(a)
    assert sharedarea.sharedarea_read64(a, 0) == 1
    assert sharedarea._sharedarea._explicit_holds() == 0


def test_unlock_without_a_lock_raises_and_leaves_the_lock_working(new_area: Any) -> None:
    a = new_area()
    with pytest.raises(sharedarea.LockMisuseError, match=r"^sharedarea_unlock: area \d+: this thread does not hold"):
        sharedarea.sharedarea_unlock(a)
    sharedarea.sharedarea_write32(a, 0, 5)  # uWSGI hangs here after a stray unlock
    assert sharedarea.sharedarea_read32(a, 0) == 5
    assert sharedarea._sharedarea._explicit_holds() == 0


def test_wait_while_holding_the_lock_raises_instead_of_hanging(new_area: Any) -> None:
    a = new_area()
    sharedarea.sharedarea_wlock(a)
    try:
        with pytest.raises(sharedarea.LockMisuseError, match="unlock before waiting"):
            sharedarea.sharedarea_wait(a, 0, 5)
    finally:
        sharedarea.sharedarea_unlock(a)


# ---------------------------------------------------------------- wait arguments


def test_wait_times_out_with_a_timeout_error(new_area: Any) -> None:
    a = new_area()
    with pytest.raises(sharedarea.TimedOutError, match=rf"^sharedarea_wait: area {a}: timed out after 0.2 s$") as e:
        sharedarea.sharedarea_wait(a, 0, 0.2)
    assert isinstance(e.value, TimeoutError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("bad,cls,text", [
    (-1, sharedarea.InvalidArgumentError, "is negative"),
    (float("nan"), sharedarea.InvalidArgumentError, "NaN"),
    (float("inf"), sharedarea.InvalidArgumentError, "too large"),
    (None, TypeError, "must be a number"),
    ("1", TypeError, "must be a number"),
], ids=repr)
def test_bad_wait_arguments_raise_at_once(new_area: Any, bad: Any, cls: type, text: str) -> None:
    a = new_area()
    with pytest.raises(cls, match=text):
        sharedarea.sharedarea_wait(a, 0, bad)
    with pytest.raises(cls, match=text):
        sharedarea.sharedarea_wait(a, bad, 1)


# ---------------------------------------------------------------- memoryview, object


def test_memoryview_is_writable_zero_copy_and_the_area_length(new_area: Any) -> None:
    a = new_area("size=10000")
    mv = sharedarea.sharedarea_memoryview(a)
    assert len(mv) == 12288 and not mv.readonly and mv.format == "B" and mv.contiguous
    mv[100:105] = b"hello"
    assert sharedarea.sharedarea_read(a, 100, 5) == b"hello"
    sharedarea.sharedarea_write(a, 200, b"world")
    assert bytes(mv[200:205]) == b"world"
    mv2 = sharedarea.sharedarea_memoryview(a)
    mv2[0] = 65
    assert mv[0] == 65  # two views of the same pages


def test_memoryview_bypasses_the_update_counter(new_area: Any) -> None:
    a = new_area()
    u = sharedarea.updates(a)
    sharedarea.sharedarea_memoryview(a)[0:4] = b"abcd"
    assert sharedarea.updates(a) == u


def test_object_raises_a_clear_error(new_area: Any) -> None:
    a = new_area()
    with pytest.raises(sharedarea.InvalidArgumentError, match="sharedarea_memoryview"):
        sharedarea.sharedarea_object(a)
    with pytest.raises(sharedarea.NoSuchAreaError):
        sharedarea.sharedarea_object(10**6)


# ---------------------------------------------------------------- areas


def test_init_returns_consecutive_ids_and_info_describes_the_area(new_area: Any) -> None:
    a = sharedarea.init("pages=2")
    b = sharedarea.init("size=100")
    assert b == a + 1 == sharedarea.count() - 1
    i = sharedarea.info(a)
    assert i == {"size": 8192, "pages": 2, "page_size": PAGE, "updates": 0, "used": 0,
                 "honour_used": False, "recoveries": 0, "backing": "anonymous"}
    assert sharedarea.info(b)["size"] == PAGE


@pytest.mark.parametrize("spec", ["0", "pages=0", "size=abc", "bogus=1", "ptr=0x1234,size=4096", "", "pages=1,pages=2"])
def test_bad_specs_raise_invalid_spec_and_create_nothing(spec: str) -> None:
    n = sharedarea.count()
    with pytest.raises(sharedarea.InvalidSpecError, match=r"^init: "):
        sharedarea.init(spec)
    assert sharedarea.count() == n


def test_init_needs_a_str() -> None:
    with pytest.raises(TypeError, match="the spec must be a str"):
        sharedarea.init(b"1")  # type: ignore[arg-type]


def test_file_areas_map_the_file(tmp_path: Path) -> None:
    f = tmp_path / "area.bin"
    f.write_bytes(b"A" * 8192)
    a = sharedarea.init(f"file={f},size=100")
    assert sharedarea.info(a)["backing"] == "file" and sharedarea.info(a)["size"] == 100
    sharedarea.sharedarea_write(a, 0, b"hello")
    assert f.read_bytes()[:6] == b"helloA"


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(sharedarea.AreaOSError) as e:
        sharedarea.init(f"file={tmp_path}/missing,size=4096")
    assert isinstance(e.value, OSError)


# ---------------------------------------------------------------- the package


def test_every_core_status_has_its_exception_class() -> None:
    from sharedarea import _errors

    for name, code, text in _sharedarea._statuses():
        if code >= 0:
            continue
        cls = _errors._BY_KIND.get(name)
        assert cls is not None, f"no exception class for status {name} ({code}: {text})"
        assert issubclass(cls, sharedarea.Error)
        e = _errors._new(name, code, "f", "f: detail")
        assert type(e) is cls and e.status == code


def test_the_stub_lists_exactly_the_module_functions() -> None:
    stub = (Path(sharedarea.__file__).parent / "_sharedarea.pyi").read_text()
    stubbed = set(re.findall(r"^def (\w+)\(", stub, re.M))
    actual = {n for n in dir(_sharedarea) if callable(getattr(_sharedarea, n)) and not n.startswith("__")}
    assert stubbed == actual


def test_every_public_function_has_a_docstring_and_signature() -> None:
    for name in sharedarea.__all__:
        obj = getattr(sharedarea, name)
        assert obj.__doc__, name
        if name.startswith("sharedarea_"):
            inspect.signature(obj)
            assert obj.__doc__.strip() and obj.__name__ == name


def test_import_sharedarea_uwsgi_makes_import_uwsgi_work() -> None:
    r = run_python(
        "import sharedarea.uwsgi, uwsgi\n"
        "assert sharedarea.init('1') == 0\n"
        "uwsgi.sharedarea_inc64(0, 0); uwsgi.sharedarea_inclong(0, 0)\n"
        "print(uwsgi.sharedarea_readlong(0, 0), uwsgi.sharedarea_read64 is sharedarea.sharedarea_read64)\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "True"]


def test_install_uwsgi_names_changes_nothing_in_a_uwsgi_host() -> None:
    r = run_python(
        "import sys, types\n"
        "host = types.ModuleType('uwsgi'); host.sharedarea_read = lambda *a: 'real'\n"
        "sys.modules['uwsgi'] = host\n"
        "import sharedarea\n"
        "assert sharedarea.in_uwsgi_host() and sharedarea.count() == 0\n"
        "m = sharedarea.install_uwsgi_names()\n"
        "print(m is host, m.sharedarea_read(0, 0), hasattr(m, 'sharedarea_inc64'))\n",
        env={"UWSGI_SHAREDAREA": "4"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "real", "False"]


def test_uwsgi_sharedarea_creates_areas_at_import() -> None:
    r = run_python(
        "import sharedarea\n"
        "print(sharedarea.count(), sharedarea.info(0)['size'], sharedarea.info(1)['size'])\n",
        env={"UWSGI_SHAREDAREA": " 4 ; size=100;"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "16384", "4096"]


def test_a_bad_uwsgi_sharedarea_fails_the_import_naming_the_variable() -> None:
    r = run_python("import sharedarea\n", env={"UWSGI_SHAREDAREA": "4;pages=zero"})
    assert r.returncode != 0
    assert "InvalidSpecError: sharedarea: UWSGI_SHAREDAREA='4;pages=zero': init: " in r.stderr


def test_remove_removes_a_named_area_and_refuses_what_is_not_one(shm_name: str) -> None:
    a = sharedarea.init(f"name={shm_name},size=4096")
    sharedarea.sharedarea_write64(a, 0, 7)
    sharedarea.remove(shm_name)
    assert not Path(f"/dev/shm/{shm_name}").exists()
    assert sharedarea.sharedarea_read64(a, 0) == 7  # this process keeps its memory
    b = sharedarea.init(f"name={shm_name},size=4096")  # a new, empty area
    assert sharedarea.sharedarea_read64(b, 0) == 0
    sharedarea.remove("/" + shm_name)
    with pytest.raises(sharedarea.NoSuchAreaError, match=r"^remove: .*no area named"):
        sharedarea.remove(shm_name)
    Path(f"/dev/shm/{shm_name}").write_bytes(b"not an area" * 100)
    try:
        with pytest.raises(sharedarea.NotAnAreaError, match=r"^remove: "):
            sharedarea.remove(shm_name)
        assert Path(f"/dev/shm/{shm_name}").exists()
    finally:
        Path(f"/dev/shm/{shm_name}").unlink()
    with pytest.raises(TypeError, match="the name must be a str"):
        sharedarea.remove(None)  # type: ignore[arg-type]


def test_held_unlock_all_and_the_guards(new_area: Any) -> None:
    a = new_area()
    assert sharedarea.held(a) == 0
    with sharedarea.rlock_guard(a):
        assert sharedarea.held(a) == 1
        with sharedarea.rlock_guard(a, 1):
            assert sharedarea.held(a) == 1
    assert sharedarea.held(a) == 0
    with pytest.raises(ZeroDivisionError):
        with sharedarea.wlock_guard(a, 0.5):
            assert sharedarea.held(a) == 2
            sharedarea.sharedarea_inc64(a, 0)
            1 / 0
    assert sharedarea.held(a) == 0 and sharedarea.sharedarea_read64(a, 0) == 1
    sharedarea.sharedarea_wlock(a)
    sharedarea.sharedarea_wlock(a, None)
    sharedarea.sharedarea_wlock(a, 0)
    assert sharedarea.unlock_all(a) == 3
    assert sharedarea.unlock_all(a) == 0
    assert sharedarea.held(a) == 0 and sharedarea._sharedarea._explicit_holds() == 0


@pytest.mark.parametrize("bad,cls", [(-1, sharedarea.InvalidArgumentError), (float("nan"), sharedarea.InvalidArgumentError),
                                     ("1", TypeError)], ids=repr)
def test_bad_lock_timeouts_raise_holding_nothing(new_area: Any, bad: Any, cls: type) -> None:
    a = new_area()
    for f in (sharedarea.sharedarea_rlock, sharedarea.sharedarea_wlock):
        with pytest.raises(cls, match=rf"^{f.__name__}: area {a}: "):
            f(a, bad)
    assert sharedarea.held(a) == 0 and sharedarea._sharedarea._explicit_holds() == 0


def test_the_package_has_the_core_s_version() -> None:
    from conftest import ROOT

    core = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    assert core is not None and sharedarea.__version__ == core.group(1)
