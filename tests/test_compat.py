"""fastfeed.compat against Keras: its documented examples, a line-for-line copy of its
algorithms (fastfeed.reference, independent of compat and of the core), and tf_keras itself
where it is installed."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from fastfeed.compat import TimeseriesGenerator, pad_sequences
from fastfeed.reference import KerasTimeseriesGenerator, keras_pad_sequences

# ----- helpers ---------------------------------------------------------------------------


def outcome(fn, *args, **kwargs):
    """What a call gives: its value, or its exception's type and message."""
    try:
        return "ok", fn(*args, **kwargs)
    except Exception as e:
        return "raised", (type(e), str(e))


def assert_same_array(ours, theirs):
    assert type(ours) is type(theirs) is np.ndarray
    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape
    if ours.size:
        assert ours.strides == theirs.strides  # reverse=True gives the same reversed view
    np.testing.assert_array_equal(ours, theirs)


def assert_same_outcome(ours, theirs, where=""):
    assert ours[0] == theirs[0], (where, ours, theirs)
    if ours[0] == "raised":
        assert ours[1] == theirs[1], where
    elif isinstance(theirs[1], tuple):  # a batch
        assert isinstance(ours[1], tuple) and len(ours[1]) == len(theirs[1]) == 2
        for a, b in zip(ours[1], theirs[1]):
            assert_same_array(a, b)
    elif isinstance(theirs[1], np.ndarray):
        assert_same_array(ours[1], theirs[1])
    else:
        assert type(ours[1]) is type(theirs[1]) and ours[1] == theirs[1]


def assert_same_generators(ours, theirs, indices=None, seed=0):
    """Same len() and same batches at `indices` (default: one epoch and two past its end),
    drawing the same random numbers when shuffling."""
    assert_same_outcome(outcome(len, ours), outcome(len, theirs))
    if indices is None:
        indices = range(len(theirs) + 2)
    # Keras shuffles with NumPy's legacy global generator, so the comparison must seed that one.
    np.random.seed(seed)  # noqa: NPY002
    ours_batches = [outcome(ours.__getitem__, i) for i in indices]
    ours_state = np.random.get_state()[1].copy()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    theirs_batches = [outcome(theirs.__getitem__, i) for i in indices]
    for i, a, b in zip(indices, ours_batches, theirs_batches):
        assert_same_outcome(a, b, f"index {i!r}")
    np.testing.assert_array_equal(ours_state, np.random.get_state()[1])  # noqa: NPY002


def make_both(cls_theirs, *args, **kwargs):
    ours = outcome(TimeseriesGenerator, *args, **kwargs)
    theirs = outcome(cls_theirs, *args, **kwargs)
    assert ours[0] == theirs[0]
    if ours[0] == "raised":
        assert ours[1] == theirs[1]
        return None
    return ours[1], theirs[1]


# ----- Keras' documented examples -------------------------------------------------------


def test_timeseries_generator_doc_example():
    data = np.array([[i] for i in range(50)])
    targets = np.array([[i] for i in range(50)])
    g = TimeseriesGenerator(data, targets, length=10, sampling_rate=2, batch_size=2)
    assert len(g) == 20
    x, y = g[0]
    np.testing.assert_array_equal(x, np.array([[[0], [2], [4], [6], [8]], [[1], [3], [5], [7], [9]]]))
    np.testing.assert_array_equal(y, np.array([[10], [11]]))
    assert x.dtype == data.dtype and y.dtype == targets.dtype


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, [[0, 0, 1], [0, 2, 3], [4, 5, 6]]),
        ({"value": -1}, [[-1, -1, 1], [-1, 2, 3], [4, 5, 6]]),
        ({"padding": "post"}, [[1, 0, 0], [2, 3, 0], [4, 5, 6]]),
        ({"maxlen": 2}, [[0, 1], [2, 3], [5, 6]]),
    ],
)
def test_pad_sequences_doc_examples(kwargs, expected):
    out = pad_sequences([[1], [2, 3], [4, 5, 6]], **kwargs)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, np.array(expected, dtype=np.int32))


