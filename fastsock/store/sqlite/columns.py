"""Tables as lists of columns. Each column says once which document field it holds, how the
value is encoded and decoded (codec.py) and what a document without it stores; a `Table` builds
from that everything the repositories used to spell out per table: the SELECT list, the INSERT,
`to_doc(row)`, `encode(doc)`, the whitelisted SET and WHERE terms of an update (and the plain
update by id), and the translation of a unique key's refusal into `Duplicate`.

The queries that find rows stay in the table modules: they are what the indexes in schema.py
serve."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from fastsock.store.base import Duplicate
from fastsock.store.sqlite.codec import Doc, Encoder, same

Decoder = Callable[[Any], Any]
Row = tuple[Any, ...]
Terms = tuple[list[str], list[Any]]  # SQL terms with `?`, and their parameters


REQUIRED: Any = object()  # no default: encode(doc) needs the field (KeyError without it)
_MISSING: Any = object()


@dataclass(frozen=True)
class From:
    """A default taken from another field of the same document."""

    field: str


@dataclass(frozen=True)
class Column:
    """A document field stored in one column. Without the field, a document stores `default`;
    with `fill_empty`, so does an empty value (None, "", 0, []): `doc.get(field) or default`
    where the column is NOT NULL and older documents may carry a None."""

    field: str
    encode: Encoder = same  # document value -> column value (insert, update and match)
    decode: Decoder = same  # column value -> document value
    default: Any = REQUIRED
    fill_empty: bool = False
    column: str = ""  # the column's name where it is not the field's
    settable: bool = True  # whether update() may set it, or match on it

    read: ClassVar[bool] = True  # every field is read back into the document

    def __post_init__(self) -> None:
        if not self.column:
            object.__setattr__(self, "column", self.field)

    def value_in(self, doc: Doc) -> Any:
        """The field's value in `doc`, or what stands in for it (not yet encoded)."""
        if self.default is REQUIRED:
            return doc[self.field]
        value = doc.get(self.field, _MISSING)
        if value is _MISSING or (self.fill_empty and not value):
            return doc[self.default.field] if isinstance(self.default, From) else self.default
        return value


# Every document id but a membership's: `_id`, stored as `id`, the row's key (never set).
ID = Column("_id", str, column="id", settable=False)


@dataclass(frozen=True)
class Derived:
    """A column computed from one field's value and written whenever that field is (insert and
    update), never on its own: a casefolded copy for search, a count. `read` columns come back
    as a document field of the column's name."""

    column: str
    source: str  # the field it follows (a column's field, or one no column holds)
    compute: Callable[[Any], Any]
    read: bool = False


