package org.sluice.bench;

import java.io.BufferedReader;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichFlatMapFunction;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.connector.file.src.FileSource;
import org.apache.flink.connector.file.src.reader.TextLineInputFormat;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.core.fs.Path;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

/** sluice's reference job "telecom-age" on Flink's DataStream API: events
 *  (CSV) are pseudonymised (HMAC-SHA-256 of the msisdn under the key file's
 *  current key, 64 bits kept, with a per-task cache as sluice has), joined
 *  with subscribers (pseudonymised with the same key as they load, so the
 *  join is on pseudonyms) and cells, given the age band at their window's
 *  start date (UTC), keyed by (event_type, area, age_band) and counted per
 *  60 s event-time tumbling window (watermarks 5 s behind): events and the
 *  exact number of distinct pseudonyms; groups with fewer than k = 16
 *  distinct subscribers are withheld. Exactly-once checkpoints every 10 s.
 *
 *  usage: TelecomAge --events DIR --subscribers CSV --cells CSV --key-file F
 *                    --out FILE [--parallelism 2] [--records N] [--k 16]
 *  writes rows "window_start,window_end,event_type,area,age_band,events,subscribers". */
public final class TelecomAge {
    private TelecomAge() {}

    static final long WINDOW_MS = 60_000;
    static final Set<String> TYPES = Set.of("SMS_SENT", "SMS_RECEIVED", "CALL_PLACED",
            "CALL_RECEIVED", "DATA_SESSION");

    /** Lookup tables, loaded once in main() before the job starts (the
     *  MiniCluster runs in this JVM), or by the first task that misses them. */
    static final class Tables {
        static volatile Tables shared;
        final byte[] key;
        final Map<Long, Integer> birth = new HashMap<>(); // pseudonym -> yyyymmdd
        final Map<Long, String> area = new HashMap<>();   // cell_id -> area

        Tables(String keyFile, String subscribers, String cells) throws Exception {
            byte[] k = null;
            for (String l : Files.readAllLines(Paths.get(keyFile))) {
                l = l.trim();
                if (l.isEmpty() || l.startsWith("#")) continue;
                String[] f = l.split("\\s+");
                k = hex(f[1]); // the last key is the current one
            }
            key = k;
            Mac mac = mac(key);
            try (BufferedReader r = Files.newBufferedReader(Paths.get(subscribers), StandardCharsets.UTF_8)) {
                String line = r.readLine();
                while ((line = r.readLine()) != null) {
                    String[] f = line.split(",", -1);
                    if (f.length < 2 || f[1].length() < 10) continue;
                    int ymd = Integer.parseInt(f[1].substring(0, 4)) * 10000
                            + Integer.parseInt(f[1].substring(5, 7)) * 100 + Integer.parseInt(f[1].substring(8, 10));
                    birth.put(pseudonym(mac, f[0]), ymd);
                }
            }
            try (BufferedReader r = Files.newBufferedReader(Paths.get(cells), StandardCharsets.UTF_8)) {
                String line = r.readLine();
                while ((line = r.readLine()) != null) {
                    int c = line.indexOf(',');
                    if (c > 0) area.put(Long.parseLong(line.substring(0, c)), line.substring(c + 1));
                }
            }
        }
    }

    static byte[] hex(String s) {
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return b;
    }

    static Mac mac(byte[] key) throws Exception {
        Mac m = Mac.getInstance("HmacSHA256");
        m.init(new SecretKeySpec(key, "HmacSHA256"));
        return m;
    }

    static long pseudonym(Mac mac, String msisdn) {
        return ByteBuffer.wrap(mac.doFinal(msisdn.getBytes(StandardCharsets.US_ASCII))).getLong();
    }

    static String band(int birthYmd, long windowStart) {
        if (birthYmd == 0) return "unknown";
        LocalDate d = Instant.ofEpochMilli(windowStart).atZone(ZoneOffset.UTC).toLocalDate();
        int age = d.getYear() - birthYmd / 10000
                - ((d.getMonthValue() * 100 + d.getDayOfMonth()) < birthYmd % 10000 ? 1 : 0);
        if (age < 0) return "unknown";
        if (age <= 17) return "0-17";
        if (age <= 24) return "18-24";
        if (age <= 34) return "25-34";
        if (age <= 44) return "35-44";
        if (age <= 54) return "45-54";
        if (age <= 64) return "55-64";
        return "65+";
    }