# ----- TimeseriesGenerator ---------------------------------------------------------------

CORE_DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
]
# Not read by the core: these take Keras' own path and must still match.
OTHER_DTYPES = ["complex64", ">f8", "object", "U3"]


def make_array(rng, shape, dtype):
    v = rng.integers(0, 100, size=shape)
    if dtype == "bool":
        return v > 50
    if dtype == "object":
        return v.astype(object)
    return v.astype(dtype)


@st.composite
def generator_args(draw):
    """Mostly what the core serves; one time in four, anything (Keras' own path then)."""
    anything = draw(st.integers(0, 3)) == 0
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 50))
    feat = draw(st.sampled_from([(), (1,), (3,), (2, 2), (0,)]))
    dtypes = st.sampled_from(CORE_DTYPES + OTHER_DTYPES if anything else CORE_DTYPES)
    data = make_array(rng, (n, *feat), draw(dtypes))
    targets = make_array(rng, (n, *draw(st.sampled_from([(), (1,), (2,)]))), draw(dtypes))
    layout = draw(st.sampled_from(["c", "c", "c", "strided", "fortran", "list"]))
    if layout == "strided":  # every other row of a bigger array
        data = np.repeat(data, 2, axis=0)[::2]
    elif layout == "fortran":
        data = np.asfortranarray(data)
    elif layout == "list" and data.dtype != object:
        data = data.tolist()
    kwargs = dict(
        length=draw(st.integers(-2, 12) if anything else st.integers(1, 12)),
        sampling_rate=draw(st.integers(-1, 4) if anything else st.integers(1, 4)),
        stride=draw(st.integers(1, 4)),
        start_index=draw(st.integers(-4, 6) if anything else st.integers(0, 6)),
        end_index=draw(
            st.none() | st.integers(-1, n + 2) if anything else st.none() | st.integers(max(0, n - 8), n - 1)
        ),
        shuffle=draw(st.booleans()),
        reverse=draw(st.booleans()),
        batch_size=draw(st.integers(1, 9)),
    )
    return data, targets, kwargs


@settings(max_examples=250)
@given(generator_args(), st.integers(0, 2**31))
def test_timeseries_generator_matches_keras_algorithm(args, seed):
    data, targets, kwargs = args
    both = make_both(KerasTimeseriesGenerator, data, targets, **kwargs)
    # --hypothesis-show-statistics tells how often the core (not Keras' own path) ran
    event("refused" if both is None else f"core: {both[0]._plan() is not False}")
    if both is not None:
        ours, theirs = both
        n = len(theirs)
        assert_same_generators(ours, theirs, list(range(-2, n + 2)), seed)
        # in-order reading (served from read-ahead blocks), twice, then out of order
        assert_same_generators(ours, theirs, list(range(n)) * 2 + [n - 1, 0, n - 1, 1], seed)


