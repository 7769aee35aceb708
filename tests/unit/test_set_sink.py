"""How a handler's statement becomes one statement for many rows (projections/set_sink.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from psycopg.types.json import Jsonb

from projections.set_sink import SetSink, array_literal, inserts_values_only, rewrite


def test_an_insert_of_values_selects_them_from_the_parameter_arrays() -> None:
    sql = "INSERT INTO t (a, b) VALUES (%s, %s::jsonb) ON CONFLICT (a) DO NOTHING"
    assert rewrite(sql, ["uuid", "jsonb"]) == (
        "INSERT INTO t (a, b) SELECT _a.p1, _a.p2::jsonb FROM unnest(%s::uuid[], %s::jsonb[])"
        " AS _a(p1, p2) ON CONFLICT (a) DO NOTHING"
    )


def test_an_update_joins_the_parameter_arrays_even_with_a_sub_query_in_its_assignments() -> None:
    sql = "UPDATE t SET x=%s, y=(SELECT 1 FROM u WHERE u.id = t.id) WHERE id=%s"
    assert rewrite(sql, ["text", "uuid"]) == (
        "UPDATE t SET x=_a.p1, y=(SELECT 1 FROM u WHERE u.id = t.id)"
        " FROM unnest(%s::text[], %s::uuid[]) AS _a(p1, p2) WHERE id=_a.p2"
    )
    joined = "UPDATE c SET ok=true FROM s WHERE s.id=%s AND c.id=s.customer_id"
    assert rewrite(joined, ["uuid"]) == (
        "UPDATE c SET ok=true FROM unnest(%s::uuid[]) AS _a(p1), s WHERE s.id=_a.p1 AND c.id=s.customer_id"
    )


def test_an_update_from_a_sub_query_reading_the_parameters_reads_it_laterally() -> None:
    # The add-on items' update: without LATERAL, PostgreSQL refuses the sub-query's `_a.p1`.
    sql = "UPDATE s SET items = n.items FROM (SELECT x FROM s WHERE id <> %s) n WHERE s.id = %s"
    assert rewrite(sql, ["text", "uuid"]) == (
        "UPDATE s SET items = n.items FROM unnest(%s::text[], %s::uuid[]) AS _a(p1, p2),"
        " LATERAL (SELECT x FROM s WHERE id <> _a.p1) n WHERE s.id = _a.p2"
    )


def test_an_insert_select_reads_the_parameters_first_and_its_values_list_laterally() -> None:
    sql = (
        "INSERT INTO j (p, a) SELECT %s::bigint, l.a FROM src, (VALUES (1, %s::bigint)) AS l(n, a)"
        " WHERE src.id = %s::uuid ON CONFLICT (p) DO NOTHING"
    )
    assert rewrite(sql, ["bigint", "bigint", "uuid"]) == (
        "INSERT INTO j (p, a) SELECT _a.p1::bigint, l.a FROM unnest(%s::bigint[], %s::bigint[], %s::uuid[])"
        " AS _a(p1, p2, p3) CROSS JOIN src CROSS JOIN LATERAL (VALUES (1, _a.p2::bigint)) AS l(n, a)"
        " WHERE src.id = _a.p3::uuid ON CONFLICT (p) DO NOTHING"
    )


def test_only_plain_inserts_of_values_may_run_before_the_rest_of_a_batch() -> None:
    assert inserts_values_only("INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING")
    assert inserts_values_only("INSERT INTO t (a) VALUES (%s)")
    assert not inserts_values_only("INSERT INTO t (a) VALUES (%s) ON CONFLICT (a) DO UPDATE SET a = 1")
    assert not inserts_values_only("INSERT INTO t (a) VALUES ((SELECT x FROM u))")
    assert not inserts_values_only("UPDATE t SET a = %s WHERE id = %s")


def test_text_is_always_quoted_so_a_malformed_value_never_splits_the_array() -> None:
    assert array_literal(["a,b", None, 'say "hi" \\ bye']) == b'{"a,b",NULL,"say \\"hi\\" \\\\ bye"}'
    assert array_literal(["1,2"]) == b'{"1,2"}'  # even for a number column: it fails as it would alone
    assert array_literal([1, 2, None]) == b"{1,2,NULL}"
    moment = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert array_literal([moment]) == b"{2025-01-02T03:04:05+00:00}"
    assert array_literal([UUID(int=1)]) == b"{00000000-0000-0000-0000-000000000001}"
    assert array_literal([Jsonb({"k": "v"})]) == b'{"{\\"k\\":\\"v\\"}"}'


def test_each_key_keeps_the_order_of_its_statements_and_keys_at_the_same_step_go_together() -> None:
    sink = SetSink()
    for key, statements in (("k", ["A", "B", "A"]), ("j", ["B"]), ("k", ["C"]), ("j", ["A"])):
        sink.begin(key)
        for sql in statements:
            sink.execute(sql, (key,))
    sent = [[(sql, [row[0] for row in rows]) for sql, rows in groups] for groups in sink.rounds()]
    order_of = {
        key: [sql for groups in sent for sql, keys in groups for k in keys if k == key] for key in "kj"
    }
    assert order_of == {"k": ["A", "B", "A", "C"], "j": ["B", "A"]}