    /** CSV line -> (ts, pseudonym, "event_type|area|age_band"). */
    static final class Enrich extends RichFlatMapFunction<String, Tuple3<Long, Long, String>> {
        private final String[] paths;
        private transient Tables t;
        private transient Mac mac;
        private transient Map<String, Long> cache;

        Enrich(String... paths) {
            this.paths = paths;
        }

        @Override
        public void open(OpenContext ctx) throws Exception {
            synchronized (Tables.class) {
                if (Tables.shared == null) Tables.shared = new Tables(paths[0], paths[1], paths[2]);
            }
            t = Tables.shared;
            mac = mac(t.key);
            cache = new HashMap<>();
        }

        @Override
        public void flatMap(String line, Collector<Tuple3<Long, Long, String>> out) {
            String[] f = line.split(",", -1);
            if (f.length != 6 || !TYPES.contains(f[2])) return; // the header, bad lines
            long ts;
            try {
                ts = Long.parseLong(f[0]);
            } catch (NumberFormatException e) {
                return;
            }
            Long p = cache.get(f[1]);
            if (p == null) {
                p = pseudonym(mac, f[1]);
                cache.put(f[1], p);
            }
            String area = "unknown";
            if (!f[3].isEmpty()) {
                String a = t.area.get(Long.parseLong(f[3]));
                if (a != null) area = a;
            }
            Integer b = t.birth.get(p);
            long ws = Math.floorDiv(ts, WINDOW_MS) * WINDOW_MS;
            out.collect(Tuple3.of(ts, p, f[2] + "," + area + "," + band(b == null ? 0 : b, ws)));
        }
    }

    /** events and the exact distinct pseudonyms of one group. */
    static final class Acc {
        long events;
        final Set<Long> subs = new HashSet<>();
    }

    static final class Count implements AggregateFunction<Tuple3<Long, Long, String>, Acc, Acc> {
        public Acc createAccumulator() { return new Acc(); }
        public Acc add(Tuple3<Long, Long, String> v, Acc a) {
            a.events++;
            a.subs.add(v.f1);
            return a;
        }
        public Acc getResult(Acc a) { return a; }
        public Acc merge(Acc a, Acc b) {
            a.events += b.events;
            a.subs.addAll(b.subs);
            return a;
        }
    }

    static final class KAnon extends ProcessWindowFunction<Acc, String, String, TimeWindow> {
        private final int k;

        KAnon(int k) {
            this.k = k;
        }

        @Override
        public void process(String key, Context ctx, Iterable<Acc> in, Collector<String> out) {
            Acc a = in.iterator().next();
            if (a.subs.size() < k) return; // k-anonymity: withheld
            out.collect(ctx.window().getStart() + "," + ctx.window().getEnd() + "," + key + ","
                    + a.events + "," + a.subs.size());
        }
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> a = Peer.args(argv);
        long t0 = System.nanoTime();
        Tables.shared = new Tables(Peer.need(a, "key-file"), Peer.need(a, "subscribers"), Peer.need(a, "cells"));
        double load = (System.nanoTime() - t0) / 1e9;
        StreamExecutionEnvironment env = Peer.env(a);
        env.enableCheckpointing(10_000, CheckpointingMode.EXACTLY_ONCE);
        FileSource<String> src = FileSource.forRecordStreamFormat(new TextLineInputFormat(),
                new Path(Peer.need(a, "events"))).build();
        WatermarkStrategy<Tuple3<Long, Long, String>> wm = WatermarkStrategy
                .<Tuple3<Long, Long, String>>forBoundedOutOfOrderness(Duration.ofSeconds(5))
                .withTimestampAssigner((t, prev) -> t.f0);
        DataStream<String> rows = env
                .fromSource(src, WatermarkStrategy.noWatermarks(), "events")
                .flatMap(new Enrich(a.get("key-file"), a.get("subscribers"), a.get("cells")))
                .assignTimestampsAndWatermarks(wm)
                .keyBy(t -> t.f2)
                .window(TumblingEventTimeWindows.of(Duration.ofMillis(WINDOW_MS)))
                .aggregate(new Count(), new KAnon(Integer.parseInt(a.getOrDefault("k", "16"))));
        Peer.run(env, rows, a, "telecom-age", load);
    }
}
