"""How the ranks of a torch.distributed ``segment`` agree, on one process: column plans
widened across ranks, and statistics merged into the whole table's.

Each rank's all_gather is stood in for by the list of every rank's values (pickled, as
``all_gather_object`` sends them); the processes themselves run in
tests/cli/test_cli_torchrun.py.
"""

import gc
import pickle
import weakref

import numpy as np
import pyarrow as pa
import pytest

from gpukmeans.segmentation import numbers, tables
from gpukmeans.segmentation.errors import InputError
from gpukmeans.segmentation.ranks import Ranks, _wider, agree_on_plans, merge_statistics
from gpukmeans.segmentation.statistics import TableStatistics
from gpukmeans.segmentation.tables import (
    NUMBER,
    OTHER,
    RAW,
    TEXT,
    TEXT_NUMBER,
    Batch,
    ColumnPlan,
    TableReader,
    read_pass,
)


class GatheredRanks:
    """Rank ``rank`` of a run whose every rank's value for the one all_gather is known."""

    def __init__(self, rank: int, every_rank: list):
        self.rank, self.world = rank, len(every_rank)
        self._every_rank = every_rank

    def all_gather(self, value):
        assert value is self._every_rank[self.rank], "a rank hands in its own value"
        return pickle.loads(pickle.dumps(self._every_rank))


def _styles(*cells):
    return numbers.NumberCells.of(pa.array(list(cells))).styles()


# ---------------------------------------------------------------- plans


@pytest.mark.parametrize("a, b, wider", [
    (NUMBER, TEXT_NUMBER, TEXT_NUMBER),
    (NUMBER, TEXT, TEXT),
    (TEXT_NUMBER, TEXT, TEXT),
    (NUMBER, NUMBER, NUMBER),
    (TEXT, TEXT, TEXT),
])
def test_the_wider_kind_wins_whichever_rank_has_it(a, b, wider):
    assert _wider(ColumnPlan("x", a), ColumnPlan("x", b)).kind == wider
    assert _wider(ColumnPlan("x", b), ColumnPlan("x", a)).kind == wider


def test_plans_that_are_not_read_as_numbers_or_text_are_kept():
    assert _wider(ColumnPlan("id", RAW), ColumnPlan("id", TEXT)).kind == RAW
    assert _wider(ColumnPlan("day", OTHER), ColumnPlan("day", NUMBER)).kind == OTHER


def test_number_styles_of_two_ranks_merge_or_make_the_column_text():
    ambiguous, comma = _styles("1.250", "7"), _styles("3,5")
    merged = _wider(ColumnPlan("x", TEXT_NUMBER, ambiguous), ColumnPlan("x", TEXT_NUMBER, comma))
    assert merged.kind == TEXT_NUMBER and merged.styles == ambiguous.merge(comma)
    assert merged.styles.choose(".,").decimal == ","
    # "2.5" has no thousands reading: with "3,5" the column holds no numbers in one format.
    assert _wider(ColumnPlan("x", TEXT_NUMBER, _styles("2.5")), ColumnPlan("x", TEXT_NUMBER, comma)).kind == TEXT

    disagree = _wider(ColumnPlan("x", TEXT_NUMBER, _styles("$5")), ColumnPlan("x", TEXT_NUMBER, _styles("5 €")))
    assert disagree == ColumnPlan("x", TEXT, None)
    # A rank that saw no cell of the column yet takes the other's styles.
    assert _wider(ColumnPlan("x", TEXT_NUMBER, None), ColumnPlan("x", TEXT_NUMBER, comma)).styles == comma


def _agreed(every_rank: list[dict]) -> list:
    return [agree_on_plans(GatheredRanks(rank, every_rank), plans) for rank, plans in enumerate(every_rank)]


def test_ranks_that_read_alike_keep_their_pass():
    every_rank = [{"a": ColumnPlan("a", NUMBER), "b": ColumnPlan("b", TEXT)} for _ in range(3)]
    assert _agreed(every_rank) == [None, None, None]


