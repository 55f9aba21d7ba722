use super::checks::test_site;
use super::*;

#[test]
fn ha_site_config() {
    let nns = vec!["10.0.0.1:8020".to_string(), "10.0.0.2:8020".to_string()];
    let mut site = test_site("hdfs://arch", &nns, 30);
    site.hadoop
        .insert("dfs.client.socket-timeout".into(), "5000".into());
    let c = client_config(&site, "arch", &nns);
    assert_eq!(c["dfs.nameservices"], "arch");
    assert_eq!(c["dfs.ha.namenodes.arch"], "nn0,nn1");
    assert_eq!(c["dfs.namenode.rpc-address.arch.nn0"], "10.0.0.1:8020");
    assert_eq!(c["dfs.namenode.rpc-address.arch.nn1"], "10.0.0.2:8020");
    assert!(
        c["dfs.client.failover.proxy.provider.arch"].ends_with("ConfiguredFailoverProxyProvider")
    );
    assert_eq!(c["dfs.client.failover.max.attempts"], "2");
    assert_eq!(
        c["dfs.client.block.write.replace-datanode-on-failure.best-effort"],
        "true"
    );
    assert_eq!(
        c["dfs.client.socket-timeout"], "5000",
        "the site's own keys win"
    );

    let single = test_site("hdfs://nn:8020", &[], 4);
    let c = client_config(&single, "nn:8020", &[]);
    assert!(!c.contains_key("dfs.nameservices"));
    assert_eq!(
        c["dfs.client.socket-timeout"], "2000",
        "half the call timeout"
    );
}

#[test]
fn only_hdfs_urls() {
    let err = HdfsFs::connect(&test_site("file:///srv/x", &[], 5)).map(|_| ());
    assert!(matches!(err, Err(StorageError::Io { .. })), "{err:?}");
    let ok = HdfsFs::connect(&test_site("hdfs://127.0.0.1:1", &[], 5));
    assert!(ok.is_ok(), "building a client does not connect");
}

/// Real TCP peers: a port nobody listens on, and a listener that never answers. Both must
/// give Unavailable within the site's timeout, never hang.
#[tokio::test]
async fn dead_addresses_are_unavailable_in_time() {
    let r = checks::check_dead_addresses(1).await;
    assert!(r.is_ok(), "{r:?}");
}

/// hdfs-native reads HADOOP_CONF_DIR unless told otherwise; a site must not. The parent runs
/// this test binary again with HADOOP_CONF_DIR pointing at a malformed hdfs-site.xml (which
/// hdfs-native fails on when it reads it) and checks the child test passed.
#[test]
fn hadoop_conf_dir_does_not_leak() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("hdfs-site.xml"),
        "<configuration><property>",
    )
    .expect("write bad hdfs-site.xml");
    let exe = std::env::current_exe().expect("current exe");
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "storage::hdfs::tests::hadoop_conf_dir_child",
            "--test-threads=1",
        ])
        .env("HADOOP_CONF_DIR", dir.path())
        .env(CHILD_ENV, "1")
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CHILD_ENV: &str = "MIFAS_HDFS_CONF_CHILD";

/// Half of `hadoop_conf_dir_does_not_leak`: does nothing unless run by it.
#[test]
fn hadoop_conf_dir_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    // the bad file is really there and read by a client built the default way...
    let default = ClientBuilder::new().with_url("hdfs://127.0.0.1:1").build();
    assert!(default.is_err(), "hdfs-native did not read HADOOP_CONF_DIR");
    // ...and not by ours
    let ours = HdfsFs::connect(&checks::test_site("hdfs://127.0.0.1:1", &[], 5));
    assert!(
        ours.is_ok(),
        "HADOOP_CONF_DIR leaked into the site: {ours:?}"
    );
}
