import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.DFSTestUtil;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.MiniDFSNNTopology;
import org.apache.hadoop.hdfs.protocol.DatanodeID;
import org.apache.hadoop.hdfs.server.blockmanagement.BlockManagerTestUtil;
import org.apache.hadoop.hdfs.server.blockmanagement.DatanodeDescriptor;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.hdfs.server.namenode.FSNamesystem;
import org.apache.hadoop.hdfs.server.namenode.NameNode;
import org.apache.hadoop.hdfs.server.namenode.NameNodeAdapter;

/**
 * One HDFS site: a MiniDFSCluster with one namenode or an HA pair (one nameservice named after the
 * site) and N datanodes, all in this JVM, on fixed namenode ports so that a client's configuration
 * stays valid across namenode restarts and across a stop/start of the whole site.
 *
 * MiniDFSCluster renumbers its datanodes when one is stopped, so this class keeps its own stable
 * index per datanode (the order of the first start) and finds the live DataNode by its transfer
 * port, which a restart keeps (keepPort). The port, not the DatanodeID: a restarted datanode has no
 * DatanodeID until it has registered.
 */
final class MiniDfsSite {
    /** How long an operation may wait for the cluster to settle (a datanode registering, safe mode). */
    private static final long SETTLE_TIMEOUT_MS = 60_000;

    private final MiniDfsOptions opts;
    private final int[] rpcPorts;
    private final int[] httpPorts;
    private MiniDFSCluster cluster;
    /** Stable index -> transfer port of that datanode, fixed at the first start. */
    private final int[] dnXferPort;
    /** Stable index -> properties of a datanode this process stopped (null while it runs). */
    private final MiniDFSCluster.DataNodeProperties[] stoppedDn;

    MiniDfsSite(MiniDfsOptions opts) {
        this.opts = opts;
        this.rpcPorts = opts.rpcPorts.clone();
        this.httpPorts = opts.httpPorts.clone();
        this.dnXferPort = new int[opts.datanodes];
        this.stoppedDn = new MiniDFSCluster.DataNodeProperties[opts.datanodes];
    }

    boolean ha() {
        return opts.namenodes == 2;
    }

    /**
     * The configuration every daemon of the site starts from. Built anew for each start because
     * MiniDFSCluster writes the topology, directories and ports into the object it is given.
     */
    private Configuration siteConf() {
        Configuration conf = new HdfsConfiguration();
        conf.setInt("dfs.replication", opts.replication);
        // MIFAS and the tests may run as another user than this JVM; the sites are test fixtures
        conf.setBoolean("dfs.permissions.enabled", false);
        conf.setBoolean("dfs.webhdfs.enabled", true);
        // A killed datanode is "stale" after 3 s (avoided for new blocks and ordered last for
        // reads) and dead after 2*recheck + 10*heartbeat = 12 s, instead of 30 s and 10.5 min.
        // hdfs-native does not exclude an unreachable datanode when it sets up a new block's
        // pipeline, so the namenode must stop handing it out quickly.
        conf.setLong("dfs.heartbeat.interval", 1);
        conf.setInt("dfs.namenode.heartbeat.recheck-interval", 1000);
        conf.setLong("dfs.namenode.stale.datanode.interval", 3000);
        conf.setBoolean("dfs.namenode.avoid.read.stale.datanode", true);
        conf.setBoolean("dfs.namenode.avoid.write.stale.datanode", true);
        // with 2 datanodes one stale node is 50 %: keep avoiding it whatever the ratio
        conf.setFloat("dfs.namenode.write.stale.datanode.ratio", 1.0f);
        // the DFS clients inside the site (WebHDFS on the datanodes) behave as we ask MIFAS to
        conf.setBoolean("dfs.client.block.write.replace-datanode-on-failure.enable", false);
        // the datanodes' internal DFS client (WebHDFS reads) waits 3 s per retry round over
        // replicas that all failed; corrupt-block tests then take 10 s per read
        conf.setInt("dfs.client.retry.window.base", 100);
        // a datanode whose namenode is down retries the connection 10 times a second apart,
        // and stopping it waits for that loop: killing a datanode then took 8 s
        conf.setInt("ipc.client.connect.max.retries", 2);
        conf.setInt("ipc.client.connect.retry.interval", 200);
        // a restarted namenode leaves safe mode as soon as the blocks are reported
        conf.setInt("dfs.namenode.safemode.extension", 0);
        // fewer threads: three sites share 2 cores with the archive under test
        conf.setInt("dfs.namenode.handler.count", 4);
        conf.setInt("dfs.namenode.service.handler.count", 2);
        conf.setInt("dfs.datanode.handler.count", 2);
        // a client may choose small blocks (multiple of 512), so multi-block objects need no
        // hundreds of MB; the default floor is 1 MiB
        conf.setLong("dfs.namenode.fs-limits.min-block-size", 4096);
        if (ha()) {
            // our own shared edits directory: MiniDFSCluster deletes the one it manages at every
            // build, which would make a restart of the whole site (format=false) impossible
            conf.set("dfs.namenode.shared.edits.dir", new File(opts.baseDir, "shared-edits").toURI().toString());
            // a restarted namenode names the nameservice, not itself, in WebHDFS redirects; the
            // datanodes' own DFS client then needs to know how to fail over inside it
            conf.set("dfs.client.failover.proxy.provider." + opts.name,
                    "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider");
        }
        if (opts.bindAddress != null) {
            String a = opts.bindAddress;
            // datanodes listen on and advertise this address (a client sets
            // dfs.client.use.datanode.hostname=true: the namenode records the registering
            // connection's source address as the datanode's IP); namenodes listen on every address
            // of this host or network namespace, since their configured address stays 127.0.0.1
            conf.set("dfs.datanode.address", a + ":0");
            conf.set("dfs.datanode.http.address", a + ":0");
            conf.set("dfs.datanode.ipc.address", a + ":0");
            conf.set("dfs.datanode.hostname", a);
            // the datanodes' own connections (pipeline to the next datanode, WebHDFS's internal
            // client) must also use that hostname instead of the recorded 127.0.0.1
            conf.setBoolean("dfs.datanode.use.datanode.hostname", true);
            conf.setBoolean("dfs.client.use.datanode.hostname", true);
            conf.set("dfs.namenode.rpc-bind-host", "0.0.0.0");
            conf.set("dfs.namenode.servicerpc-bind-host", "0.0.0.0");
            conf.set("dfs.namenode.http-bind-host", "0.0.0.0");
        }
        return conf;
    }

