package trellis.bench.bpm;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.sql.Connection;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.flowable.common.engine.impl.interceptor.Command;
import org.flowable.engine.ManagementService;
import org.flowable.engine.ProcessEngine;
import org.flowable.engine.ProcessEngineConfiguration;
import org.flowable.engine.RuntimeService;
import org.flowable.engine.TaskService;
import org.flowable.engine.impl.cfg.StandaloneProcessEngineConfiguration;
import org.flowable.engine.runtime.ProcessInstance;
import org.flowable.task.api.Task;

/**
 * Driver for the peer side of the BPM benchmark.
 *
 * <p>Throughput mode (default): C client threads loop start instance -> find
 * its open task -> complete it, for a warm-up and then S measured seconds,
 * and one JSON line with throughput and latency percentiles is printed.
 *
 * <p>Inbox mode ({@code --inbox N}): N open "approve" tasks for assignee
 * "bench" are made (many instances per transaction), then the newest-first
 * inbox page query is timed 200 times.
 */
public final class BpmPeer {

    static final String PROCESS_KEY = "benchApproval";
    static final String ASSIGNEE = "bench";
    static final String DB_NAME = "bpm_peer";

    // start -> serviceTask(amount) -> userTask approve(bench) -> XOR:
    // approved == true -> end "ok", default -> end "no"
    static final String BPMN = """
        <?xml version="1.0" encoding="UTF-8"?>
        <definitions xmlns="http://www.omg.org/spec/BPMN/20100524/MODEL"
                     xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
                     xmlns:flowable="http://flowable.org/bpmn"
                     targetNamespace="https://trellis.invalid/bench">
          <process id="benchApproval" name="Bench approval" isExecutable="true">
            <startEvent id="start"/>
            <sequenceFlow id="f1" sourceRef="start" targetRef="setAmount"/>
            <serviceTask id="setAmount" name="Set amount"
                         flowable:class="trellis.bench.bpm.AmountDelegate"/>
            <sequenceFlow id="f2" sourceRef="setAmount" targetRef="approve"/>
            <userTask id="approve" name="Approve" flowable:assignee="bench"/>
            <sequenceFlow id="f3" sourceRef="approve" targetRef="decide"/>
            <exclusiveGateway id="decide" default="toNo"/>
            <sequenceFlow id="toOk" sourceRef="decide" targetRef="ok">
              <conditionExpression xsi:type="tFormalExpression"><![CDATA[${approved == true}]]></conditionExpression>
            </sequenceFlow>
            <sequenceFlow id="toNo" sourceRef="decide" targetRef="no"/>
            <endEvent id="ok" name="ok"/>
            <endEvent id="no" name="no"/>
          </process>
        </definitions>
        """;

    // ---- options ---------------------------------------------------------

    static final class Options {
        Path db;
        int threads = 32;
        int seconds = 20;
        int warmup = 5;
        long inbox = -1;
        int inboxThreads = 2;
        int batch = 500;
        int queries = 200;
        boolean keepDb = false;
        boolean progress = false;
        String history = "audit";
        String h2Options = DEFAULT_H2_OPTIONS;
    }

    // QUERY_CACHE_SIZE: H2 re-parses every prepared statement that is not in
    // its per-connection cache (default 8 entries); Flowable's MyBatis
    // prepares each statement anew, so a cache big enough for the engine's
    // statements roughly doubles throughput. LOCK_TIMEOUT: under 32 threads
    // a row lock may be held longer than H2's default 1 s.
    // OPTIMIZE_REUSE_RESULTS=FALSE: H2 would otherwise hand back the previous
    // result of a cached statement re-run with the same parameters while no
    // table changed, which the repeated inbox query would measure instead of
    // the query.
    static final String DEFAULT_H2_OPTIONS =
        ";LOCK_TIMEOUT=30000;QUERY_CACHE_SIZE=256;OPTIMIZE_REUSE_RESULTS=FALSE";

