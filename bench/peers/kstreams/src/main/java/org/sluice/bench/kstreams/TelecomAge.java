package org.sluice.bench.kstreams;

import java.io.BufferedReader;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.time.Instant;
import java.time.LocalDate;
import java.time.ZoneOffset;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.kstream.Windowed;
import org.apache.kafka.streams.state.Stores;

/** sluice's reference job on Kafka (examples/telecom/age_distribution_kafka.sql)
 *  as a Kafka Streams topology, doing what the Flink peer's TelecomAge does:
 *  events (CSV lines, several per message, as `sluice gen --kafka` writes
 *  them) are pseudonymised (HMAC-SHA-256 of the msisdn under the key file's
 *  current key, 64 bits kept, per-task cache), joined with subscribers
 *  (pseudonymised with the same key as they load, so the join is on
 *  pseudonyms) and cells held in memory (loaded from the same files as
 *  sluice's tables, as a GlobalKTable would hold them), given the age band
 *  at their window's start date (UTC), keyed by (event_type, area,
 *  age_band), repartitioned, and counted per 60 s event-time tumbling
 *  window: events and the exact number of distinct pseudonyms. Windows
 *  close 5 s of event time behind each input partition (Bounded.Source);
 *  final results only (suppress until the window closes); groups with fewer
 *  than k = 16 distinct subscribers withheld. Exactly-once v2, commit every
 *  10 s (sluice's checkpoint interval). Window state in in-memory stores
 *  with changelogs (sluice and Flink keep theirs in memory too).
 *
 *  usage: TelecomAge --bootstrap B --topic T --subscribers CSV --cells CSV
 *                    --key-file F --out FILE [--parallelism 2] [--records N]
 *                    [--k 16] [--commit-ms 10000] [--skew-ms 600000]
 *  writes rows "window_start,window_end,event_type,area,age_band,events,subscribers". */
public final class TelecomAge {
    private TelecomAge() {}

    static final long WINDOW_MS = 60_000;
    static final long DELAY_MS = 5_000;
    static final Set<String> TYPES = Set.of("SMS_SENT", "SMS_RECEIVED", "CALL_PLACED",
            "CALL_RECEIVED", "DATA_SESSION");

    /** Lookup tables, loaded once in main() before the topology starts. */
    static final class Tables {
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

    /** A message of CSV lines -> (event_type,area,age_band ; pseudonym) at ts. */
    static final class Enrich extends Bounded.Source {
        private final Tables t;
        private final Mac mac;
        private final Map<String, Long> cache = new HashMap<>();

        Enrich(Tables t) {
            super(WINDOW_MS, DELAY_MS);
            this.t = t;
            try {
                mac = mac(t.key);
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        }

        @Override
        void handle(String message) {
            int from = 0;
            int n = message.length();
            while (from < n) {
                int nl = message.indexOf('\n', from);
                int to = nl < 0 ? n : nl;
                int end = to > from && message.charAt(to - 1) == '\r' ? to - 1 : to;
                if (end > from) line(message.substring(from, end));
                from = to + 1;
            }
        }

        private void line(String line) {
            String[] f = line.split(",", -1);
            if (f.length != 6 || !TYPES.contains(f[2])) return; // bad lines
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
            emit(f[2] + "," + area + "," + band(b == null ? 0 : b, ws), p, ts);
        }
    }

    /** events and the exact distinct pseudonyms of one group and window.
     *  Kafka Streams' caching window store holds bytes, so the accumulator
     *  is deserialised and serialised again on every event: the pseudonyms
     *  are kept as a sorted long[] (binary search, insertion by copy, bulk
     *  copies to and from bytes) rather than the Flink peer's HashSet<Long>,
     *  whose rebuilding from bytes took most of the peer's CPU in a profile
     *  (bench/RESULTS.md). The count is the same exact distinct count. */
    static final class Acc {
        long events;
        long[] subs = new long[8];
        int n;

        void add(long p) {
            int i = Arrays.binarySearch(subs, 0, n, p);
            if (i >= 0) return;
            i = -i - 1;
            if (n == subs.length) subs = Arrays.copyOf(subs, 2 * n);
            System.arraycopy(subs, i, subs, i + 1, n - i);
            subs[i] = p;
            n++;
        }
    }

    static final class AccSerde implements Serde<Acc> {
        @Override
        public Serializer<Acc> serializer() {
            return (topic, a) -> {
                if (a == null) return null;
                ByteBuffer b = ByteBuffer.allocate(12 + 8 * a.n).order(ByteOrder.LITTLE_ENDIAN);
                b.putLong(a.events).putInt(a.n);
                b.asLongBuffer().put(a.subs, 0, a.n);
                return b.array();
            };
        }

        @Override
        public Deserializer<Acc> deserializer() {
            return (topic, data) -> {
                if (data == null) return null;
                ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
                Acc a = new Acc();
                a.events = b.getLong();
                a.n = b.getInt();
                a.subs = new long[Math.max(8, a.n + 1)];
                b.asLongBuffer().get(a.subs, 0, a.n);
                return a;
            };
        }
    }

    static Topology topology(Tables tables, Map<String, String> a, String outTopic) {
        int k = Integer.parseInt(a.getOrDefault("k", "16"));
        long skew = Peer.skewMs(a);
        StreamsBuilder b = new StreamsBuilder();
        b.stream(Peer.need(a, "topic"), Consumed.with(Serdes.ByteArray(), Serdes.String()))
                .process(() -> new Enrich(tables))
                .repartition(Repartitioned.<String, Long>with(Serdes.String(), Serdes.Long())
                        .withName("groups").withNumberOfPartitions(Peer.parallelism(a))
                        .withStreamPartitioner(new Bounded.Partitioner()))
                .processValues(() -> new Bounded.Gate(WINDOW_MS, skew))
                .groupByKey(Grouped.with(Serdes.String(), Serdes.Long()))
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMillis(WINDOW_MS), Duration.ofMillis(skew)))
                .aggregate(Acc::new, (key, p, acc) -> {
                    acc.events++;
                    acc.add(p);
                    return acc;
                }, Materialized.<String, Acc>as(Stores.inMemoryWindowStore("age-counts",
                                Duration.ofMillis(WINDOW_MS + skew), Duration.ofMillis(WINDOW_MS), false))
                        .withKeySerde(Serdes.String()).withValueSerde(new AccSerde()))
                .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()).withName("final"))
                .toStream()
                .process(() -> new Bounded.Sink<Acc>() {
                    @Override
                    String row(Windowed<String> w, Acc acc) {
                        if (acc.n < k) return null; // k-anonymity: withheld
                        return w.window().start() + "," + w.window().end() + "," + w.key() + ","
                                + acc.events + "," + acc.n;
                    }
                })
                .to(outTopic, Produced.with(Serdes.String(), Serdes.String()));
        return b.build();
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> a = Peer.args(argv);
        long t0 = System.nanoTime();
        Tables tables = new Tables(Peer.need(a, "key-file"), Peer.need(a, "subscribers"), Peer.need(a, "cells"));
        double load = (System.nanoTime() - t0) / 1e9;
        Peer.run("telecom-age", a, out -> topology(tables, a, out), load);
    }
}
