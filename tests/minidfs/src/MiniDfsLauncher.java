import java.io.BufferedReader;
import java.io.File;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * Test launcher for one HDFS site (MiniDFSCluster), driven over stdin/stdout by the tests.
 *
 * stdout carries the protocol only: one READY line, then exactly one reply line per command.
 * Everything else (Hadoop's logging, stack traces) goes to stderr. The launcher shuts the site down
 * and exits 0 when stdin closes, so a test that dies leaves no JVM behind; if a command is still
 * stuck 30 s later, it halts with exit code 3.
 *
 * READY line:
 *   MINIDFS READY name=SITE url=hdfs://... namenodes=H:P[,H:P] http=H:P[,H:P] datanodes=N conf=FILE
 * FILE holds the client settings (key=value lines) a client of this site should use; the
 * command client-conf prints the same as one line.
 *
 * Commands (reply "OK ..." or "ERR ..."): kill-datanode I, restart-datanode I, expire-datanode I,
 * kill-namenode I, restart-namenode I, transition-active I, transition-standby I, state, stop,
 * start, corrupt-block PATH, client-conf, datanodes (transfer addresses by index, where a client
 * connects to them; block locations name the same ports; a whole-site start gives new ports).
 */
public final class MiniDfsLauncher {
    private MiniDfsLauncher() {
    }

    public static void main(String[] args) throws Exception {
        // the protocol stream is the real stdout; anything Hadoop prints goes to stderr
        PrintStream proto = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        System.setOut(System.err);
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel",
                System.getenv().getOrDefault("MINIDFS_LOG_LEVEL", "warn"));
        System.setProperty("org.slf4j.simpleLogger.showDateTime", "true");

        MiniDfsOptions opts;
        try {
            opts = MiniDfsOptions.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println(e.getMessage());
            System.err.println(MiniDfsOptions.USAGE);
            proto.println("MINIDFS FAILED " + oneLine(e.getMessage()));
            System.exit(2);
            return;
        }
        if (!opts.baseDir.isDirectory() && !opts.baseDir.mkdirs()) {
            proto.println("MINIDFS FAILED cannot create " + opts.baseDir);
            System.exit(2);
        }

        MiniDfsSite site = new MiniDfsSite(opts);
        // SIGTERM/SIGINT: take the daemons down with us (stop() is a no-op once stopped), but do
        // not let a shutdown that hangs keep the JVM alive
        Runtime.getRuntime().addShutdownHook(new Thread(() -> stopWithin(site, EXIT_GRACE_MS), "minidfs-stop"));
        long t0 = System.nanoTime();
        try {
            site.start();
        } catch (Throwable e) {
            e.printStackTrace();
            proto.println("MINIDFS FAILED " + oneLine(e.toString()));
            site.stop();
            System.exit(1);
        }
        File conf = new File(opts.baseDir, "client.conf");
        writeClientConf(conf, clientConf(opts, site));
        System.err.printf("minidfs %s started in %.1f s%n", opts.name, (System.nanoTime() - t0) / 1e9);
        proto.println("MINIDFS READY name=" + opts.name + " url=" + site.url() + " namenodes=" + site.namenodes()
                + " http=" + site.http() + " datanodes=" + opts.datanodes + " conf=" + conf.getPath());

        // stdin is read on its own thread: its end must stop the JVM even while a command hangs
        BlockingQueue<String> commands = new LinkedBlockingQueue<>();
        Thread reader = new Thread(() -> readCommands(commands), "minidfs-stdin");
        reader.setDaemon(true);
        reader.start();
        while (true) {
            String line = commands.take();
            if (line == EOF) {
                break;
            }
            line = line.trim();
            if (line.isEmpty()) {
                continue;
            }
            String reply;
            try {
                reply = "OK " + execute(site, opts, line);
            } catch (Throwable e) {
                e.printStackTrace();
                reply = "ERR " + oneLine(e.getClass().getSimpleName() + ": " + e.getMessage());
            }
            proto.println(oneLine(reply));
        }
        // stdin closed: the test is gone (or done)
        site.stop();
        System.exit(0);
    }

    /** How long the site may take to shut down once stdin has closed or a signal came. */
    private static final long EXIT_GRACE_MS = 30_000;
    /** End of stdin in the command queue (compared by identity). */
    private static final String EOF = new String("<eof>");

    private static void readCommands(BlockingQueue<String> commands) {
        try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                commands.add(line);
            }
        } catch (Exception e) {
            e.printStackTrace();
        }
        commands.add(EOF);
        // the main thread normally stops the site and exits now; if it is stuck in a command
        // (a MiniDFSCluster wait that never ends), end the process anyway: no JVM left behind
        try {
            Thread.sleep(EXIT_GRACE_MS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        System.err.println("minidfs: stdin closed but the site did not stop within " + EXIT_GRACE_MS + " ms: halting");
        Runtime.getRuntime().halt(3);
    }

    private static void stopWithin(MiniDfsSite site, long ms) {
        Thread t = new Thread(site::stop, "minidfs-shutdown");
        t.setDaemon(true);
        t.start();
        try {
            t.join(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static String execute(MiniDfsSite site, MiniDfsOptions opts, String line) throws Exception {
        String[] w = line.split("\\s+", 2);
        String cmd = w[0];
        String arg = w.length > 1 ? w[1].trim() : null;
        switch (cmd) {
            case "state":
                return site.state();
            case "datanodes":
                return site.datanodeAddrs();
            case "client-conf": {
                List<String> kv = new ArrayList<>();
                for (Map.Entry<String, String> e : clientConf(opts, site).entrySet()) {
                    kv.add(e.getKey() + "=" + e.getValue());
                }
                return String.join(" ", kv);
            }
            case "stop":
                site.stop();
                return site.state();
            case "start":
                site.start();
                return site.state();
            case "kill-datanode":
                return site.killDatanode(index(arg));
            case "expire-datanode":
                return site.expireDatanode(index(arg));
            case "restart-datanode":
                return site.restartDatanode(index(arg));
            case "kill-namenode":
                return site.killNamenode(index(arg));
            case "restart-namenode":
                return site.restartNamenode(index(arg));
            case "transition-active":
                return site.transitionActive(index(arg));
            case "transition-standby":
                return site.transitionStandby(index(arg));
            case "corrupt-block":
                if (arg == null || !arg.startsWith("/")) {
                    throw new IllegalArgumentException("corrupt-block needs an absolute path");
                }
                return site.corruptBlock(arg);
            default:
                throw new IllegalArgumentException("unknown command " + cmd);
        }
    }

    private static int index(String arg) {
        if (arg == null) {
            throw new IllegalArgumentException("missing index");
        }
        return Integer.parseInt(arg);
    }

    /**
     * What a client of this site should set. For hdfs-native (MIFAS) these are passed to
     * ClientBuilder::with_config; none of them is read from a global HADOOP_CONF_DIR.
     */
    static Map<String, String> clientConf(MiniDfsOptions opts, MiniDfsSite site) {
        Map<String, String> m = new LinkedHashMap<>();
        if (site.ha()) {
            String[] nns = site.namenodes().split(",");
            List<String> ids = new ArrayList<>();
            for (int i = 0; i < nns.length; i++) {
                ids.add("nn" + i);
                m.put("dfs.namenode.rpc-address." + opts.name + ".nn" + i, nns[i]);
            }
            m.put("dfs.ha.namenodes." + opts.name, String.join(",", ids));
            m.put("dfs.client.failover.proxy.provider." + opts.name,
                    "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider");
        }
        // a site has few datanodes: there is never a spare to add to a pipeline that lost one, so
        // a write whose pipeline loses a datanode goes on with the others instead of failing
        m.put("dfs.client.block.write.replace-datanode-on-failure.enable", "false");
        m.put("dfs.client.block.write.replace-datanode-on-failure.policy", "NEVER");
        if (opts.bindAddress != null) {
            // the namenode reports the datanodes' registration source address as their IP;
            // their hostname is the bind address
            m.put("dfs.client.use.datanode.hostname", "true");
        }
        return m;
    }

    private static void writeClientConf(File f, Map<String, String> conf) throws Exception {
        File tmp = new File(f.getPath() + ".tmp");
        try (PrintWriter w = new PrintWriter(tmp, StandardCharsets.UTF_8)) {
            for (Map.Entry<String, String> e : conf.entrySet()) {
                w.println(e.getKey() + "=" + e.getValue());
            }
        }
        Files.move(tmp.toPath(), f.toPath(), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    }

    private static String oneLine(String s) {
        return s == null ? "" : s.replace('\r', ' ').replace('\n', ' ');
    }
}