    static void usage(String why) {
        if (why != null) {
            System.err.println("bpm_peer: " + why);
        }
        System.err.println(String.join("\n",
            "usage: BpmPeer --db DIR [--threads C] [--seconds S] [--warmup W]",
            "                        [--history none|activity|audit|full] [--keep-db]",
            "       BpmPeer --db DIR --inbox N [--inbox-threads T] [--batch B] [--keep-db]",
            "  --db DIR        directory for the H2 file database (files " + DB_NAME + ".*)",
            "  --threads C     client threads, default 32",
            "  --seconds S     measured seconds, default 20",
            "  --warmup W      warm-up seconds before measuring, default 5 (inbox mode:",
            "                  seconds of untimed inbox queries, at least 200 of them)",
            "  --history L     Flowable history level, default audit (the engine's default)",
            "  --h2-options S  appended to the H2 JDBC URL, default '" + DEFAULT_H2_OPTIONS + "'",
            "  --keep-db       reuse the database in DIR instead of starting empty",
            "  --progress      print instances completed per second to stderr",
            "  --inbox N       inbox mode: N open tasks for 'bench', time 200 page queries",
            "  --inbox-threads T  threads creating the inbox tasks, default 2",
            "  --batch B       instances started per transaction in inbox mode, default 500",
            "  --queries Q     timed inbox queries, default 200"));
        System.exit(2);
    }

