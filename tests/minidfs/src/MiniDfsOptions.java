import java.io.File;

/** Command-line options of the launcher (see MiniDfsLauncher's usage text). */
final class MiniDfsOptions {
    String name;
    int namenodes = 1;
    int datanodes = 2;
    int replication = -1;
    File baseDir;
    int[] rpcPorts;
    int[] httpPorts;
    String bindAddress;

    static final String USAGE = String.join("\n",
            "usage: MiniDfsLauncher --name SITE --base-dir DIR --nn-ports P[,P2] [--nn-http-ports H[,H2]]",
            "                       [--namenodes 1|2] [--datanodes N] [--replication R] [--bind-address IP]",
            "  --namenodes 2     an HA pair in one nameservice named SITE (url hdfs://SITE); namenode 0 starts active",
            "  --nn-ports        namenode RPC ports, one per namenode (0 = any free port, kept across restarts)",
            "  --nn-http-ports   namenode HTTP (WebHDFS) ports, default 0",
            "  --replication     default min(datanodes, 2)",
            "  --bind-address    datanodes listen on and advertise IP (clients then set",
            "                    dfs.client.use.datanode.hostname=true); namenodes listen on 0.0.0.0");

    static MiniDfsOptions parse(String[] args) {
        MiniDfsOptions o = new MiniDfsOptions();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (i + 1 >= args.length) {
                throw new IllegalArgumentException("missing value after " + a);
            }
            String v = args[++i];
            switch (a) {
                case "--name": o.name = v; break;
                case "--namenodes": o.namenodes = Integer.parseInt(v); break;
                case "--datanodes": o.datanodes = Integer.parseInt(v); break;
                case "--replication": o.replication = Integer.parseInt(v); break;
                case "--base-dir": o.baseDir = new File(v).getAbsoluteFile(); break;
                case "--nn-ports": o.rpcPorts = ports(v); break;
                case "--nn-http-ports": o.httpPorts = ports(v); break;
                case "--bind-address": o.bindAddress = v; break;
                default: throw new IllegalArgumentException("unknown option " + a);
            }
        }
        if (o.name == null || !o.name.matches("[A-Za-z][A-Za-z0-9_-]*")) {
            // the name is the HA nameservice id and part of hdfs:// URLs
            throw new IllegalArgumentException("--name must match [A-Za-z][A-Za-z0-9_-]*");
        }
        if (o.namenodes != 1 && o.namenodes != 2) {
            throw new IllegalArgumentException("--namenodes must be 1 or 2");
        }
        if (o.datanodes < 1) {
            throw new IllegalArgumentException("--datanodes must be at least 1");
        }
        if (o.baseDir == null) {
            throw new IllegalArgumentException("--base-dir is required");
        }
        if (o.rpcPorts == null) {
            throw new IllegalArgumentException("--nn-ports is required");
        }
        if (o.httpPorts == null) {
            o.httpPorts = new int[o.namenodes];
        }
        if (o.rpcPorts.length != o.namenodes || o.httpPorts.length != o.namenodes) {
            throw new IllegalArgumentException("--nn-ports and --nn-http-ports need one port per namenode");
        }
        if (o.replication < 0) {
            o.replication = Math.min(o.datanodes, 2);
        }
        if (o.replication < 1 || o.replication > o.datanodes) {
            throw new IllegalArgumentException("--replication must be 1.." + o.datanodes);
        }
        return o;
    }

    private static int[] ports(String v) {
        String[] parts = v.split(",");
        int[] p = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            p[i] = Integer.parseInt(parts[i].trim());
            if (p[i] < 0 || p[i] > 65535) {
                throw new IllegalArgumentException("bad port " + parts[i]);
            }
        }
        return p;
    }
}
