"""Database clients driven from Python drivers for the protocol tests, run as
a script (tracedb never traces its own process).

    python db_client.py pgsql PORT        # psycopg 3: extended protocol with bound parameters
    python db_client.py mysql PORT        # mysql-connector: server-side prepared statements

Prints a JSON list of what it sent and what came back.
"""

import json
import sys


def pgsql(port: int) -> list:
    import psycopg

    done = []
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        row = conn.execute("select %s::int + %s::int as total, %s::text as word", (40, 2, "tracedb")).fetchone()
        done.append(["select", list(row)])
        try:
            conn.execute("select * from no_such_table where id = %s", (7,))
        except psycopg.errors.UndefinedTable as e:
            done.append(["error", e.sqlstate])
    return done


def mysql(port: int) -> list:
    import mysql.connector

    done = []
    conn = mysql.connector.connect(host="127.0.0.1", port=port, user="root", database="mysql")
    cursor = conn.cursor(prepared=True)
    cursor.execute("select ? + ? as total, ? as word", (40, 2, "tracedb"))
    done.append(["select", [str(v) for v in cursor.fetchone()]])
    cursor.close()
    conn.close()
    return done


if __name__ == "__main__":
    client = {"pgsql": pgsql, "mysql": mysql}[sys.argv[1]]
    print(json.dumps(client(int(sys.argv[2]))))
