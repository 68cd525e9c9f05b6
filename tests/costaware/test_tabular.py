import csv
import io

import numpy as np
import pytest

from costaware.tabular import TabularError, data_line_numbers, parse_numeric_csv, take_text_column


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture
def random_table(rng):
    return rng.normal(scale=100, size=(50, 6))


@pytest.fixture
def random_csv(random_table):
    return "\n".join(",".join(repr(float(v)) for v in row) for row in random_table) + "\n"


def test_round_trips_a_random_table(random_csv, random_table):
    names, values = parse_numeric_csv(random_csv, source="t.csv")
    assert names is None
    assert values.dtype == np.float64
    np.testing.assert_array_equal(values, random_table)


def test_agrees_with_the_csv_module(random_csv):
    oracle = np.array([[float(c) for c in row] for row in csv.reader(io.StringIO(random_csv))])
    _, values = parse_numeric_csv(random_csv, source="t.csv")
    np.testing.assert_array_equal(values, oracle)


def test_header_names_are_returned_and_stripped():
    names, values = parse_numeric_csv(' a , "b"\n1,2\n3,4', source="t.csv", header=True)
    assert names == ["a", "b"]
    np.testing.assert_array_equal(values, [[1, 2], [3, 4]])


def test_crlf_blank_lines_and_spaces_are_accepted():
    _, values = parse_numeric_csv("1, 2\r\n\r\n  \r\n3 ,4e1\r\n", source="t.csv")
    np.testing.assert_array_equal(values, [[1, 2], [3, 40]])


def test_single_column():
    _, values = parse_numeric_csv("1\n2\n", source="t.csv", n_columns=1)
    assert values.shape == (2, 1)


@pytest.mark.parametrize("text", ["", "\n", "  \n\r\n"])
def test_empty_input(text):
    with pytest.raises(TabularError, match=r"^t\.csv: empty input"):
        parse_numeric_csv(text, source="t.csv")


def test_header_only_is_empty():
    with pytest.raises(TabularError, match="no data rows"):
        parse_numeric_csv("a,b\n", source="t.csv", header=True)


def test_ragged_row_names_line_and_counts():
    # line 4 (the blank line 2 still counts) has one cell too few
    with pytest.raises(TabularError) as info:
        parse_numeric_csv("1,2,3\n\n4,5,6\n7,8\n", source="body")
    err = info.value
    assert (err.source, err.row, err.column) == ("body", 4, None)
    assert str(err) == "body, row 4: expected 3 columns, found 2"


def test_n_columns_is_enforced():
    with pytest.raises(TabularError, match=r"^body, row 1: expected 4 columns, found 3$"):
        parse_numeric_csv("1,2,3\n", source="body", n_columns=4)


def test_header_width_is_checked_against_n_columns():
    with pytest.raises(TabularError, match=r"row 1: header has 2 columns, expected 3"):
        parse_numeric_csv("a,b\n1,2\n", source="t.csv", header=True, n_columns=3)


def test_non_numeric_cell_names_row_column_and_header_name():
    text = "x,radius_mean,z\n1,2,3\n4,abc,6\n"
    with pytest.raises(TabularError) as info:
        parse_numeric_csv(text, source="data.csv", header=True)
    err = info.value
    assert (err.row, err.column, err.column_name) == (3, 2, "radius_mean")
    assert str(err) == "data.csv, row 3, column 2 (radius_mean): 'abc' is not a number"


def test_empty_cell_is_reported():
    with pytest.raises(TabularError, match=r"^t\.csv, row 2, column 3: empty cell$"):
        parse_numeric_csv("1,2,3\n4,5,\n", source="t.csv")


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-Infinity"])
def test_non_finite_cell_is_reported(bad):
    with pytest.raises(TabularError) as info:
        parse_numeric_csv(f"1,2\n3,{bad}\n", source="t.csv")
    assert (info.value.row, info.value.column) == (2, 2)
    assert str(info.value) == f"t.csv, row 2, column 2: {bad!r} is not a finite number"


def test_first_problem_in_reading_order_wins():
    # a NaN before a non-number: the scan must report the NaN, not the later cell
    with pytest.raises(TabularError, match=r"row 1, column 2: 'nan' is not a finite number"):
        parse_numeric_csv("1,nan\nx,2\n", source="t.csv")


def test_long_garbage_is_truncated_in_the_message():
    with pytest.raises(TabularError) as info:
        parse_numeric_csv("1," + "z" * 500 + "\n", source="t.csv")
    assert len(str(info.value)) < 120


def test_is_a_value_error():
    assert issubclass(TabularError, ValueError)


def test_data_line_numbers_skip_blanks_and_header():
    text = "a,b\r\n\r\n1,2\n  \n3,4\n"
    assert data_line_numbers(text, header=True) == [3, 5]
    assert data_line_numbers(text) == [1, 3, 5]


def test_a_text_column_is_taken_out_and_rows_and_columns_keep_their_numbers():
    text = 'a, "kind" ,b\r\n1,car,2\r\n\r\n3, "bus" ,4\n5,car,x\n'
    numeric, cells = take_text_column(text, "kind", source="t.csv")
    assert cells == ["car", "bus", "car"]
    with pytest.raises(TabularError) as info:
        parse_numeric_csv(numeric, source="t.csv", header=True)
    # the blank line still counts, and column 3 is still b
    assert str(info.value) == "t.csv, row 5, column 3 (b): 'x' is not a number"


def test_take_text_column_leaves_ragged_rows_and_missing_columns_to_the_caller():
    numeric, cells = take_text_column("a,kind\n1,car\n2\n", "kind", source="t.csv")
    assert cells == ["car"]
    with pytest.raises(TabularError, match=r"t\.csv, row 3: expected 2 columns, found 1$"):
        parse_numeric_csv(numeric, source="t.csv", header=True)
    with pytest.raises(TabularError, match=r"row 1: no column named 'mode' \(columns: a, kind\)"):
        take_text_column("a,kind\n1,car\n", "mode", source="t.csv")
    assert take_text_column("\n\n", "kind", source="t.csv") == ("\n\n", [])
