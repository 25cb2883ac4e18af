"""Run docs/report.sql in DuckDB or Spark and print its result sets as JSON.

usage: sql_engines.py duckdb|spark SQL_FILE file|tree PATH

Only the first statement (which reads the Parquet files) is the engine's own, as the SQL's
header says; it is replaced here by the engine's reading of PATH (one file, or a hive tree).
Exit 3 with MISSING_<ENGINE> when the engine's Python package (or Java, for Spark) is absent.
"""
import decimal
import json
import shutil
import sys

engine, sql_file, kind, path = sys.argv[1:5]
text = "\n".join(l for l in open(sql_file).read().splitlines() if not l.strip().startswith("--"))
stmts = [s.strip() for s in text.split(";") if s.strip()]
assert stmts[0].upper().startswith("CREATE TEMPORARY VIEW TRACE"), stmts[0]


def plain(v):
    # Spark reads Parquet's unsigned 64-bit columns as DECIMAL(20,0).
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    return v


out = []
if engine == "duckdb":
    try:
        import duckdb
    except ImportError:
        print("MISSING_DUCKDB")
        sys.exit(3)
    src = f"'{path}/**/*.parquet', hive_partitioning = true" if kind == "tree" else f"'{path}'"
    stmts[0] = f"CREATE TEMPORARY VIEW trace AS SELECT * FROM read_parquet({src}, filename = true)"
    con = duckdb.connect()
    for s in stmts:
        r = con.execute(s)
        if s.upper().startswith("CREATE"):
            continue
        cols = [d[0] for d in r.description]
        out.append([{c: plain(v) for c, v in zip(cols, row)} for row in r.fetchall()])
else:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        print("MISSING_SPARK")
        sys.exit(3)
    if shutil.which("java") is None:
        print("MISSING_SPARK (no java)")
        sys.exit(3)
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    stmts[0] = (
        f"CREATE TEMPORARY VIEW trace AS SELECT *, input_file_name() AS filename FROM parquet.`{path}`"
    )
    for s in stmts:
        df = spark.sql(s)
        if s.upper().startswith("CREATE"):
            continue
        out.append([{k: plain(v) for k, v in r.asDict().items()} for r in df.collect()])
    spark.stop()
print(json.dumps(out, default=float))