@pytest.mark.parametrize(
    "data",
    [
        [[i] for i in range(30)],  # ints: int64
        [float(i) for i in range(30)],  # floats
        [i if i != 17 else 17.5 for i in range(30)],  # mostly ints: Keras' batches vary in dtype
        [np.float32(i) for i in range(30)],
        [np.float32(i) if i % 7 else float(i) for i in range(30)],
        [[i, 2.5] if i % 3 else [i, 2] for i in range(30)],
        [2**63 if i == 20 else i for i in range(30)],  # uint64 only in batches holding row 20
        [np.arange(i, i + 2, dtype=np.int16) for i in range(30)],
        [str(i) for i in range(30)],
        [[1] * (i % 3) for i in range(30)],  # ragged windows
        tuple(range(30)),
    ],
)
@pytest.mark.parametrize("batch_size", [1, 4])
def test_timeseries_generator_lists_match_keras_algorithm(data, batch_size):
    targets = [(i, i + 0.5) for i in range(30)]
    ours, theirs = make_both(KerasTimeseriesGenerator, data, targets, length=3, batch_size=batch_size)
    assert_same_generators(ours, theirs)
    ours, theirs = make_both(
        KerasTimeseriesGenerator, data, list(range(30)), length=4, sampling_rate=2, batch_size=batch_size, reverse=True
    )
    assert_same_generators(ours, theirs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"end_index": 29},
        {"end_index": 30},
        {"end_index": 31},
        {"end_index": 33},
        {"start_index": -1},
        {"start_index": -5},
        {"start_index": -9, "end_index": 12},
        {"length": 0},
        {"length": -2},
        {"sampling_rate": 0},
        {"sampling_rate": -1},
        {"sampling_rate": 7},
        {"stride": 0},
        {"batch_size": 0},
        {"batch_size": 200},
        {"length": 3.0},
        {"end_index": 20.0},
        {"length": np.int32(4), "stride": np.int64(2)},
        {"length": True},
        {"shuffle": 1},
        {"reverse": np.bool_(True)},
    ],
)
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # stride=0, in Keras too
def test_timeseries_generator_edge_configurations_match_keras_algorithm(kwargs, shuffle):
    data = np.arange(60.0).reshape(30, 2)
    kwargs = {"length": 5, "batch_size": 4, "shuffle": shuffle, **kwargs}
    both = make_both(KerasTimeseriesGenerator, data, np.arange(30), **kwargs)
    if both is not None:
        indices = [-1, 0, 1, 2, 7, 8, 9, np.int64(1), 1.0, True, slice(0, 2), "a"]
        assert_same_generators(*both, indices)


def test_timeseries_generator_memmap_matches_keras_algorithm(tmp_path):
    data = np.lib.format.open_memmap(tmp_path / "d.npy", mode="w+", dtype="f4", shape=(30, 2))
    data[:] = np.arange(60).reshape(30, 2)
    for shuffle in (False, True):
        kwargs = dict(length=4, batch_size=3, shuffle=shuffle)
        assert_same_generators(
            TimeseriesGenerator(data, data, **kwargs), KerasTimeseriesGenerator(data, data, **kwargs)
        )


def test_timeseries_generator_errors():
    with pytest.raises(ValueError, match="Data length is 5 while target length is 4"):
        TimeseriesGenerator(np.zeros(5), np.zeros(4), length=1)
    with pytest.raises(ValueError, match=r"`start_index\+length=12 > end_index=9`"):
        TimeseriesGenerator(np.zeros(10), np.zeros(10), length=10, start_index=2)
    g = TimeseriesGenerator(np.zeros(10), np.zeros(10), length=9)  # end_index inclusive
    assert len(g) == 1 and g[0][0].shape == (1, 9)


def test_timeseries_generator_past_the_end_is_empty_and_reverse_fails_there():
    data = np.arange(20.0)
    x, y = TimeseriesGenerator(data, data, length=5, batch_size=4)[10]
    assert x.shape == y.shape == (0,) and x.dtype == y.dtype == np.float64
    with pytest.raises(IndexError):  # Keras indexes [:, ::-1] of a 1-D empty array
        TimeseriesGenerator(data, data, length=5, batch_size=4, reverse=True)[10]


def test_timeseries_generator_attributes_and_changes_after_construction():
    data = np.arange(40.0).reshape(20, 2)
    targets = np.arange(20)
    ours = TimeseriesGenerator(data, targets, length=3, start_index=2, batch_size=4)
    theirs = KerasTimeseriesGenerator(data, targets, length=3, start_index=2, batch_size=4)
    assert (ours.start_index, ours.end_index) == (5, 19)
    assert_same_generators(ours, theirs)
    for name, value in [
        ("batch_size", 3),
        ("reverse", True),
        ("stride", 2),
        ("end_index", 12),
        ("shuffle", True),
        ("data", data[:, :1].copy()),
    ]:
        setattr(ours, name, value)
        setattr(theirs, name, value)
        assert_same_generators(ours, theirs)


