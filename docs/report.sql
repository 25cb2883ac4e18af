-- napiscope report's core numbers in plain SQL (DuckDB, and Spark SQL with only the
-- read_parquet line changed). For a fleet: read_parquet('fleet/**/*.parquet',
-- filename = true, hive_partitioning = true) and add host/kernel to the GROUP BYs.
CREATE VIEW trace AS SELECT * FROM read_parquet('trace.parquet', filename = true);

-- Pair each netif_receive_skb with the netif_rx just before it: same file (skb values are
-- hashed per recording), same skb, not already paired, at most 1 s earlier.
CREATE VIEW deliveries AS
WITH ev AS (
  SELECT filename, skb, ts_ns, cpu, seq, event, ctx, comm,
         lag(event) OVER w AS prev_event, lag(ts_ns) OVER w AS prev_ts,
         lag(cpu) OVER w AS prev_cpu
  FROM trace
  WHERE event IN ('netif_rx', 'netif_receive_skb') AND skb IS NOT NULL
  WINDOW w AS (PARTITION BY filename, skb ORDER BY ts_ns, cpu, seq)
)
SELECT filename, cpu, prev_cpu AS enqueue_cpu, ts_ns, ts_ns - prev_ts AS latency_ns,
       CASE WHEN starts_with(comm, 'backlog_napi/') AND ctx <> 'softirq' THEN 'backlog_thread'
            WHEN starts_with(comm, 'ksoftirqd/') THEN 'ksoftirqd'
            WHEN prev_cpu <> cpu THEN 'remote_softirq'
            ELSE 'local_softirq' END AS path
FROM ev
WHERE event = 'netif_receive_skb' AND prev_event = 'netif_rx' AND ts_ns - prev_ts <= 1000000000;

-- Where receive work ran: packets per CPU and path.
SELECT cpu, path, count(*) AS packets FROM deliveries GROUP BY ALL ORDER BY ALL;

-- Enqueue-to-processing latency per path, ns (quantile_disc = report's nearest rank).
SELECT path, count(*) AS packets,
       quantile_disc(latency_ns, 0.5) AS p50, quantile_disc(latency_ns, 0.9) AS p90,
       quantile_disc(latency_ns, 0.99) AS p99, max(latency_ns) AS max
FROM deliveries GROUP BY path ORDER BY path;

-- RPS IPIs per CPU (sent by csd_queue_cpu, received by csd_function_entry), and per packet.
SELECT cpu,
       count(*) FILTER (WHERE event = 'csd_queue_cpu' AND func = 'rps_trigger_softirq') AS ipis_sent,
       count(*) FILTER (WHERE event = 'csd_function_entry' AND func = 'rps_trigger_softirq') AS ipis_received
FROM trace GROUP BY cpu ORDER BY cpu;
SELECT (SELECT count(*) FROM trace
        WHERE event = 'csd_queue_cpu' AND func = 'rps_trigger_softirq')
       / (SELECT count(*) FROM deliveries) AS ipis_per_packet;