    static Options parse(String[] args) {
        Options o = new Options();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String v = null;
            int eq = a.indexOf('=');
            if (a.startsWith("--") && eq > 0) {
                v = a.substring(eq + 1);
                a = a.substring(0, eq);
            }
            switch (a) {
                case "-h", "--help" -> usage(null);
                case "--keep-db" -> o.keepDb = true;
                case "--progress" -> o.progress = true;
                case "--db", "--threads", "--seconds", "--warmup", "--inbox",
                     "--inbox-threads", "--batch", "--history", "--queries", "--h2-options" -> {
                    if (v == null) {
                        if (i + 1 >= args.length) {
                            usage(a + " needs a value");
                        }
                        v = args[++i];
                    }
                    try {
                        switch (a) {
                            case "--db" -> o.db = Paths.get(v).toAbsolutePath().normalize();
                            case "--threads" -> o.threads = Integer.parseInt(v);
                            case "--seconds" -> o.seconds = Integer.parseInt(v);
                            case "--warmup" -> o.warmup = Integer.parseInt(v);
                            case "--inbox" -> o.inbox = Long.parseLong(v);
                            case "--inbox-threads" -> o.inboxThreads = Integer.parseInt(v);
                            case "--batch" -> o.batch = Integer.parseInt(v);
                            case "--queries" -> o.queries = Integer.parseInt(v);
                            case "--history" -> o.history = v;
                            case "--h2-options" -> o.h2Options = v;
                            default -> usage("unknown option " + a);
                        }
                    } catch (NumberFormatException e) {
                        usage(a + " wants a number, got '" + v + "'");
                    }
                }
                default -> usage("unknown argument '" + args[i] + "'");
            }
        }
        if (o.db == null) {
            usage("--db DIR is required");
        }
        if (o.threads < 1 || o.seconds < 1 || o.warmup < 0 || o.inboxThreads < 1
                || o.batch < 1 || o.queries < 1) {
            usage("threads, seconds, inbox-threads, batch and queries must be >= 1, warmup >= 0");
        }
        if (!List.of("none", "activity", "audit", "full").contains(o.history)) {
            usage("--history must be none, activity, audit or full");
        }
        return o;
    }

    // ---- small helpers ---------------------------------------------------

    /** Growable array of nanosecond samples, one per thread (no sharing). */
    static final class Samples {
        long[] v = new long[1 << 12];
        int n;

        void add(long x) {
            if (n == v.length) {
                v = Arrays.copyOf(v, n * 2);
            }
            v[n++] = x;
        }

        static long[] merge(List<Samples> parts) {
            int total = 0;
            for (Samples s : parts) {
                total += s.n;
            }
            long[] all = new long[total];
            int at = 0;
            for (Samples s : parts) {
                System.arraycopy(s.v, 0, all, at, s.n);
                at += s.n;
            }
            Arrays.sort(all);
            return all;
        }
    }

    /** Nearest-rank percentile of sorted nanoseconds, in milliseconds. */
    static double pctMs(long[] sorted, double p) {
        if (sorted.length == 0) {
            return Double.NaN;
        }
        int rank = (int) Math.ceil(p / 100.0 * sorted.length);
        rank = Math.max(1, Math.min(sorted.length, rank));
        return sorted[rank - 1] / 1e6;
    }

    static String num(double d) {
        if (Double.isNaN(d) || Double.isInfinite(d)) {
            return "null";
        }
        return String.format(Locale.ROOT, "%.3f", d);
    }

    static String str(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format(Locale.ROOT, "\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    static String flowableVersion() {
        try (InputStream in = ProcessEngine.class.getResourceAsStream(
                "/META-INF/maven/org.flowable/flowable-engine/pom.properties")) {
            if (in != null) {
                Properties p = new Properties();
                p.load(in);
                String v = p.getProperty("version");
                if (v != null) {
                    return v;
                }
            }
        } catch (IOException ignored) {
            // fall through to the schema version
        }
        return ProcessEngine.VERSION;
    }

    /** Removes this benchmark's own H2 files in dir (and nothing else). */
    static void wipeDb(Path dir) throws IOException {
        if (!Files.isDirectory(dir)) {
            return;
        }
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, DB_NAME + ".*")) {
            for (Path p : ds) {
                Files.deleteIfExists(p);
            }
        }
    }

    static ProcessEngine buildEngine(Options o, int poolSize) throws IOException {
        Files.createDirectories(o.db);
        if (!o.keepDb) {
            wipeDb(o.db);
        }
        StandaloneProcessEngineConfiguration cfg = new StandaloneProcessEngineConfiguration();
        cfg.setJdbcUrl("jdbc:h2:file:" + o.db.resolve(DB_NAME) + o.h2Options);
        cfg.setJdbcDriver("org.h2.Driver");
        cfg.setJdbcUsername("sa");
        cfg.setJdbcPassword("");
        // One pooled connection per client thread, so the pool never queues.
        cfg.setJdbcMaxActiveConnections(poolSize);
        cfg.setJdbcMaxIdleConnections(poolSize);
        cfg.setDatabaseSchemaUpdate(ProcessEngineConfiguration.DB_SCHEMA_UPDATE_TRUE);
        cfg.setHistory(o.history);
        // No timers or async continuations in this process.
        cfg.setAsyncExecutorActivate(false);
        // Users/groups and the event registry play no part here.
        cfg.setDisableIdmEngine(true);
        cfg.setDisableEventRegistry(true);
        return cfg.buildProcessEngine();
    }

    static String h2Version(ProcessEngine engine) {
        try (Connection c = engine.getProcessEngineConfiguration().getDataSource().getConnection()) {
            return c.getMetaData().getDatabaseProductVersion();
        } catch (Exception e) {
            return "unknown";
        }
    }

    static void deploy(ProcessEngine engine) {
        engine.getRepositoryService().createDeployment()
            .name("bpm_peer")
            .addString("benchApproval.bpmn20.xml", BPMN)
            .enableDuplicateFiltering()
            .deploy();
    }

    static void joinAll(List<Thread> threads) throws InterruptedException {
        for (Thread t : threads) {
            t.join();
        }
    }

    /**
     * CPU used by other processes on the machine over a window, in cores
     * (Linux /proc/stat minus this JVM's own CPU time). The machine may be
     * shared, and a busy neighbour moves every figure; this tells how busy.
     */
    static final class OtherCpu {
        final long wall0 = System.nanoTime();
        final long busy0 = machineBusyNanos();
        final long own0 = ownCpuNanos();

        static long machineBusyNanos() {
            try {
                for (String line : Files.readAllLines(Paths.get("/proc/stat"))) {
                    if (line.startsWith("cpu ")) {
                        String[] f = line.trim().split("\\s+");
                        long busy = 0;
                        // user nice system idle iowait irq softirq steal
                        for (int i = 1; i < f.length && i <= 8; i++) {
                            if (i != 4 && i != 5) {
                                busy += Long.parseLong(f[i]);
                            }
                        }
                        return busy * 10_000_000L; // USER_HZ = 100
                    }
                }
            } catch (Exception ignored) {
                // not Linux: unknown
            }
            return -1;
        }

        static long ownCpuNanos() {
            java.lang.management.OperatingSystemMXBean os =
                java.lang.management.ManagementFactory.getOperatingSystemMXBean();
            if (os instanceof com.sun.management.OperatingSystemMXBean sun) {
                return sun.getProcessCpuTime();
            }
            return -1;
        }

        /** Cores' worth of CPU others used since construction, or NaN. */
        double cores() {
            long busy1 = machineBusyNanos();
            long own1 = ownCpuNanos();
            long wall = System.nanoTime() - wall0;
            if (busy0 < 0 || busy1 < 0 || own0 < 0 || own1 < 0 || wall <= 0) {
                return Double.NaN;
            }
            return Math.max(0.0, ((busy1 - busy0) - (own1 - own0)) / (double) wall);
        }
    }

    // ---- throughput mode -------------------------------------------------

    static int runThroughput(Options o) throws Exception {
        ProcessEngine engine = buildEngine(o, o.threads + 2);
        try {
            deploy(engine);
            RuntimeService rs = engine.getRuntimeService();
            TaskService ts = engine.getTaskService();

            AtomicLong instanceNo = new AtomicLong();
            AtomicLong errors = new AtomicLong();
            AtomicLong notVisibleRetries = new AtomicLong();
            AtomicLong lastEnd = new AtomicLong(Long.MIN_VALUE);
            AtomicLong completed = new AtomicLong();
            AtomicReference<Throwable> firstError = new AtomicReference<>();
            List<Samples> whole = new ArrayList<>();
            List<Samples> toTask = new ArrayList<>();
            List<Thread> threads = new ArrayList<>();

            long begin = System.nanoTime();
            long measureStart = begin + o.warmup * 1_000_000_000L;
            long measureEnd = measureStart + o.seconds * 1_000_000_000L;

            for (int t = 0; t < o.threads; t++) {
                Samples w = new Samples();
                Samples s = new Samples();
                whole.add(w);
                toTask.add(s);
                final boolean startApproved = (t % 2) == 0;
                Thread th = new Thread(() -> {
                    boolean approved = startApproved;
                    long myLast = Long.MIN_VALUE;
                    while (true) {
                        long t0 = System.nanoTime();
                        if (t0 >= measureEnd) {
                            break;
                        }
                        try {
                            long n = instanceNo.incrementAndGet();
                            Map<String, Object> vars = new HashMap<>();
                            vars.put("n", n);
                            ProcessInstance pi = rs.startProcessInstanceByKey(PROCESS_KEY, vars);
                            Task task = ts.createTaskQuery().processInstanceId(pi.getId()).singleResult();
                            while (task == null) {
                                // Not expected: the task is made in the start transaction.
                                notVisibleRetries.incrementAndGet();
                                Thread.onSpinWait();
                                task = ts.createTaskQuery().processInstanceId(pi.getId()).singleResult();
                            }
                            long t1 = System.nanoTime();
                            ts.complete(task.getId(), Map.of("approved", approved));
                            long t2 = System.nanoTime();
                            approved = !approved;
                            completed.incrementAndGet();
                            if (t0 >= measureStart) {
                                w.add(t2 - t0);
                                s.add(t1 - t0);
                                myLast = t2;
                            }
                        } catch (Throwable e) {
                            errors.incrementAndGet();
                            firstError.compareAndSet(null, e);
                        }
                    }
                    final long endSeen = myLast;
                    lastEnd.accumulateAndGet(endSeen, Math::max);
                }, "bench-" + t);
                threads.add(th);
            }
            for (Thread th : threads) {
                th.start();
            }
            OtherCpu others = null;
            long prev = 0;
            for (int sec = 1; sec <= o.warmup + o.seconds; sec++) {
                if (sec == o.warmup + 1) {
                    others = new OtherCpu(); // the measured window starts now
                }
                if (!o.progress && sec > o.warmup) {
                    break;
                }
                Thread.sleep(Math.max(0, (begin + sec * 1_000_000_000L - System.nanoTime()) / 1_000_000));
                if (o.progress) {
                    long now = completed.get();
                    System.err.printf(Locale.ROOT, "bpm_peer: t=%ds%s %d/s%n", sec,
                        sec <= o.warmup ? " (warm-up)" : "", now - prev);
                    prev = now;
                }
            }
            joinAll(threads);
            double otherCores = others.cores();

            long[] all = Samples.merge(whole);
            long[] st = Samples.merge(toTask);
            int n = all.length;
            double elapsedS = n == 0 ? o.seconds : (lastEnd.get() - measureStart) / 1e9;
            if (firstError.get() != null) {
                System.err.println("bpm_peer: " + errors.get() + " iteration(s) failed; first:");
                firstError.get().printStackTrace();
            }

            // Which end each instance reached (warm-up included); needs a
            // history level that records activities.
            long endedOk = -1;
            long endedNo = -1;
            if (!o.history.equals("none")) {
                endedOk = engine.getHistoryService().createHistoricActivityInstanceQuery()
                    .activityId("ok").count();
                endedNo = engine.getHistoryService().createHistoricActivityInstanceQuery()
                    .activityId("no").count();
            }

            StringBuilder j = new StringBuilder("{");
            j.append("\"engine\":").append(str("flowable " + flowableVersion()));
            j.append(",\"db\":\"h2 file\"");
            j.append(",\"threads\":").append(o.threads);
            j.append(",\"seconds\":").append(o.seconds);
            j.append(",\"instances\":").append(n);
            j.append(",\"instances_per_sec\":").append(num(n / elapsedS));
            j.append(",\"p50_ms\":").append(num(pctMs(all, 50)));
            j.append(",\"p99_ms\":").append(num(pctMs(all, 99)));
            j.append(",\"start_to_task_p50_ms\":").append(num(pctMs(st, 50)));
            j.append(",\"start_to_task_p99_ms\":").append(num(pctMs(st, 99)));
            j.append(",\"max_ms\":").append(n == 0 ? "null" : num(all[n - 1] / 1e6));
            j.append(",\"warmup_seconds\":").append(o.warmup);
            j.append(",\"measured_seconds\":").append(num(elapsedS));
            j.append(",\"errors\":").append(errors.get());
            j.append(",\"task_not_visible_retries\":").append(notVisibleRetries.get());
            j.append(",\"history\":").append(str(o.history));
            j.append(",\"ended_ok\":").append(endedOk);
            j.append(",\"ended_no\":").append(endedNo);
            j.append(",\"cpus\":").append(Runtime.getRuntime().availableProcessors());
            j.append(",\"other_cpu_cores\":").append(num(otherCores));
            j.append(",\"h2\":").append(str(h2Version(engine)));
            j.append("}");
            System.out.println(j);
            return n > 0 ? 0 : 1;
        } finally {
            engine.close();
        }
    }

    // ---- inbox mode ------------------------------------------------------

    static int runInbox(Options o) throws Exception {
        ProcessEngine engine = buildEngine(o, Math.max(o.inboxThreads, 1) + 2);
        try {
            deploy(engine);
            RuntimeService rs = engine.getRuntimeService();
            TaskService ts = engine.getTaskService();
            ManagementService ms = engine.getManagementService();

            long existing = ts.createTaskQuery().taskAssignee(ASSIGNEE).count();
            long want = Math.max(0, o.inbox - existing);
            AtomicLong next = new AtomicLong(existing);
            long limit = existing + want;
            AtomicLong made = new AtomicLong();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            long step = Math.max(o.batch, want / 10);
            AtomicLong nextReport = new AtomicLong(step);

            long c0 = System.nanoTime();
            OtherCpu createOthers = new OtherCpu();
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < o.inboxThreads; t++) {
                Thread th = new Thread(() -> {
                    while (failure.get() == null) {
                        long from = next.getAndAdd(o.batch);
                        if (from >= limit) {
                            break;
                        }
                        long to = Math.min(limit, from + o.batch);
                        try {
                            // One transaction for the whole batch: the nested
                            // service calls join this command's context.
                            ms.executeCommand((Command<Void>) ctx -> {
                                for (long i = from; i < to; i++) {
                                    Map<String, Object> vars = new HashMap<>();
                                    vars.put("n", i + 1);
                                    rs.startProcessInstanceByKey(PROCESS_KEY, vars);
                                }
                                return null;
                            });
                        } catch (Throwable e) {
                            failure.compareAndSet(null, e);
                            break;
                        }
                        long done = made.addAndGet(to - from);
                        long r = nextReport.get();
                        if (done >= r && nextReport.compareAndSet(r, r + step)) {
                            System.err.printf(Locale.ROOT, "bpm_peer: %d/%d inbox tasks made, %.1f s%n",
                                done, want, (System.nanoTime() - c0) / 1e9);
                        }
                    }
                }, "inbox-" + t);
                threads.add(th);
                th.start();
            }
            joinAll(threads);
            double createS = (System.nanoTime() - c0) / 1e9;
            double createOtherCores = createOthers.cores();
            if (failure.get() != null) {
                System.err.println("bpm_peer: creating inbox tasks failed:");
                failure.get().printStackTrace();
                return 1;
            }

            long have = ts.createTaskQuery().taskAssignee(ASSIGNEE).count();
            int expectPage = (int) Math.min(50, have);
            // Warm the query path (JIT, statement and page caches) untimed:
            // --warmup seconds of the same query, and at least 200 of them.
            long w0 = System.nanoTime();
            long warmEnd = w0 + o.warmup * 1_000_000_000L;
            int warmQueries = 0;
            while (warmQueries < 200 || System.nanoTime() < warmEnd) {
                ts.createTaskQuery().taskAssignee(ASSIGNEE).orderByTaskCreateTime().desc().listPage(0, 50);
                warmQueries++;
            }
            OtherCpu others = new OtherCpu();
            long[] lat = new long[o.queries];
            for (int i = 0; i < o.queries; i++) {
                long q0 = System.nanoTime();
                List<Task> page = ts.createTaskQuery().taskAssignee(ASSIGNEE)
                    .orderByTaskCreateTime().desc().listPage(0, 50);
                lat[i] = System.nanoTime() - q0;
                if (page.size() != expectPage) {
                    System.err.println("bpm_peer: inbox page had " + page.size()
                        + " tasks, expected " + expectPage);
                    return 1;
                }
            }
            double otherCores = others.cores();
            Arrays.sort(lat);

            StringBuilder j = new StringBuilder("{");
            j.append("\"inbox_tasks\":").append(have);
            j.append(",\"inbox_p50_ms\":").append(num(pctMs(lat, 50)));
            j.append(",\"inbox_p99_ms\":").append(num(pctMs(lat, 99)));
            j.append(",\"queries\":").append(o.queries);
            j.append(",\"warmup_queries\":").append(warmQueries);
            j.append(",\"engine\":").append(str("flowable " + flowableVersion()));
            j.append(",\"db\":\"h2 file\"");
            j.append(",\"created\":").append(want);
            j.append(",\"create_seconds\":").append(num(createS));
            j.append(",\"created_per_sec\":").append(num(want == 0 ? 0 : want / createS));
            j.append(",\"create_other_cpu_cores\":").append(num(createOtherCores));
            j.append(",\"batch\":").append(o.batch);
            j.append(",\"cpus\":").append(Runtime.getRuntime().availableProcessors());
            j.append(",\"other_cpu_cores\":").append(num(otherCores));
            j.append(",\"history\":").append(str(o.history));
            j.append(",\"h2\":").append(str(h2Version(engine)));
            j.append("}");
            System.out.println(j);
            return 0;
        } finally {
            engine.close();
        }
    }

    public static void main(String[] args) throws Exception {
        Options o = parse(args);
        int rc = o.inbox >= 0 ? runInbox(o) : runThroughput(o);
        System.exit(rc);
    }
}