def test_timeseries_generator_iterates_like_a_keras_sequence():
    data = np.arange(30.0)
    g = TimeseriesGenerator(data, data, length=4, stride=2, batch_size=3)
    batches = list(g)
    assert len(batches) == len(g) == 5
    for i, (x, y) in enumerate(batches):
        ex, ey = KerasTimeseriesGenerator(data, data, length=4, stride=2, batch_size=3)[i]
        assert_same_array(x, ex)
        assert_same_array(y, ey)


def test_timeseries_generator_batches_are_independent_and_see_the_data():
    data = np.arange(100.0)
    g = TimeseriesGenerator(data, data, length=5, batch_size=2)
    batches = list(g)
    for i, j in [(0, 1), (3, 4), (10, 11)]:
        assert not np.shares_memory(batches[i][0], batches[j][0])
        assert not np.shares_memory(batches[i][1], batches[j][1])
    assert not np.shares_memory(batches[0][0], data)
    batches[1][0][:] = -1  # writing into a batch changes neither the data nor other batches
    np.testing.assert_array_equal(g[1][0], [[2, 3, 4, 5, 6], [3, 4, 5, 6, 7]])
    data[2] = 99  # the array is read in place, as Keras reads it (outside read-ahead blocks)
    assert g[1][0][0, 0] == 99


def test_timeseries_generator_threads_and_pickle():
    data = np.random.default_rng(0).normal(size=(500, 3))
    targets = data[:, 0].copy()
    ours = TimeseriesGenerator(data, targets, length=7, sampling_rate=2, batch_size=3)
    theirs = KerasTimeseriesGenerator(data, targets, length=7, sampling_rate=2, batch_size=3)
    order = list(range(len(ours))) * 3
    with ThreadPoolExecutor(4) as pool:  # Keras' thread enqueuer calls [i] concurrently
        got = list(pool.map(ours.__getitem__, order))
    for i, (x, y) in zip(order, got):
        ex, ey = theirs[i]
        assert_same_array(x, ex)
        assert_same_array(y, ey)
    pickled = pickle.dumps(ours)  # what Keras pickles: no read-ahead blocks, no copies
    assert len(pickled) < 1.05 * len(pickle.dumps((data, targets)))
    assert_same_generators(pickle.loads(pickled), theirs)


def test_timeseries_generator_config_like_keras():
    data = np.arange(6.0)
    g = TimeseriesGenerator(data, data.tolist(), length=2, batch_size=1)
    config = g.get_config()
    assert config["data"] == "[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]"
    assert config["start_index"] == 2 and config["end_index"] == 5
    assert '"class_name": "TimeseriesGenerator"' in g.to_json()


# ----- pad_sequences ---------------------------------------------------------------------


@st.composite
def pad_args(draw):
    feat = draw(st.sampled_from([(), (2,)]))
    kind = draw(st.sampled_from(["lists", "arrays", "floats"]))
    sequences = []
    for _ in range(draw(st.integers(0, 6))):
        n = draw(st.integers(0, 6))
        seq = np.arange(n * int(np.prod(feat))).reshape((n, *feat)) + draw(st.integers(-3, 50))
        if kind == "floats":
            seq = seq + 0.5
        sequences.append(seq if kind == "arrays" else seq.tolist())
    if feat and sequences and draw(st.integers(0, 9)) == 0:
        sequences.append(np.zeros((2, 3)))  # a step shape that differs
    kwargs = dict(
        maxlen=draw(st.none() | st.integers(0, 7)),
        dtype=draw(st.sampled_from(["int32", "float32", "int64", "uint8", object, "object", "U4", np.float64])),
        padding=draw(st.sampled_from(["pre", "post", "middle"])),
        truncating=draw(st.sampled_from(["pre", "post", "both"])),
        value=draw(st.sampled_from([0.0, -1, 2.5, "x"])),
    )
    return sequences, {k: v for k, v in kwargs.items() if draw(st.integers(0, 3))}