    private MiniDFSNNTopology topology() {
        if (!ha()) {
            return MiniDFSNNTopology.simpleSingleNN(rpcPorts[0], httpPorts[0]);
        }
        MiniDFSNNTopology.NSConf ns = new MiniDFSNNTopology.NSConf(opts.name);
        for (int i = 0; i < opts.namenodes; i++) {
            ns.addNN(new MiniDFSNNTopology.NNConf("nn" + i).setIpcPort(rpcPorts[i]).setHttpPort(httpPorts[i]));
        }
        return new MiniDFSNNTopology().addNameservice(ns);
    }

    /** A marker written after the first successful start: later starts reuse the data (no format). */
    private File formattedMarker() {
        return new File(opts.baseDir, "minidfs-formatted");
    }

    /**
     * Starts the whole site: formats it on the very first start, reuses its data afterwards (the
     * same base directory, the same namenode ports). An HA pair comes up with namenode 0 active.
     */
    void start() throws Exception {
        if (cluster != null) {
            throw new IllegalStateException("site is already running");
        }
        boolean format = !formattedMarker().exists();
        MiniDFSCluster.Builder b = new MiniDFSCluster.Builder(siteConf(), opts.baseDir)
                .nnTopology(topology())
                .numDataNodes(opts.datanodes)
                .format(format)
                .manageNameDfsSharedDirs(false)
                // an HA pair starts as two standbys: safe mode is waited for below, on the active
                .waitSafeMode(!ha())
                // do not let a Hadoop ExitUtil.terminate in a daemon be rethrown at shutdown
                .checkExitOnShutdown(false)
                .checkDataNodeAddrConfig(opts.bindAddress != null)
                .checkDataNodeHostConfig(opts.bindAddress != null);
        MiniDFSCluster c = b.build();
        cluster = c;
        try {
            // record what an ephemeral port (0) became, so that restarts keep it
            for (int i = 0; i < opts.namenodes; i++) {
                NameNode nn = c.getNameNode(i);
                rpcPorts[i] = nn.getNameNodeAddress().getPort();
                httpPorts[i] = nn.getHttpAddress().getPort();
            }
            if (ha()) {
                c.transitionToActive(0);
            }
            c.waitActive();
            for (int i = 0; i < opts.namenodes; i++) {
                waitOutOfSafeMode(i);
            }
            List<DataNode> dns = c.getDataNodes();
            for (int i = 0; i < dns.size(); i++) {
                dnXferPort[i] = dns.get(i).getXferAddress().getPort();
                stoppedDn[i] = null;
            }
            if (format && !formattedMarker().createNewFile() && !formattedMarker().exists()) {
                throw new IOException("cannot create " + formattedMarker());
            }
        } catch (Exception e) {
            stop();
            throw e;
        }
    }

