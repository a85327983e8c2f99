//! The drill engine (`clients::restore`) against a real PostgreSQL and a real S3 server
//! (Garage), both throw-away: the two ways a dump reaches the drill database (streamed into the
//! restore tool as it downloads, or downloaded to a file and restored with `--jobs`), chosen
//! from the table sizes the backup recorded, and a corrupt object failing the drill either way.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use acceptance_tests::support::garage::GarageServer;
use acceptance_tests::support::postgres::{PgServer, pg_bin_dir};
use artifortress_provider::clients::backup::{
    self, BackupSpec, Compression, Format, Manifest, PARITY_TABLES, TableBytes,
};
use artifortress_provider::clients::object_store::{self, ObjectStoreConfig};
use artifortress_provider::clients::restore::{self, DrillError, DrillSpec, DrillStage};
use tokio_util::sync::CancellationToken;

fn s3(g: &GarageServer) -> aws_sdk_s3::Client {
    object_store::client(&ObjectStoreConfig {
        endpoint: Some(g.endpoint()),
        region: g.region().to_string(),
        access_key_id: Some(g.access_key().to_string()),
        secret_access_key: Some(g.secret_key().to_string()),
        force_path_style: true,
    })
}

fn backup_spec(g: &GarageServer, prefix: &str, format: Format) -> BackupSpec {
    BackupSpec {
        bucket: g.bucket().to_string(),
        prefix: prefix.to_string(),
        format,
        compression: Compression::None,
        labels: BTreeMap::new(),
        verify: true,
        pg_dump: pg_bin_dir().unwrap().join("pg_dump"),
        connect_timeout: Duration::from_secs(10),
    }
}

fn drill_spec(pg: &PgServer, m: &Manifest) -> DrillSpec {
    DrillSpec {
        bucket: m.bucket.clone(),
        manifest_key: m.manifest_key.clone(),
        admin_url: pg.database_url("postgres"),
        drill_database: "drill".to_string(),
        parity_tables: PARITY_TABLES.iter().map(|t| t.to_string()).collect(),
        rto_target_seconds: 3600.0,
        rpo_target_seconds: 3600.0,
        keep_drill_database: false,
        bin_dir: Some(pg_bin_dir().unwrap()),
        connect_timeout: Duration::from_secs(10),
    }
}

/// Runs a drill; returns its result and the order of its stages (`Downloaded` before
/// `Restoring`: from a file; after: streamed).
async fn drill(
    s3: &aws_sdk_s3::Client,
    spec: &DrillSpec,
) -> (Result<restore::DrillReport, DrillError>, Vec<&'static str>) {
    let stages = Mutex::new(Vec::new());
    let r = restore::run_watched(s3, spec, &CancellationToken::new(), &|s| {
        stages.lock().unwrap().push(match s {
            DrillStage::Downloading { .. } => "downloading",
            DrillStage::Downloaded { .. } => "downloaded",
            DrillStage::Restoring { .. } => "restoring",
            DrillStage::Restored { .. } => "restored",
            DrillStage::Counted { .. } => "counted",
        });
    })
    .await;
    (r, stages.into_inner().unwrap())
}

const STREAMED: [&str; 5] = [
    "downloading",
    "restoring",
    "downloaded",
    "restored",
    "counted",
];
const FROM_A_FILE: [&str; 5] = [
    "downloading",
    "downloaded",
    "restoring",
    "restored",
    "counted",
];

/// Rewrites `m`'s manifest to say its largest table holds `largest` of its tables' bytes (what
/// the drill chooses its way by).
async fn with_largest_table(s3: &aws_sdk_s3::Client, m: &Manifest, largest: u64) {
    let total = m
        .table_bytes
        .expect("the backup records the tables' sizes")
        .total;
    let edited = Manifest {
        table_bytes: Some(TableBytes { largest, total }),
        ..m.clone()
    };
    backup::write_manifest(s3, &edited).await.unwrap();
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_streams_or_restores_from_a_file_as_the_manifest_says_and_finds_corruption_either_way()
 {
    let pg = PgServer::start().unwrap();
    let g = GarageServer::start().unwrap();
    let url = pg.create_migrated_database("src").unwrap();
    pg.seed("src").unwrap();
    let s3 = s3(&g);
    let m = backup::run(
        &s3,
        &url,
        &backup_spec(&g, "d/", Format::Custom),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let sizes = m.table_bytes.expect("the backup records the tables' sizes");
    assert!(
        sizes.total > 0 && sizes.largest > 0 && sizes.largest <= sizes.total,
        "{sizes:?}"
    );
    let spec = drill_spec(&pg, &m);

    // The manifest's table sizes decide; both ways restore the same counts.
    for (largest, want) in [(sizes.total, STREAMED), (sizes.total / 10, FROM_A_FILE)] {
        with_largest_table(&s3, &m, largest).await;
        let (r, stages) = drill(&s3, &spec).await;
        let report = r.unwrap();
        assert_eq!(stages, want, "largest table {largest} of {}", sizes.total);
        assert!(report.passed && report.mismatches.is_empty(), "{report:?}");
        assert_eq!(report.actual_counts, m.table_counts);
        assert!(report.download_seconds > 0.0 && report.restore_duration_seconds > 0.0);
    }

    // One byte changed in the middle of the dump, same size: a corrupt object either way (the
    // streamed restore may even have succeeded: the drill fails on the checksum).
    let mut bytes = s3
        .get_object()
        .bucket(g.bucket())
        .key(&m.object_key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    put(&s3, g.bucket(), &m.object_key, bytes).await;
    for largest in [sizes.total, sizes.total / 10] {
        with_largest_table(&s3, &m, largest).await;
        let (r, _) = drill(&s3, &spec).await;
        match r {
            Err(DrillError::Corrupt { expected, actual }) => {
                assert_eq!(expected, m.sha256);
                assert_ne!(actual, m.sha256);
            }
            other => panic!("largest {largest}: expected a corrupt dump, got {other:?}"),
        }
    }
}

/// A plain dump is always streamed into `psql` (one script: nothing to run in parallel).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_dump_streams_into_psql() {
    let pg = PgServer::start().unwrap();
    let g = GarageServer::start().unwrap();
    let url = pg.create_migrated_database("src").unwrap();
    pg.seed("src").unwrap();
    let s3 = s3(&g);
    let m = backup::run(
        &s3,
        &url,
        &backup_spec(&g, "p/", Format::Plain),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let (r, stages) = drill(&s3, &drill_spec(&pg, &m)).await;
    let report = r.unwrap();
    assert_eq!(stages, STREAMED);
    assert!(report.passed, "{report:?}");
    assert_eq!(report.actual_counts, m.table_counts);
}
