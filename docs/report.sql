-- napiscope report's core numbers in plain SQL that DuckDB and Spark SQL both run. Only the
-- first statement, which reads the files, is the engine's own: Spark's is
--   CREATE TEMPORARY VIEW trace AS SELECT *, input_file_name() AS filename FROM parquet.`trace.parquet`;
-- For a fleet, read the tree instead (DuckDB: read_parquet('fleet/**/*.parquet',
-- filename = true, hive_partitioning = true); Spark: parquet.`fleet/`), and add host or
-- kernel to the GROUP BYs for numbers per partition.
CREATE TEMPORARY VIEW trace AS SELECT * FROM read_parquet('trace.parquet', filename = true);

-- Pair each netif_receive_skb with the netif_rx just before it: same file (skb values are
-- hashed per recording), same skb, not already paired, at most 1 s earlier.
CREATE TEMPORARY VIEW deliveries AS
WITH ev AS (
  SELECT filename, skb, ts_ns, cpu, seq, event, ctx, comm,
         lag(event) OVER w AS prev_event, lag(ts_ns) OVER w AS prev_ts,
         lag(cpu) OVER w AS prev_cpu
  FROM trace
  WHERE event IN ('netif_rx', 'netif_receive_skb') AND skb IS NOT NULL
  WINDOW w AS (PARTITION BY filename, skb ORDER BY ts_ns, cpu, seq)
)
SELECT filename, cpu, prev_cpu AS enqueue_cpu, ts_ns, ts_ns - prev_ts AS latency_ns,
       CASE WHEN comm LIKE 'backlog_napi/%' AND ctx <> 'softirq' THEN 'backlog_thread'
            WHEN comm LIKE 'ksoftirqd/%' THEN 'ksoftirqd'
            WHEN prev_cpu <> cpu THEN 'remote_softirq'
            ELSE 'local_softirq' END AS path
FROM ev
WHERE event = 'netif_receive_skb' AND prev_event = 'netif_rx' AND ts_ns - prev_ts <= 1000000000;

-- Where receive work ran: packets per CPU and path.
SELECT cpu, path, count(*) AS packets FROM deliveries GROUP BY cpu, path ORDER BY cpu, path;

-- Enqueue-to-processing latency per path, ns (percentile_disc = report's nearest rank).
SELECT path, count(*) AS packets,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ns) AS p50,
       percentile_disc(0.9) WITHIN GROUP (ORDER BY latency_ns) AS p90,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ns) AS p99,
       max(latency_ns) AS max
FROM deliveries GROUP BY path ORDER BY path;

-- RPS IPIs per CPU (sent by csd_queue_cpu, received by csd_function_entry), and per packet.
SELECT cpu,
       count(CASE WHEN event = 'csd_queue_cpu' AND func = 'rps_trigger_softirq' THEN 1 END) AS ipis_sent,
       count(CASE WHEN event = 'csd_function_entry' AND func = 'rps_trigger_softirq' THEN 1 END) AS ipis_received
FROM trace GROUP BY cpu ORDER BY cpu;
SELECT (SELECT count(*) FROM trace
        WHERE event = 'csd_queue_cpu' AND func = 'rps_trigger_softirq')
       / (SELECT count(*) FROM deliveries) AS ipis_per_packet;
