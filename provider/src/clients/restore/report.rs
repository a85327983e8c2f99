//! The drill's report: its record (`DrillReport`, also the JSON twin), the Markdown in the shape
//! of the service's own drill report, and the report file the service's tooling reads.

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mismatch {
    pub table: String,
    /// `None`: the table was not in the backup.
    pub expected: Option<i64>,
    /// `None`: the table is not in the restored database.
    pub actual: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    pub ran_at: DateTime<Utc>,
    pub backup_id: String,
    pub bucket: String,
    pub object_key: String,
    pub source_database: String,
    pub drill_database: String,
    pub kept: bool,
    pub snapshot_at: DateTime<Utc>,
    pub rto_seconds: f64,
    pub rto_target_seconds: f64,
    pub rpo_seconds: f64,
    pub rpo_target_seconds: f64,
    pub backup_duration_seconds: f64,
    pub download_seconds: f64,
    pub restore_duration_seconds: f64,
    pub expected_counts: BTreeMap<String, i64>,
    pub actual_counts: BTreeMap<String, i64>,
    pub mismatches: Vec<Mismatch>,
    pub expected_head: Option<String>,
    pub actual_head: Option<String>,
    pub rto_pass: bool,
    pub rpo_pass: bool,
    pub data_pass: bool,
    pub passed: bool,
}

pub(super) fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn opt(n: Option<i64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "absent".into())
}