    /** Shuts the whole site down and keeps its data (for start()). */
    void stop() {
        if (cluster == null) {
            return;
        }
        MiniDFSCluster c = cluster;
        cluster = null;
        c.shutdown(false);
    }

    private MiniDFSCluster live() {
        if (cluster == null) {
            throw new IllegalStateException("site is stopped");
        }
        return cluster;
    }

    private void checkNn(int i) {
        if (i < 0 || i >= opts.namenodes) {
            throw new IllegalArgumentException("no namenode " + i + " (namenodes 0.." + (opts.namenodes - 1) + ")");
        }
    }

    private void checkDn(int i) {
        if (i < 0 || i >= opts.datanodes) {
            throw new IllegalArgumentException("no datanode " + i + " (datanodes 0.." + (opts.datanodes - 1) + ")");
        }
    }

    private NameNode nameNode(int i) {
        checkNn(i);
        return live().getNameNode(i);
    }

    /** The running DataNode with stable index i, or null when it is stopped. */
    private DataNode dataNode(int i) {
        int pos = position(i);
        return pos < 0 ? null : live().getDataNodes().get(pos);
    }

    /** Where the datanode with stable index i is in MiniDFSCluster's current list, or -1. */
    private int position(int i) {
        checkDn(i);
        List<DataNode> dns = live().getDataNodes();
        for (int p = 0; p < dns.size(); p++) {
            if (dns.get(p).getXferAddress().getPort() == dnXferPort[i]) {
                return p;
            }
        }
        return -1;
    }

    private void waitOutOfSafeMode(int i) throws InterruptedException {
        NameNode nn = live().getNameNode(i);
        if (nn == null || !nn.isActiveState()) {
            return;
        }
        long deadline = System.currentTimeMillis() + SETTLE_TIMEOUT_MS;
        // the namenode offers no notification for leaving safe mode; it leaves within a heartbeat
        while (nn.isInSafeMode()) {
            if (System.currentTimeMillis() > deadline) {
                throw new IllegalStateException("namenode " + i + " still in safe mode after " + SETTLE_TIMEOUT_MS + " ms");
            }
            Thread.sleep(50);
        }
    }

    String killDatanode(int i) {
        int pos = position(i);
        if (pos < 0) {
            throw new IllegalStateException("datanode " + i + " is already down");
        }
        stoppedDn[i] = live().stopDataNode(pos);
        return "datanode " + i + " down";
    }

    /**
     * Tells every running namenode at once that a killed datanode is dead, instead of waiting for
     * its heartbeats to expire (12 s here): blocks on it count as under-replicated at once.
     */
    String expireDatanode(int i) throws IOException {
        checkDn(i);
        if (dataNode(i) != null) {
            throw new IllegalStateException("datanode " + i + " is running: kill it first");
        }
        MiniDFSCluster.DataNodeProperties props = stoppedDn[i];
        if (props == null) {
            throw new IllegalStateException("datanode " + i + " was not stopped by this launcher");
        }
        DatanodeID id = props.getDatanode().getDatanodeId();
        for (int n = 0; n < opts.namenodes; n++) {
            NameNode nn = live().getNameNode(n);
            if (nn == null) {
                continue;
            }
            FSNamesystem fsn = live().getNamesystem(n);
            DatanodeDescriptor d = NameNodeAdapter.getDatanode(fsn, id);
            if (d != null) {
                DFSTestUtil.setDatanodeDead(d);
                BlockManagerTestUtil.checkHeartbeat(fsn.getBlockManager());
            }
        }
        return "datanode " + i + " dead on the namenodes";
    }

    String restartDatanode(int i) throws Exception {
        checkDn(i);
        if (dataNode(i) != null) {
            throw new IllegalStateException("datanode " + i + " is running");
        }
        MiniDFSCluster.DataNodeProperties props = stoppedDn[i];
        if (props == null) {
            throw new IllegalStateException("datanode " + i + " was not stopped by this launcher");
        }
        // keepPort: the same transfer address, so clients and this index map stay valid
        if (!live().restartDataNode(props, true)) {
            throw new IOException("datanode " + i + " did not restart");
        }
        stoppedDn[i] = null;
        DataNode dn = dataNode(i);
        if (dn == null) {
            throw new IllegalStateException("restarted datanode " + i + " is not in the cluster");
        }
        // registered (MiniDFSCluster sends the first block report at once). Not
        // triggerBlockReports(): it waits for every namenode, forever when one is down
        live().waitDatanodeFullyStarted(dn, (int) SETTLE_TIMEOUT_MS);
        return "datanode " + i + " up";
    }