class Table:
    """One table's columns in INSERT order: those read back first (in SELECT order), then the
    ones kept only for queries, so that a row just encoded decodes like a selected one."""

    def __init__(
        self,
        name: str,
        *columns: Column | Derived,
        unique: tuple[str, ...] = (),
        duplicate: str = "",
    ) -> None:
        """`unique`: the columns of the key whose refusal of an insert (or, inside
        `guard_unique`, any write) raises `Duplicate(duplicate)`."""
        read = [c for c in columns if c.read]
        if list(columns[: len(read)]) != read:
            raise ValueError(f"{name}: the columns read back must come before the others")
        self.name = name
        self.stored = tuple(c.column for c in columns)  # what encode() returns, in order
        self.selected = ", ".join(c.column for c in read)
        self.select = f"SELECT {self.selected} FROM {name}"
        self.insert_sql = insert_sql(name, self.stored)
        self._columns = columns
        self._read = read
        self._decoders = [  # (document field, decoder) of each column read back
            (c.field, c.decode) if isinstance(c, Column) else (c.column, same) for c in read
        ]
        self._fields = {c.field: c for c in columns if isinstance(c, Column)}
        self._settable = {f: c for f, c in self._fields.items() if c.settable}
        self._derived = [c for c in columns if isinstance(c, Derived)]
        self._sources = {d.source for d in self._derived}
        self._unique = unique
        self._duplicate = duplicate

    # --- reading ---------------------------------------------------------------------------

    def selected_of(self, alias: str) -> str:
        """The SELECT list qualified by a table alias, for joins."""
        return ", ".join(f"{alias}.{c.column}" for c in self._read)

    def to_doc(self, row: Row) -> Doc:
        # Not strict: an encoded row also holds the unread columns, after the read ones.
        pairs = zip(self._decoders, row, strict=False)
        return {field: decode(value) for (field, decode), value in pairs}

    def one(self, conn: sqlite3.Connection, clause: str, params: Row) -> Doc | None:
        """The document `SELECT <columns> FROM <table> <clause>` finds, if any."""
        row = conn.execute(f"{self.select} {clause}", params).fetchone()
        return self.to_doc(row) if row else None

    def all(self, conn: sqlite3.Connection, clause: str, params: Row) -> list[Doc]:
        return [self.to_doc(r) for r in conn.execute(f"{self.select} {clause}", params)]

    # --- writing ---------------------------------------------------------------------------

    def column_of(self, field: str) -> str:
        return self._fields[field].column

    def encode(self, doc: Doc) -> Row:
        """The `stored` values of a whole document; fields no column holds are left out."""
        values = {f: c.value_in(doc) for f, c in self._fields.items()}
        row = []
        for c in self._columns:
            if isinstance(c, Column):
                row.append(c.encode(values[c.field]))
            else:  # from a column's value after its default, or a field no column holds as is
                row.append(c.compute(values[c.source] if c.source in values else doc.get(c.source)))
        return tuple(row)

    def insert(self, conn: sqlite3.Connection, doc: Doc) -> Doc:
        """Insert the document; returns it as it now reads back."""
        row = self.encode(doc)
        with self.guard_unique():
            conn.execute(self.insert_sql, row)
        return self.to_doc(row)

    @contextmanager
    def guard_unique(self) -> Iterator[None]:
        """A write inside that the table's unique key refuses raises Duplicate."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            if self._unique and unique_columns(exc) == self._unique:
                raise Duplicate(self._duplicate) from exc
            raise

    def update(self, conn: sqlite3.Connection, row_id: str, changes: Mapping[str, Any]) -> None:
        """Set `changes` on the row with this `_id` (no statement when there is nothing to set);
        a unique key's refusal raises Duplicate, as on insert."""
        terms, params = self.assignments(changes)
        if terms:
            with self.guard_unique():
                conn.execute(
                    f"UPDATE {self.name} SET {', '.join(terms)} WHERE {self.column_of('_id')} = ?",
                    (*params, row_id),
                )

    def upsert_sql(self, key: tuple[str, ...]) -> str:
        """Insert, or replace every other column of the row with the same key (keeping its
        rowid, so update triggers run instead of delete-and-insert)."""
        sets = ", ".join(f"{c} = excluded.{c}" for c in self.stored if c not in key)
        return f"{self.insert_sql} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"

    def assignments(self, changes: Mapping[str, Any]) -> Terms:
        """`col = ?` terms for an UPDATE, derived columns included. Only settable fields (and
        the fields derived columns follow) reach the SQL text; any other is a ValueError."""
        terms, params = [], []
        for field, value in changes.items():
            if field in self._sources and field not in self._settable:
                continue  # written through its derived columns, below
            column = self._settable_column(field, "set")
            terms.append(f"{column.column} = ?")
            params.append(column.encode(value))
        for derived in self._derived:
            if derived.source in changes:
                terms.append(f"{derived.column} = ?")
                params.append(derived.compute(changes[derived.source]))
        return terms, params

    def conditions(self, expect: Mapping[str, Any]) -> Terms:
        """Plain equality terms for a WHERE on settable fields (None matches NULL)."""
        terms, params = [], []
        for field, value in expect.items():
            column = self._settable_column(field, "match on")
            if value is None:
                terms.append(f"{column.column} IS NULL")
            else:
                terms.append(f"{column.column} = ?")
                params.append(column.encode(value))
        return terms, params

    def _settable_column(self, field: str, verb: str) -> Column:
        column = self._settable.get(field)
        if column is None:
            raise ValueError(f"cannot {verb} field {field!r}")
        return column


def insert_sql(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join("?" * len(columns))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


def unique_columns(exc: sqlite3.IntegrityError) -> tuple[str, ...]:
    """The columns of the unique key that refused a write ("UNIQUE constraint failed: t.a,
    t.b" -> ("a", "b")); empty for any other integrity error."""
    if getattr(exc, "sqlite_errorname", "") not in (
        "SQLITE_CONSTRAINT_UNIQUE",
        "SQLITE_CONSTRAINT_PRIMARYKEY",
    ):
        return ()
    _, _, cols = str(exc).partition(":")
    return tuple(c.strip().rpartition(".")[2] for c in cols.split(","))
