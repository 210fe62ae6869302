package org.sluice.bench;

import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.HashMap;
import java.util.Map;

import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.core.execution.JobClient;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.util.CloseableIterator;

/** Shared plumbing of the Flink peer jobs: command-line options, running a
 *  job in local execution and writing its result rows as CSV (sorted by the
 *  harness, which compares them with sluice's), and the summary line the
 *  harness reads ("flink: done: N records in S s ..."). */
final class Peer {
    private Peer() {}

    static Map<String, String> args(String[] argv) {
        Map<String, String> m = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            if (!argv[i].startsWith("--")) throw new IllegalArgumentException("bad option " + argv[i]);
            m.put(argv[i].substring(2), argv[i + 1]);
        }
        return m;
    }

    static String need(Map<String, String> a, String key) {
        String v = a.get(key);
        if (v == null) throw new IllegalArgumentException("missing --" + key);
        return v;
    }

    /** Local execution (a MiniCluster in this JVM) with the given parallelism
     *  and object reuse on (the usual setting for throughput: chained
     *  operators pass records without copying them; no function here keeps
     *  an input object). */
    static StreamExecutionEnvironment env(Map<String, String> a) {
        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(
                Integer.parseInt(a.getOrDefault("parallelism", "2")));
        env.getConfig().enableObjectReuse();
        return env;
    }

    /** Runs the job, writes every result row (a CSV line) to --out and prints
     *  the summary: records = --records (the input size, known to the
     *  harness), time = the job's net runtime on the cluster (from its start
     *  to its end: MiniCluster start-up and table loading before it are
     *  left out, as sluice's own figure leaves out its table loading). */
    static void run(StreamExecutionEnvironment env, DataStream<String> rows, Map<String, String> a,
                    String name, double loadSeconds) throws Exception {
        long t0 = System.nanoTime();
        CloseableIterator<String> it = rows.collectAsync();
        JobClient client = env.executeAsync(name);
        long n = 0;
        Path out = Paths.get(need(a, "out"));
        try (BufferedWriter w = Files.newBufferedWriter(out, StandardCharsets.UTF_8)) {
            while (it.hasNext()) {
                w.write(it.next());
                w.write('\n');
                n++;
            }
        } finally {
            it.close();
        }
        JobExecutionResult r = client.getJobExecutionResult().get();
        double wall = (System.nanoTime() - t0) / 1e9;
        double net = r.getNetRuntime() / 1000.0;
        long records = Long.parseLong(a.getOrDefault("records", "0"));
        System.err.printf("flink: done: %d records in %.2f s (%.2f M events/s), %d rows written,"
                + " job wall %.2f s, tables loaded in %.2f s%n",
                records, net, records / net / 1e6, n, wall, loadSeconds);
    }

    static void closeQuietly(AutoCloseable c) {
        try {
            if (c != null) c.close();
        } catch (Exception e) {
            // nothing to do
        }
    }

    static IOException io(String what, Exception e) {
        return new IOException(what + ": " + e.getMessage(), e);
    }
}