impl DrillReport {
    /// The Markdown report, in the shape the service's own drill writes it
    /// (Artifortress `scripts/phase6-drill.sh:76-108`, commit
    /// f628e74dfb8b884f5113d3c4aadf16000228025a): the title, `Generated at:`, `## Inputs`,
    /// `## Results` and `## Verification Notes`, with the script's bullet lines in its order and
    /// words. What the script does not measure is added as extra bullets after its own in each
    /// section (the true RPO, the script's RPO figure, download time, the migration head) and
    /// as a `### Parity` sub-section (one line per table) at the end.
    ///
    /// The script's figures are whole seconds (`date +%s` differences), so are these (rounded);
    /// the exact ones are in the resource's attributes and the JSON twin. Its `total drill
    /// duration` is our RTO (drill start to a verified restore), and its `RPO status` is our
    /// verdict on the true RPO (the age of the recovery point); the script's own RPO figure,
    /// the backup's duration, is the extra `RPO status by backup duration` line.
    pub fn markdown(&self) -> String {
        let t = |d: DateTime<Utc>| d.to_rfc3339_opts(SecondsFormat::Secs, true);
        let whole = |s: f64| format!("{:.0}", s.max(0.0));
        let finished_at = self.ran_at
            + chrono::Duration::milliseconds((self.rto_seconds * 1000.0).round() as i64);
        let backup_window_pass = self.backup_duration_seconds <= self.rpo_target_seconds;
        let mut out = String::new();
        let mut line = |l: String| {
            out.push_str(&l);
            out.push('\n');
        };
        line("# Phase 6 RPO/RTO Drill Report".into());
        line(String::new());
        line(format!("Generated at: {}", t(finished_at)));
        line(String::new());
        line("## Inputs".into());
        line(String::new());
        line(format!("- source DB: `{}`", self.source_database));
        line(format!("- drill DB: `{}`", self.drill_database));
        line(format!(
            "- backup file: `s3://{}/{}`",
            self.bucket, self.object_key
        ));
        line(format!(
            "- RTO target (seconds): {}",
            whole(self.rto_target_seconds)
        ));
        line(format!(
            "- RPO target (seconds): {}",
            whole(self.rpo_target_seconds)
        ));
        line(format!("- backup id: `{}`", self.backup_id));
        line(format!(
            "- recovery point (backup snapshot): {}",
            t(self.snapshot_at)
        ));
        line(format!("- drill started at: {}", t(self.ran_at)));
        line(format!(
            "- drill DB after the drill: {}",
            if self.kept { "kept" } else { "dropped" }
        ));
        line(String::new());
        line("## Results".into());
        line(String::new());
        line(format!(
            "- backup duration (seconds): {}",
            whole(self.backup_duration_seconds)
        ));
        line(format!(
            "- restore duration (seconds): {}",
            whole(self.restore_duration_seconds)
        ));
        line(format!(
            "- total drill duration (seconds): {}",
            whole(self.rto_seconds)
        ));
        line(format!("- RPO status: {}", verdict(self.rpo_pass)));
        line(format!("- RTO status: {}", verdict(self.rto_pass)));
        line(format!("- data verification: {}", verdict(self.data_pass)));
        line(format!(
            "- recovery point age at drill start (true RPO, seconds): {}",
            whole(self.rpo_seconds)
        ));
        line(format!(
            "- RPO status by backup duration (as scripts/phase6-drill.sh judges it): {}",
            verdict(backup_window_pass)
        ));
        line(format!(
            "- download duration (seconds): {}",
            whole(self.download_seconds)
        ));
        line(format!(
            "- migration head: backup `{}`, drill `{}`",
            self.expected_head.as_deref().unwrap_or("none"),
            self.actual_head.as_deref().unwrap_or("none")
        ));
        line(format!("- overall: {}", verdict(self.passed)));
        line(String::new());
        line("## Verification Notes".into());
        line(String::new());
        // The script's notes, in its order: counts, RTO, RPO (phase6-drill.sh:52, 64, 71).
        let mut notes = Vec::new();
        for m in &self.mismatches {
            notes.push(format!(
                "- count mismatch on {}: source={}, drill={}",
                m.table,
                opt(m.expected),
                opt(m.actual)
            ));
        }
        if self.expected_head != self.actual_head {
            notes.push(format!(
                "- migration head mismatch: source={}, drill={}",
                self.expected_head.as_deref().unwrap_or("none"),
                self.actual_head.as_deref().unwrap_or("none")
            ));
        }
        if !self.rto_pass {
            notes.push(format!(
                "- RTO exceeded target ({}s > {}s)",
                whole(self.rto_seconds),
                whole(self.rto_target_seconds)
            ));
        }
        if !self.rpo_pass {
            notes.push(format!(
                "- RPO exceeded target: the recovery point was {}s old at drill start (> {}s); take backups more often",
                whole(self.rpo_seconds),
                whole(self.rpo_target_seconds)
            ));
        }
        if !backup_window_pass {
            notes.push(format!(
                "- RPO backup window exceeded target ({}s > {}s)",
                whole(self.backup_duration_seconds),
                whole(self.rpo_target_seconds)
            ));
        }
        if notes.is_empty() {
            notes.push(
                "- all required table counts matched between source and drill databases.".into(),
            );
        }
        for n in notes {
            line(n);
        }
        line(String::new());
        line("### Parity".into());
        line(String::new());
        let tables: std::collections::BTreeSet<&String> = self
            .expected_counts
            .keys()
            .chain(self.actual_counts.keys())
            .chain(self.mismatches.iter().map(|m| &m.table))
            .collect();
        for table in tables {
            let (e, a) = (
                self.expected_counts.get(table).copied(),
                self.actual_counts.get(table).copied(),
            );
            line(format!(
                "- {table}: source={}, drill={} ({})",
                opt(e),
                opt(a),
                verdict(e == a)
            ));
        }
        out
    }
}

/// Lowercase hex sha256 of a report's bytes (no normalisation: it is compared with a file).
pub fn report_sha256(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Writes `text` to `path` atomically: parent directories created, a temporary file beside it
/// written and synced, then renamed over `path`, so a reader (the service's
/// `scripts/production-preflight.sh:114`, `require_file`) never sees half a report. The error
/// names the path and what failed.
pub fn write_report_file(path: &Path, text: &str) -> Result<(), std::io::Error> {
    let with_path = |what: &str, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("creating the directory {}: {e}", parent.display()),
        )
    })?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".artifortress-report-")
        .tempfile_in(&parent)
        .map_err(|e| with_path("creating a temporary file beside", e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| with_path("writing a temporary file beside", e))?;
    tmp.persist(path)
        .map_err(|e| with_path("renaming the temporary file to", e.error))?;
    Ok(())
}

/// The sha256 of the file at `path` now; `None` when there is no such file.
pub fn report_file_sha256(path: &Path) -> Result<Option<String>, std::io::Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(hex::encode(sha2::Sha256::digest(&bytes)))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("reading {}: {e}", path.display()),
        )),
    }
}