    String killNamenode(int i) {
        if (nameNode(i) == null) {
            throw new IllegalStateException("namenode " + i + " is already down");
        }
        live().shutdownNameNode(i);
        return "namenode " + i + " down";
    }

    String restartNamenode(int i) throws Exception {
        if (nameNode(i) != null) {
            throw new IllegalStateException("namenode " + i + " is running");
        }
        // waitActive=false: an HA namenode comes back as standby and waitActive would wait for
        // an active one; a single namenode comes back active and leaves safe mode below
        live().restartNameNode(i, false);
        live().waitNameNodeUp(i);
        if (!ha()) {
            live().waitActive(i);
        }
        waitOutOfSafeMode(i);
        return "namenode " + i + " " + nnState(i);
    }

    String transitionActive(int i) throws Exception {
        requireHa();
        if (nameNode(i) == null) {
            throw new IllegalStateException("namenode " + i + " is down");
        }
        // MiniDFSCluster's HA pair shares one edits directory with no fencing: two actives would
        // corrupt it, so promotion requires the other one to be standby or down (fence first)
        for (int n = 0; n < opts.namenodes; n++) {
            if (n != i && "active".equals(nnState(n))) {
                throw new IllegalStateException("namenode " + n + " is active: transition it to standby (or kill it) first");
            }
        }
        live().transitionToActive(i);
        waitOutOfSafeMode(i);
        return "namenode " + i + " " + nnState(i);
    }

    String transitionStandby(int i) throws Exception {
        requireHa();
        if (nameNode(i) == null) {
            throw new IllegalStateException("namenode " + i + " is down");
        }
        live().transitionToStandby(i);
        return "namenode " + i + " " + nnState(i);
    }

    private void requireHa() {
        if (!ha()) {
            throw new IllegalStateException("site has a single namenode (no HA transitions)");
        }
    }

    private String nnState(int i) {
        NameNode nn = cluster == null ? null : cluster.getNameNode(i);
        if (nn == null) {
            return "down";
        }
        if (nn.isActiveState()) {
            return "active";
        }
        if (nn.isStandbyState()) {
            return "standby";
        }
        return nn.getState().toLowerCase();
    }

    /** "site=up namenodes=active,standby datanodes=up,down" */
    String state() {
        List<String> nns = new ArrayList<>();
        for (int i = 0; i < opts.namenodes; i++) {
            nns.add(nnState(i));
        }
        List<String> dns = new ArrayList<>();
        for (int i = 0; i < opts.datanodes; i++) {
            dns.add(cluster != null && dataNode(i) != null ? "up" : "down");
        }
        return "site=" + (cluster != null ? "up" : "down")
                + " namenodes=" + String.join(",", nns)
                + " datanodes=" + String.join(",", dns);
    }

    /** Corrupts every on-disk replica of the first block of PATH (HDFS checksums will fail on read). */
    String corruptBlock(String path) throws IOException {
        MiniDFSCluster c = live();
        org.apache.hadoop.hdfs.protocol.ExtendedBlock blk =
                DFSTestUtil.getFirstBlock(c.getFileSystem(activeIndex()), new org.apache.hadoop.fs.Path(path));
        int n = 0;
        for (DataNode dn : c.getDataNodes()) {
            try {
                c.corruptReplica(dn, blk);
                n++;
            } catch (IOException e) {
                // this datanode holds no replica of the block
            }
        }
        if (n == 0) {
            throw new IOException("no replica of " + blk + " found on a running datanode");
        }
        return "corrupted " + n + " replica(s) of " + blk.getBlockName();
    }

    private int activeIndex() {
        for (int i = 0; i < opts.namenodes; i++) {
            if ("active".equals(nnState(i))) {
                return i;
            }
        }
        throw new IllegalStateException("no active namenode");
    }

    String host() {
        return opts.bindAddress != null ? opts.bindAddress : "127.0.0.1";
    }

    String url() {
        return ha() ? "hdfs://" + opts.name : "hdfs://" + host() + ":" + rpcPorts[0];
    }

    String namenodes() {
        List<String> l = new ArrayList<>();
        for (int p : rpcPorts) {
            l.add(host() + ":" + p);
        }
        return String.join(",", l);
    }

    String http() {
        List<String> l = new ArrayList<>();
        for (int p : httpPorts) {
            l.add(host() + ":" + p);
        }
        return String.join(",", l);
    }

    /** Transfer addresses ("ip:port") of the datanodes, by stable index, also while one is down. */
    String datanodeAddrs() {
        List<String> l = new ArrayList<>();
        for (int p : dnXferPort) {
            l.add(host() + ":" + p);
        }
        return String.join(",", l);
    }
}