def test_ranks_that_read_differently_all_get_the_widest_plans():
    every_rank = [
        {"a": ColumnPlan("a", NUMBER), "b": ColumnPlan("b", TEXT_NUMBER, _styles("1"))},
        {"a": ColumnPlan("a", TEXT_NUMBER, _styles("2")), "b": ColumnPlan("b", TEXT_NUMBER, _styles("x"))},
        {"a": ColumnPlan("a", NUMBER), "b": ColumnPlan("b", TEXT)},
    ]
    agreed = _agreed(every_rank)
    assert agreed[0] == agreed[1] == agreed[2]
    assert agreed[0]["a"] == ColumnPlan("a", TEXT_NUMBER, _styles("2")) and agreed[0]["b"].kind == TEXT
    assert every_rank[0]["a"].kind == NUMBER  # each rank's own plans are left to it to adopt


# ---------------------------------------------------------------- a file read by several ranks


def _read(reader, columns, part=None):
    return read_pass(reader, columns, list, lambda state, batch: state.append(batch), part=part)


def _values(batches, name):
    """Position -> value of a column over batches (numbers, or text)."""
    values = {}
    for batch in batches:
        column = batch.numbers[name] if name in batch.numbers else batch.texts[name].to_pylist()
        values.update(zip(range(batch.start, batch.start + batch.n_rows), list(column)))
    return values


def _read_by_ranks(path, columns, n_ranks):
    """What learn_table does on every rank: read this rank's share, agree, adopt the widest
    plans and read again until every rank reads alike; the ranks' batches at the end and
    the rounds it took."""
    readers = [TableReader.open(path) for _ in range(n_ranks)]
    for rounds in range(1, 6):
        shares = [_read(reader, columns, part=(rank, n_ranks)) for rank, reader in enumerate(readers)]
        agreed = _agreed([reader.plans for reader in readers])
        if all(plans is None for plans in agreed):
            return readers, shares, rounds
        for reader, plans in zip(readers, agreed):
            reader.adopt_plans(plans)
    raise AssertionError("the ranks never agreed")


def _same_as_one_reader(path, column, n_ranks):
    readers, shares, rounds = _read_by_ranks(path, [column], n_ranks)
    assert rounds > 1  # one rank's rows read differently at first
    alone = TableReader.open(path)
    expected = _values(_read(alone, [column]), column)
    got = {}
    for batches in shares:
        values = _values(batches, column)
        assert not set(values) & set(got), "a row read by two ranks"
        got.update(values)
    assert sorted(got) == list(range(len(expected)))
    np.testing.assert_array_equal(np.array([got[p] for p in sorted(got)], dtype=object),
                                  np.array([expected[p] for p in sorted(expected)], dtype=object))
    assert all(reader.plans[column].kind == alone.plans[column].kind for reader in readers)
    return alone.plans[column]


@pytest.mark.parametrize("n_ranks", [2, 3])
def test_a_word_in_one_ranks_blocks_makes_the_column_text_on_every_rank(tmp_path, monkeypatch, n_ranks):
    monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", 64)
    monkeypatch.setattr(tables, "CSV_MIN_BLOCK_BYTES", 64)
    cells = [str(i) for i in range(80)]
    cells[70] = "unknown"
    path = tmp_path / "t.csv"
    path.write_text("id,spend\n" + "".join(f"{i},{c}\n" for i, c in enumerate(cells)))
    assert _same_as_one_reader(path, "spend", n_ranks).kind == TEXT


@pytest.mark.parametrize("n_ranks", [2, 3])
def test_a_decimal_comma_in_one_ranks_blocks_is_read_by_every_rank(tmp_path, monkeypatch, n_ranks):
    monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", 4096)
    monkeypatch.setattr(tables, "CSV_MIN_BLOCK_BYTES", 4096)
    cells = [f"{i % 9 + 1}.250" for i in range(8000)]
    cells[7990] = "3,5"  # beyond the 64 KiB the layout is detected from
    path = tmp_path / "t.csv"
    path.write_text("id;amount\n" + "".join(f"{i};{c}\n" for i, c in enumerate(cells)))
    plan = _same_as_one_reader(path, "amount", n_ranks)
    assert plan.kind == TEXT_NUMBER and plan.styles.choose(".,").decimal == ","