@settings(max_examples=300)
@given(pad_args())
def test_pad_sequences_matches_keras_algorithm(args):
    sequences, kwargs = args
    assert_same_outcome(outcome(pad_sequences, sequences, **kwargs), outcome(keras_pad_sequences, sequences, **kwargs))


@pytest.mark.parametrize(
    "sequences, kwargs",
    [
        ([], {}),  # no sequences: np.max of nothing raises
        ([], {"maxlen": 3}),
        ([[], []], {}),
        ([[], [1, 2]], {"padding": "bad"}),
        ([[], []], {"padding": "bad", "maxlen": 2}),  # never checked without a non-empty sequence
        ([[1, 2, 3]], {"maxlen": 0}),  # s[-0:] keeps everything, then fails
        (5, {}),
        ([1, 2], {}),
        ([["a", "bc"], ["def"]], {"dtype": object, "value": "?"}),
        ([["a", "bc"], ["def"]], {"dtype": "object", "value": "?"}),
        ([["a", "bc"], ["def"]], {"dtype": "<U3", "value": "?"}),
        ([np.ones((2, 3)), np.ones((1, 3))], {"dtype": "float32"}),
        ([np.ones((2, 3)), np.ones((1, 2))], {}),
        ((range(3), range(5)), {"truncating": "post", "maxlen": 4}),
        ([[1, 2]], {"dtype": "no such dtype"}),
        ([[1, 2]], {"dtype": "no such dtype", "value": "x"}),
        ([[1, 2]], {"dtype": None}),
        ([[1, 2]], {"dtype": None, "value": "x"}),
        ([[1.5, 2]], {"dtype": "float32", "value": np.nan}),
        ([[1, 2], [3]], {"dtype": "bool"}),
        ([[[1, 2], [3, 4]], [[5, 6]]], {"maxlen": 3, "padding": "post"}),
    ],
)
def test_pad_sequences_edges_match_keras_algorithm(sequences, kwargs):
    ours = outcome(pad_sequences, sequences, **kwargs)
    assert_same_outcome(ours, outcome(keras_pad_sequences, sequences, **kwargs))


# ----- tf_keras itself, where installed ----------------------------------------------------


@pytest.fixture(scope="module")
def tf_keras_api():
    pytest.importorskip("tf_keras")
    from tf_keras.preprocessing.sequence import TimeseriesGenerator as TfTimeseriesGenerator
    from tf_keras.utils import pad_sequences as tf_pad_sequences

    return TfTimeseriesGenerator, tf_pad_sequences


def test_tf_keras_doc_example(tf_keras_api):
    tf_generator, _ = tf_keras_api
    data = np.array([[i] for i in range(50)])
    ours, theirs = make_both(tf_generator, data, data.copy(), length=10, sampling_rate=2, batch_size=2)
    assert len(theirs) == 20
    assert_same_generators(ours, theirs)


@settings(max_examples=60)
@given(generator_args(), st.integers(0, 2**31))
def test_tf_keras_timeseries_generator(tf_keras_api, args, seed):
    data, targets, kwargs = args
    both = make_both(tf_keras_api[0], data, targets, **kwargs)
    if both is not None:
        n = len(both[1])
        assert_same_generators(*both, list(range(-2, n + 2)) + list(range(n)), seed)


@settings(max_examples=100)
@given(pad_args())
def test_tf_keras_pad_sequences(tf_keras_api, args):
    sequences, kwargs = args
    assert_same_outcome(outcome(pad_sequences, sequences, **kwargs), outcome(tf_keras_api[1], sequences, **kwargs))
