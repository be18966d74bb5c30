"""Tables that fit the terminal by wrapping, never by cutting a name short with an ellipsis."""

from __future__ import annotations

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text


def table(*headers: str) -> Table:
    """A borderless table whose cells wrap at spaces and fold a word only where it is longer than
    its column (rich's default would end it with "…")."""
    result = Table(*headers, box=None)
    for column in result.columns:
        column.overflow = "fold"
    return result


def keep_whole(result: Table, *columns: int) -> Table:
    """Give each of these columns (chain names, run ids, lab ids, paths) the width of its longest
    word, once the rows are in: the table then wraps its other columns and never breaks a name."""
    for index in columns:
        column = result.columns[index]
        words = [w for cell in [column.header, *column.cells] for w in _plain(cell).split()]
        column.min_width = max(map(cell_len, words), default=1)
    return result


def _plain(cell) -> str:
    """What a cell shows: markup such as [green]ok[/] takes no room."""
    if isinstance(cell, Text):
        return cell.plain
    return Text.from_markup(cell).plain if isinstance(cell, str) else str(cell)