# ---------------------------------------------------------------- statistics


def _table(n=2400, seed=4):
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 30.0, n)
    spend[rng.random(n) < 0.05] = np.nan
    city = np.array(["Lyon", "Nice", None], dtype=object)[rng.choice(3, n, p=[0.6, 0.35, 0.05])]
    return spend, city


def _statistics(spend, city, start, stop, batch_rows=100) -> TableStatistics:
    stats = TableStatistics(categorical=["city"], drop_missing=True, sample_rows=150)
    for a in range(start, stop, batch_rows):
        b = min(a + batch_rows, stop)
        stats.add(Batch(a, b - a, numbers={"spend": spend[a:b]}, texts={"city": pa.array(city[a:b], pa.string())}))
    return stats


@pytest.mark.parametrize("n_ranks", [2, 4])
def test_merged_statistics_are_the_whole_tables_on_every_rank(n_ranks):
    spend, city = _table()
    whole = _statistics(spend, city, 0, spend.size)
    bounds = np.linspace(0, spend.size, n_ranks + 1).astype(int) // 100 * 100
    every_rank = [_statistics(spend, city, a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    for rank in range(n_ranks):
        merged = merge_statistics(GatheredRanks(rank, every_rank), every_rank[rank], "t.csv")
        assert merged.kept_by_rank == [s.n_kept for s in every_rank]
        assert (merged.n_rows, merged.n_kept) == (whole.n_rows, whole.n_kept)
        got, expected = merged.numbers["spend"], whole.numbers["spend"]
        assert (got.missing, got.kept_missing, got.count, got.low, got.high) == (
            expected.missing, expected.kept_missing, expected.count, expected.low, expected.high)
        assert got.moments.count == expected.moments.count
        assert got.moments.mean == pytest.approx(expected.moments.mean, rel=1e-13)
        assert got.moments.m2 == pytest.approx(expected.moments.m2, rel=1e-12)
        assert merged.texts["city"].levels == whole.texts["city"].levels
        assert merged.texts["city"].missing == whole.texts["city"].missing
        np.testing.assert_array_equal(merged.sample.rows().positions, whole.sample.rows().positions)
        assert merged.sample.seen == spend.size


def test_a_rank_without_rows_is_named_on_every_rank():
    spend, city = _table(n=300)
    every_rank = [_statistics(spend, city, 0, 300), _statistics(spend, city, 300, 300)]
    for rank in range(2):
        with pytest.raises(InputError, match=r"t\.csv splits into too few batches for 2 ranks: rank 1 gets no rows"):
            merge_statistics(GatheredRanks(rank, every_rank), every_rank[rank], "t.csv")


# ---------------------------------------------------------------- failing together


class RankOfTwo(Ranks):
    """Rank ``rank`` of two whose all_gather hears ``other`` from the other rank."""

    def __init__(self, rank: int, other):
        super().__init__(rank, 2, group=None)
        self._other = other

    def all_gather(self, value):
        return [value, self._other] if self.rank == 0 else [self._other, value]


def _fails():
    raise InputError("t.csv: column 'spend' holds text in data row 3.")


def test_a_step_that_fails_on_one_rank_raises_on_every_rank():
    assert RankOfTwo(0, None).together(lambda: 42) == 42
    with pytest.raises(InputError, match="^t.csv: column 'spend' holds text in data row 3.$"):
        RankOfTwo(1, None).together(_fails)
    with pytest.raises(InputError, match="^rank 1 of 2 could not go on; see its message$"):
        RankOfTwo(0, "t.csv: column 'spend' holds text in data row 3.").together(lambda: 42)


def test_a_failed_step_leaves_no_cycle_that_keeps_the_ranks_alive():
    # The error's traceback holds the step's frame: were that frame to hold the error too,
    # the two would keep the ranks (and their process group) alive past
    # destroy_process_group, until the collector runs, and gloo aborts the exit.
    ranks = RankOfTwo(1, None)
    freed = weakref.ref(ranks)
    gc.disable()
    try:
        try:
            ranks.together(_fails)
        except InputError as error:
            assert "holds text" in str(error)
        del ranks
        assert freed() is None
    finally:
        gc.enable()
